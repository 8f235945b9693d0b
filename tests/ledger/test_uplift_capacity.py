"""`market.capacity`: the DSO posts each account's connection capacity (Wh per interval, standing from an
interval on), and `uplift.gain_bound` takes per interval min(max_quantity, capacity) where one is posted: a
member may raise its own `market.rules` before the session, never its connection (review19 F1).
The session is test_uplift_contract's `day`: chain intervals 100 and 101, P1's spread 200 and 180 per Wh."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis
from test_settle_both import Clock
from test_uplift_contract import FIRST, NAME, claim, clear, day, ok, refused, uplift_session
from test_uplift_window import MEMBER, Store, clear_with, sessions

from peergrid_edge import dayahead_uplift
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts import market, market_state, uplift
from peergrid_ledger.contracts.market_state import rules_key
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

P1, P2 = Keys.p1, Keys.p2


def capacity(who: Keypair, wh: int, from_interval: int = FIRST) -> dict[str, Any]:
    return {"account": who.public, "from_interval": from_interval, "wh": wh}


@pytest.mark.parametrize(
    ("sender", "body", "why", "text"),
    [
        (Keys.p1, capacity(P1, 500), Reason.FORBIDDEN, "needs one of the roles ['dso']"),
        (Keys.dso, capacity(Keypair.generate(), 500), Reason.NOT_FOUND, "not a known account"),
        (Keys.dso, capacity(P1, 0), Reason.MALFORMED, "0 outside [1, 1000000000000]"),
        (Keys.dso, capacity(P1, 10**12 + 1), Reason.MALFORMED, "outside [1, 1000000000000]"),
        (Keys.dso, {"account": P1.public, "wh": 5}, Reason.MALFORMED, ""),
    ],
)
def test_a_bad_capacity_is_refused_naming_why_and_changes_nothing(
    sender: Keypair, body: dict[str, Any], why: Reason, text: str
) -> None:
    chain, clock = day()
    got, message = refused(clock, sender, "market.capacity", body)
    assert got is why and text in message, message
    assert chain.state.get(market_state.capacity_key(P1.public)) is None


def test_a_capacity_changes_only_after_the_accounts_last_traded_interval_and_stands_until_changed() -> None:
    chain, clock = day()
    event = dict(ok(clock.send(Keys.dso, capacity(P1, 1800, 50), "market.capacity")).events)["capacity"]
    assert event == {"account": P1.public, "from_interval": 50, "wh": 1800}
    ok(clock.send(Keys.dso, capacity(P1, 1600, FIRST + 1), "market.capacity"))
    assert [market.capacity(chain.state, P1.public, t) for t in (49, 50, FIRST, FIRST + 1, 10**6)] == [
        None,
        1800,
        1800,
        1600,
        1600,
    ]
    # a later post from an earlier interval replaces the entries from it on
    ok(clock.send(Keys.dso, capacity(P1, 1500, FIRST), "market.capacity"))
    assert [market.capacity(chain.state, P1.public, t) for t in (50, FIRST, FIRST + 1)] == [1800, 1500, 1500]
    clear(clock)  # P1 accepted [1000, 1500] through 101: the bound of its claim is fixed from here
    before = chain.state.get(market_state.capacity_key(P1.public))
    why, text = refused(clock, Keys.dso, "market.capacity", capacity(P1, 1, FIRST + 1))
    assert why is Reason.RULE_VIOLATION and "up to interval 101" in text, text
    assert chain.state.get(market_state.capacity_key(P1.public)) == before
    ok(clock.send(Keys.dso, capacity(P1, 1, FIRST + 2), "market.capacity"))


def test_a_capacity_lands_on_a_chain_without_settle_by_both() -> None:
    """It settles nothing (unlike `market.tariff`): any chain with the market contract takes it."""
    accounts = (Account(Keys.dso.public, ("dso",), "dso"), Account(P1.public, ("mgmc",), "p1"))
    chain = LocalChain(
        make_genesis(accounts=accounts, params=Params(), contracts=("market",)), Keys.authority
    )
    ok(Clock(chain).send(Keys.dso, capacity(P1, 500), "market.capacity"))
    assert market.capacity(chain.state, P1.public, FIRST) == 500


def test_a_posted_capacity_cuts_the_bound_and_the_claim_the_chain_takes() -> None:
    """P1's rule says 2000 Wh (bound 2000 x 380 = 760,000); its connection carries 1500 (1500 x 380 = 570,000),
    exactly its larger position (a position above the capacity is refused: test_market_capacity)."""
    chain, clock = day(max_quantity=2_000)
    ok(clock.send(Keys.dso, capacity(P1, 1500), "market.capacity"))
    ok(clock.send(Keys.dso, capacity(P2, 10**9), "market.capacity"))  # above P2's rule: its rule bounds
    clear(clock)
    record = uplift_session(chain)
    assert uplift.gain_bound(chain.state, record, P1.public) == 570_000
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 570_001, "surplus": 0})
    assert why is Reason.RULE_VIOLATION and "above 570000" in text and "capacity" in text, text
    ok(claim(clock, P1, 570_000, 0))
    assert uplift.gain_bound(chain.state, record, P2.public) == 1_000_000 * 380
    ok(claim(clock, P2, 380_000_000, 0))


def test_without_a_capacity_the_bound_is_todays() -> None:
    chain, clock = day(max_quantity=2_000)
    clear(clock)
    assert uplift.gain_bound(chain.state, uplift_session(chain), P1.public) == 760_000
    assert chain.state.get(market_state.capacity_key(P1.public)) is None


def test_a_capacity_bounds_a_member_without_a_max_quantity_rule() -> None:
    """Review17 U-C refused any gain from a member with no rule (no bound); the DSO's capacity is one."""
    chain, clock = day(max_quantity=None)
    ok(clock.send(Keys.dso, capacity(P1, 1500, FIRST + 1), "market.capacity"))
    clear_with(clock, {P1: [FIRST + 1, FIRST + 1]}, {P1: [0, 1500]})
    record = uplift_session(chain)
    assert uplift.unbounded_interval(chain.state, record, P1.public) == FIRST  # no rule, no capacity
    window = range(FIRST + 1, FIRST + 2)
    assert uplift.unbounded_interval(chain.state, record, P1.public, window) is None
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 270_001, "surplus": 0})
    assert why is Reason.RULE_VIOLATION and "above 270000" in text, text
    ok(claim(clock, P1, 270_000, 0))


def test_the_edges_claim_cap_reads_the_same_capacity() -> None:
    """The edge caps its claim at `ClaimFigures.bound` (6b5a1c7): the ledger's `gain_bound`, capacity and all."""
    chain, clock = day(max_quantity=2_000)
    ok(clock.send(Keys.dso, capacity(P1, 1500), "market.capacity"))
    clear(clock)
    figures = dayahead_uplift.chain_figures(chain.state, NAME, P1.public, "p1")
    assert figures.bound == 570_000 == uplift.gain_bound(chain.state, uplift_session(chain), P1.public)
    assert figures.unbounded is None


@settings(max_examples=200, deadline=None)
@given(session=sessions(), data=st.data())
def test_a_posted_capacity_never_raises_the_bound_and_one_above_every_rule_changes_nothing(
    session: tuple[Store, dict[str, Any]], data: st.DataObject
) -> None:
    store, record = session
    first, n = record["first_interval"], record["intervals"]
    spread = data.draw(st.integers(0, 1000))
    without = uplift.gain_bound(store, record, MEMBER, max_spread=spread)
    entries = data.draw(
        st.lists(
            st.tuples(st.integers(first - 2, first + n), st.integers(1, 2 * 10**6)), min_size=1, max_size=4
        )
    )
    capped = Store(store)
    capped[market_state.capacity_key(MEMBER)] = encode([list(e) for e in sorted(dict(entries).items())])
    with_cap = uplift.gain_bound(capped, record, MEMBER, max_spread=spread)
    assert 0 <= with_cap <= without
    # exactly the bound of a member whose rule in each interval is min(max_quantity, the standing capacity)
    cut = []
    for t in range(first, first + n):
        standing = market_state.capacity(capped, MEMBER, t)
        quantity = int(market_state.rules_for(store, MEMBER, t)["max_quantity"])
        cut.append([t, {**market.NO_RULES, "max_quantity": min(quantity, standing or quantity)}])
    as_rules = Store({k: v for k, v in store.items() if k != rules_key(MEMBER)})
    as_rules[rules_key(MEMBER)] = encode(cut)
    assert with_cap == uplift.gain_bound(as_rules, record, MEMBER, max_spread=spread)
    # and per interval: additive over the session
    per_interval = [
        uplift.gain_bound(capped, record, MEMBER, range(t, t + 1), spread) for t in range(first, first + n)
    ]
    assert sum(per_interval) == with_cap
    roomy = Store(store)
    roomy[market_state.capacity_key(MEMBER)] = encode([[0, 10**12]])  # no rule is above the schema's top
    assert uplift.gain_bound(roomy, record, MEMBER, max_spread=spread) == without

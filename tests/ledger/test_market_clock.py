"""`market.clock` (market_clock): the DSO sets a settle_by_both chain's interval epoch on chain, before anyone
trades; every reader of the clock (the settle-after-delivery rule, the close rule, uplift's `ready_by`) reads
it there, else the genesis'. Refused `forbidden` from anyone but the DSO (or a `clock`-role key:
test_market_clock_role), `rule-violation` on a chain without
settle_by_both and once a position, `trade` or `settle` fixed it (naming the interval and the kind),
`duplicate` for the epoch already standing, malformed bodies by the schema; every refusal changes nothing
(`submit_checked`). Without a post nothing is written (`mkt/clock*` absent, the pinned roots stand)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason, submit_checked
from test_settle_both import BUYER, SELLER, WAIT, Clock, accounts, both_chain, trades_of

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market_clock
from peergrid_ledger.contracts.market_close_time import earliest_close
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

INTERVAL = 900_000
SHIFT = 7 * INTERVAL + 1_234  # how far the tests' posted clock moves the genesis' (not a whole interval)


def clocked(**more: int) -> LocalChain:
    """A settle_by_both chain whose genesis clock starts interval 0 at T0 (the provisional one)."""
    return both_chain(settle_epoch_ms=T0, settle_interval_ms=INTERVAL, **more)  # type: ignore[no-any-return]


def post(c: LocalChain, epoch: int, who: Any = Keys.dso) -> bool:
    """Post the clock in a block of its own; whether the chain took it."""
    took = submit_checked(c, who, "market.clock", {"epoch_ms": epoch})
    c.seal()
    return took


def refusal(c: LocalChain, body: dict[str, Any], who: Any = Keys.dso) -> tuple[Reason, str]:
    assert not submit_checked(c, who, "market.clock", body)
    result = c.sign_and_submit(who, "market.clock", body)
    return reason(result), str(result)


def clock_keys(c: LocalChain) -> list[bytes]:
    return sorted(k for k, _ in c.state.items() if k.startswith(b"mkt/clock"))


# ---------------------------------------------------------------------------------------------- refusals


def test_only_the_dso_posts_the_clock() -> None:
    c = clocked()
    assert refusal(c, {"epoch_ms": T0 + SHIFT}, SELLER)[0] is Reason.FORBIDDEN
    assert refusal(c, {"epoch_ms": T0 + SHIFT}, Keys.authority)[0] is Reason.FORBIDDEN
    assert market_clock.posted_epoch(c.state) is None


def test_only_a_settle_by_both_chain_takes_a_clock() -> None:
    genesis = make_genesis(accounts=accounts(), params=Params(credit_limit=0), contracts=("market",))
    c = LocalChain(genesis, Keys.authority)
    why, words = refusal(c, {"epoch_ms": T0})
    assert why is Reason.RULE_VIOLATION and "only on a settle_by_both chain" in words


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"epoch_ms": -1},
        {"epoch_ms": 2**63},
        {"epoch_ms": "1"},
        {"epoch_ms": True},
        {"epoch_ms": 1, "x": 1},
    ],
)
def test_a_malformed_clock_is_refused(body: dict[str, Any]) -> None:
    c = clocked()
    assert refusal(c, body)[0] in {Reason.MALFORMED, Reason.INVALID}
    assert clock_keys(c) == []


def test_the_epoch_already_standing_is_a_duplicate_and_a_new_one_replaces_it_until_fixed() -> None:
    c = clocked()
    assert post(c, T0 + SHIFT)
    assert refusal(c, {"epoch_ms": T0 + SHIFT})[0] is Reason.DUPLICATE
    assert post(c, T0 + 2 * SHIFT) and post(c, T0)  # the genesis' own epoch, posted, is a clock too
    assert market_clock.epoch_ms(c.state, c.genesis.params) == T0
    assert market_clock.posted_epoch(c.state) == T0 and market_clock.fixed(c.state) is None


@pytest.mark.parametrize("kind", ["offer", "bid"])
def test_a_position_after_the_post_fixes_the_clock(kind: str) -> None:
    c = clocked()
    clock = Clock(c)
    assert post(c, T0 + SHIFT)
    offer = {"interval": 3, "round": 0, "price": 250, "quantity": 1000, "clean": True}
    assert clock.send(SELLER, offer, "offer").ok
    if kind == "bid":
        c2 = clocked()  # a bid alone (an empty one joins the interval) fixes it as well
        assert post(c2, T0 + SHIFT)
        assert Clock(c2).send(BUYER, {"interval": 4, "round": 0, "demands": []}, "bid").ok
        c = c2
    why, words = refusal(c, {"epoch_ms": T0 + 2 * SHIFT})
    assert why is Reason.RULE_VIOLATION
    assert "fixed since a position of interval" in words and "never moves under a traded interval" in words
    assert market_clock.epoch_ms(c.state, c.genesis.params) == T0 + SHIFT


def test_a_genesis_anonyms_position_before_any_post_refuses_it() -> None:
    for kind, body in (
        ("offer", {"interval": 2, "round": 0, "price": 250, "quantity": 1000, "clean": True}),
        ("bid", {"interval": 2, "round": 0, "demands": []}),
    ):
        c = clocked()
        who = SELLER if kind == "offer" else BUYER
        assert Clock(c).send(who, body, kind).ok
        why, words = refusal(c, {"epoch_ms": T0 + SHIFT})
        assert why is Reason.RULE_VIOLATION
        assert f"anonym {who.public.hex()[:16]}… holds a position up to interval 2" in words
        assert clock_keys(c) == []


def enrolled(c: LocalChain, n: int) -> list[Keypair]:
    """`n` anonyms the DSO enrols on chain (not in the genesis), each with its MGMC."""
    anonyms = [Keypair.generate() for _ in range(n)]
    for i, anonym in enumerate(anonyms):
        body = {"mgmc": Keypair.generate().public, "anonym": anonym.public, "label": f"late-{i}"}
        assert submit_checked(c, Keys.dso, "enrol", body)
    c.seal()
    return anonyms


def test_a_trade_and_a_settle_after_the_post_fix_it_too() -> None:
    """Positions of anonyms enrolled on chain before the first post do not refuse it (the module's limit): the
    trade, or the first settle, after the post fixes the clock."""
    c = clocked()
    clock = Clock(c)
    seller, buyer = enrolled(c, 2)
    offer = {"interval": 1, "round": 0, "price": 250, "quantity": 1000, "clean": True}
    assert clock.send(seller, offer, "offer").ok
    ask = {"interval": 1, "round": 0, "demands": [{"seller": seller.public, "quantity": 400}]}
    assert clock.send(buyer, ask, "bid").ok
    assert post(c, T0 - 10 * INTERVAL)
    assert market_clock.fixed(c.state) is None
    assert clock.send(buyer, {"interval": 1}, "trade").ok
    assert market_clock.fixed(c.state) == {"interval": 1, "kind": "trade"}
    assert refusal(c, {"epoch_ms": T0})[0] is Reason.RULE_VIOLATION

    s = clocked()  # traded before the post; the post lands; the first settle fixes it
    sclock = Clock(s)
    seller, buyer = enrolled(s, 2)
    assert sclock.send(seller, offer, "offer").ok
    ask = {"interval": 1, "round": 0, "demands": [{"seller": seller.public, "quantity": 400}]}
    assert sclock.send(buyer, ask, "bid").ok
    assert sclock.send(buyer, {"interval": 1}, "trade").ok
    assert post(s, T0 - 10 * INTERVAL)
    assert market_clock.fixed(s.state) is None
    (tid,) = [tid for tid, _ in query.trades(s.state, 1)]
    assert sclock.state(seller, tid, 400).ok
    assert market_clock.fixed(s.state) == {"interval": 1, "kind": "settle"}
    why, words = refusal(s, {"epoch_ms": T0})
    assert why is Reason.RULE_VIOLATION and "a settle of interval 1" in words


# ---------------------------------------------------------------------------------------------- readers


def test_the_settle_after_delivery_rule_reads_the_posted_clock() -> None:
    c = clocked()
    assert post(c, T0 + SHIFT)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    end = T0 + SHIFT + 2 * INTERVAL  # interval 1's end on the posted clock (the genesis': T0 + 2 x INTERVAL)
    clock.now = T0 + 2 * INTERVAL + 5  # past the genesis clock's end, before the posted one's
    early = clock.state(SELLER, tid, 400)
    assert reason(early) is Reason.RULE_VIOLATION and f"before interval 1 ended at {end}" in str(early)
    clock.now = end - 1
    assert clock.state(SELLER, tid, 400).ok  # sealed at `end`
    assert clock.state(BUYER, tid, 400).ok


def test_the_close_rule_reads_the_posted_clock() -> None:
    c = clocked(close_on_clock=1, close_quiet_ms=2_000)
    params = c.genesis.params
    before = earliest_close(c.state, params, 5)
    assert before is not None and str(T0 + 5 * INTERVAL) in before[1]
    assert post(c, T0 + SHIFT)
    after = earliest_close(c.state, params, 5)
    assert after is not None and after[0] == before[0] + SHIFT and str(T0 + SHIFT + 5 * INTERVAL) in after[1]
    clock = Clock(c, T0 + SHIFT + 5 * INTERVAL - 10_000)  # on the genesis' clock interval 5 ended long ago
    offer = {"interval": 5, "round": 0, "price": 250, "quantity": 1000, "clean": True}
    assert clock.send(SELLER, offer, "offer").ok
    ask = {"interval": 5, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 400}]}
    assert clock.send(BUYER, ask, "bid").ok
    too_early = clock.send(BUYER, {"interval": 5}, "trade")
    assert reason(too_early) is Reason.RULE_VIOLATION and "close_quiet_ms 2000" in str(too_early)


def test_uplifts_ready_by_reads_the_posted_clock() -> None:
    from test_uplift_contract import FIRST, NAME, clear, day, uplift_session

    from peergrid_ledger.contracts import uplift

    chain, clock = day(window=50_000, deadline=T0 + 1_000_000)
    params = dataclasses.replace(chain.genesis.params, uplift_claim_ms=0)
    assert submit_checked(chain, Keys.dso, "market.clock", {"epoch_ms": SHIFT})  # the genesis' epoch is 0
    clear(clock)
    record = uplift_session(chain)
    assert uplift.ready_by(chain.state, params, record, NAME) == SHIFT + (FIRST + 2) * INTERVAL + 2 * WAIT


# ---------------------------------------------------------------------------------------------- unchanged


def test_without_a_post_nothing_is_written_and_the_genesis_clock_rules() -> None:
    c = clocked()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    clock.now = T0 + 2 * INTERVAL
    assert clock.state(SELLER, tid, 400).ok
    assert clock_keys(c) == []
    assert market_clock.epoch_ms(c.state, c.genesis.params) == T0
    assert market_clock.interval_end(c.state, c.genesis.params, 1) == c.genesis.params.interval_end(1)


# ---------------------------------------------------------------------------------------------- property


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("post"), st.sampled_from([T0, T0 + SHIFT, T0 - SHIFT])),
        st.tuples(st.just("offer"), st.integers(0, 3)),
        st.tuples(st.just("bid"), st.integers(0, 3)),
    ),
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_a_post_is_taken_exactly_while_nothing_traded(ops: list[tuple[str, int]]) -> None:
    """Model: the epoch is the last accepted post's (else the genesis'); a post is taken iff no offer or bid of
    the genesis' anonyms was taken before it and it differs from the standing post; the clock is marked fixed
    iff one was taken while a posted clock stood; positions are refused or taken as on a chain without the
    clock (the post never changes what a position may do)."""
    c = clocked()
    clock = Clock(c)
    posted: int | None = None
    traded = fixed = False  # any position taken; one taken while a posted clock stood
    opened: set[tuple[str, int]] = set()
    for op, arg in ops:
        if op == "post":
            clock.now += 1
            took = submit_checked(c, Keys.dso, "market.clock", {"epoch_ms": arg})
            c.seal(clock.now)
            assert took == (not traded and arg != posted), (op, arg, posted, traded)
            posted = arg if took else posted
            continue
        if op == "offer":
            body: dict[str, Any] = {"interval": arg, "round": 0, "price": 250, "quantity": 100, "clean": True}
            took = clock.send(SELLER, body, "offer").ok
        else:
            body = {"interval": arg, "round": 0, "demands": []}
            took = clock.send(BUYER, body, "bid").ok
        assert took == ((op, arg) not in opened)
        opened.add((op, arg))
        traded = traded or took
        fixed = fixed or (took and posted is not None)
    params = c.genesis.params
    assert market_clock.epoch_ms(c.state, params) == (T0 if posted is None else posted)
    assert (market_clock.fixed(c.state) is not None) == fixed
    assert (clock_keys(c) == []) == (posted is None)
    for k in range(4):
        assert (
            market_clock.interval_start(c.state, params, k)
            == (T0 if posted is None else posted) + k * INTERVAL
        )

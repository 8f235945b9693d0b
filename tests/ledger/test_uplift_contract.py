"""The uplift contract: members of a cleared exchange session claim their deviation gain and surplus, the chain
bounds the gain, waits for every delivery, pays by the make-whole rule (`uplift_rule`) and refuses, naming why,
a claim too early, too late, twice, over the bound or malformed, and a settle too early or twice."""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest.mock import ANY

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason
from test_settle_both import WAIT, Clock

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_state, market, uplift, uplift_rule
from peergrid_ledger.contracts.funds import debts
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4
FIRST = 100
PRICES = [100_000_000, 120_000_000]  # nano per kWh: 100 and 120 micro-units per Wh
RETAIL, FEED_IN = 300, 50  # micro-units per Wh, every party, both intervals
# P1 (the genset MG) and P2 sell, P3 and P4 buy: the clear's trades (Wh) are P1→P3 1000 and P2→P4 500 in
# interval 100, P1→P3 1000 and P1→P4 500 in 101 (largest sellers to largest buyers)
POSITIONS = {P1: [1000, 1500], P2: [500, 0], P3: [-1000, -1000], P4: [-500, -500]}
BALANCE = 10**9
NAME = "day-1"


def day(
    window: int = 0,
    deadline: int | None = None,
    priced: bool = True,
    max_quantity: int | None = 1_000_000,
    balance: int = BALANCE,
    credit: int = 0,
    max_spread: int = 0,
) -> tuple[LocalChain, Clock]:
    """A settle_by_both chain with the uplift contract (genesis `uplift_max_spread` = `max_spread`), the DSO's
    cover prices (`priced`), P1's max_quantity rule (None: none; the others' 1,000,000 Wh), and the session
    `day-1` opened, posted, stepped and closed (`clear` accepts and clears it)."""
    rules = None if max_quantity is None else {**market.NO_RULES, "max_quantity": max_quantity}
    others = {**market.NO_RULES, "max_quantity": 1_000_000}  # a rule, so a gain of theirs is bounded (U-C)
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", balance=balance, rules=rules if k is P1 else others)
            for i, k in enumerate((P1, P2, P3, P4), 1)
        ),
        Account(Keys.stranger.public, ("anonym",), "stranger", balance=balance),
    )
    params = Params(
        credit_limit=credit,
        settle_by_both=1,
        settle_wait_ms=WAIT,
        settle_interval_ms=900_000,
        uplift_claim_ms=window,
        unpaid_as_debt=1,
        uplift_max_spread=max_spread,
    )
    chain = LocalChain(
        make_genesis(accounts=accounts, params=params, contracts=("market", "exchange", "uplift")),
        Keys.authority,
    )
    clock = Clock(chain)
    if priced:
        for k in POSITIONS:
            tariff = {
                "account": k.public,
                "first_interval": FIRST,
                "retail": [RETAIL] * 2,
                "feed_in": [FEED_IN] * 2,
            }
            assert clock.send(Keys.dso, tariff, "market.tariff").ok
    opening: dict[str, Any] = {
        "session": NAME,
        "first_interval": FIRST,
        "members": [k.public for k in POSITIONS],
        "prices": PRICES,
        "rho": 5_000_000,
    }
    if deadline is not None:
        opening["deadline"] = deadline
    ok(clock.send(Keys.dso, opening, "exchange.open"))
    for k, positions in POSITIONS.items():
        body = {"session": NAME, "iteration": 0, "positions": positions}
        ok(clock.send(k, body, "exchange.position"))
    ok(clock.send(Keys.dso, {"session": NAME, "iteration": 0, "rho": 5_000_000}, "exchange.step"))
    ok(clock.send(Keys.dso, {"session": NAME, "iteration": 1}, "exchange.close"))
    return chain, clock


def clear(clock: Clock) -> None:
    for k, positions in POSITIONS.items():
        ok(clock.send(k, {"session": NAME, "positions": positions, "clean": False}, "exchange.accept"))
    ok(clock.send(Keys.dso, {"session": NAME}, "exchange.clear"))


def ok(result: Accepted | Rejected) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def refused(clock: Clock, who: Keypair, kind: str, body: dict[str, Any]) -> tuple[Reason, str]:
    result = clock.send(who, body, kind)
    return reason(result), str(result)


def claim(clock: Clock, who: Keypair, gain: int, surplus: int) -> Accepted | Rejected:
    return clock.send(who, {"session": NAME, "gain": gain, "surplus": surplus}, "uplift.claim")


def trades(chain: LocalChain) -> list[tuple[bytes, dict[str, Any]]]:
    return [tr for t in (FIRST, FIRST + 1) for tr in query.trades(chain.state, t)]


def deliver(chain: LocalChain, clock: Clock, short: dict[bytes, int] | None = None) -> None:
    """Both parties state every trade: all of it delivered, but for the seller named in `short` (its Wh)."""
    keys = {k.public: k for k in (P1, P2, P3, P4)}
    for tid, tr in trades(chain):
        missing = (short or {}).get(tr["seller"], 0)
        delivered = tr["quantity"] - missing
        ok(clock.send(keys[tr["seller"]], {"trade": tid, "delivered": delivered, "short": missing}))
        ok(clock.send(keys[tr["buyer"]], {"trade": tid, "delivered": delivered}))
        assert market.settlement(chain.state, tid)["state"] == "settled"  # type: ignore[index]


def balances(chain: LocalChain) -> dict[bytes, int]:
    return {k.public: query.balance(chain.state, k.public) for k in (P1, P2, P3, P4)}


# P1's gain of 40,000 micro-units (0.04) is far above its tolerance (its 2500 Wh traded + 1); P2, P3 and P4
# fund it by their surplus 30,000 : 60,000 : 10,000 -> 12,000, 24,000 and 4,000
CLAIMS = {P1: (40_000, 0), P2: (0, 30_000), P3: (0, 60_000), P4: (0, 10_000)}


def test_the_owed_genset_is_paid_by_the_payers_in_proportion_to_their_surplus_once_the_day_settled() -> None:
    chain, clock = day()
    clear(clock)
    for k, (gain, surplus) in CLAIMS.items():
        event = ok(claim(clock, k, gain, surplus)).events
        assert event == (
            ("uplift_claimed", {"session": NAME, "member": k.public, "gain": gain, "surplus": surplus}),
        )
    assert uplift.claim(chain.state, NAME, P1.public) is not None
    why, text = refused(clock, P2, "uplift.settle", {"session": NAME})
    assert why is Reason.RULE_VIOLATION and "4 of the 4 trades" in text and "not settled yet" in text
    deliver(chain, clock)
    before = balances(chain)
    result = ok(clock.send(P3, {"session": NAME}, "uplift.settle"))
    moved = {k: balances(chain)[k] - before[k] for k in before}
    assert moved == {P1.public: 40_000, P2.public: -12_000, P3.public: -24_000, P4.public: -4_000}
    want = uplift_rule.split({P1.public: 40_000}, {P2.public: 30_000, P3.public: 60_000, P4.public: 10_000})
    assert want.charges == {P2.public: 12_000, P3.public: 24_000, P4.public: 4_000}
    kinds = [kind for kind, _ in result.events]
    assert kinds == ["uplift_settled", "uplift_paid", "uplift_paid", "uplift_paid"]
    assert result.events[0][1] == {
        "session": NAME,
        "funded": True,
        "owed": 40_000,
        "surplus": 100_000,
        "paid": 40_000,
        "withheld": 0,
    }
    done = uplift.outcome(chain.state, NAME)
    assert done is not None and done["credits"] == [[P1.public, 40_000]] and done["funded"]
    # once: a second settle is a duplicate, and a claim now is late
    why, text = refused(clock, P1, "uplift.settle", {"session": NAME})
    assert why is Reason.DUPLICATE and "already settled" in text
    why, text = refused(clock, Keys.stranger, "uplift.settle", {"session": NAME})
    assert why is Reason.FORBIDDEN and "not a member" in text


def test_a_gain_within_the_tolerance_is_owed_nothing_and_an_unfunded_uplift_moves_nothing() -> None:
    chain, clock = day()
    clear(clock)
    ok(claim(clock, P1, 2_501, 0))  # 2500 Wh traded: its tolerance is 2500 + 1
    ok(claim(clock, P2, 0, 1_000))
    deliver(chain, clock)
    before = balances(chain)
    result = ok(clock.send(P2, {"session": NAME}, "uplift.settle"))
    assert balances(chain) == before and result.events[0][1]["owed"] == 0
    # one micro-unit more is owed; the payers' 1,000 cannot fund 2,502: nothing paid, the shortfall named
    chain, clock = day()
    clear(clock)
    ok(claim(clock, P1, 2_502, 0))
    ok(claim(clock, P2, 0, 1_000))
    deliver(chain, clock)
    before = balances(chain)
    settled = ok(clock.send(P2, {"session": NAME}, "uplift.settle")).events[0][1]
    assert balances(chain) == before
    assert (settled["funded"], settled["owed"], settled["surplus"], settled["paid"]) == (
        False,
        2_502,
        1_000,
        0,
    )


def test_a_payee_short_of_its_own_delivery_forfeits_its_credit_and_its_payers_pay_nothing() -> None:
    chain, clock = day()
    clear(clock)
    for k, (gain, surplus) in CLAIMS.items():
        ok(claim(clock, k, gain, surplus))
    deliver(chain, clock, short={P1.public: 1})  # one Wh of its own, in each of its trades
    before = balances(chain)
    settled = ok(clock.send(P4, {"session": NAME}, "uplift.settle")).events[0][1]
    assert balances(chain) == before and (settled["paid"], settled["withheld"]) == (0, 40_000)
    done = uplift.outcome(chain.state, NAME)
    assert done is not None and done["withheld"] == [[P1.public, 40_000]] and done["charges"] == []


def test_a_payer_short_of_its_delivery_still_pays_its_charge() -> None:
    chain, clock = day()
    clear(clock)
    for k, (gain, surplus) in CLAIMS.items():
        ok(claim(clock, k, gain, surplus))
    deliver(chain, clock, short={P2.public: 100})
    before = balances(chain)
    ok(clock.send(P1, {"session": NAME}, "uplift.settle"))
    assert balances(chain)[P1.public] - before[P1.public] == 40_000


def test_a_payer_without_the_money_owes_the_rest_and_holds_up_nobody() -> None:
    chain, clock = day(balance=0, credit=0)
    clear(clock)
    for k, (gain, surplus) in CLAIMS.items():
        ok(claim(clock, k, gain, surplus))
    deliver(chain, clock)
    before = balances(chain)
    events = ok(clock.send(P1, {"session": NAME}, "uplift.settle")).events
    # P3 started with nothing and already owes its energy: its 24,000 is all a debt to P1, after those
    assert balances(chain)[P3.public] == before[P3.public]
    paid = [e for kind, e in events if kind == "uplift_paid" and e["payer"] == P3.public]
    assert paid and paid[0]["owed"] == 24_000
    owed = debts(chain.state, P3.public)
    assert len(owed) > 1 and all(d["trade"] != uplift.uplift_ref(NAME) for d in owed[:-1])
    assert owed[-1] == {"amount": 24_000, "creditor": P1.public, "trade": uplift.uplift_ref(NAME)}
    assert [P3.public, P1.public, 24_000, 24_000] in uplift.outcome(chain.state, NAME)["payments"]  # type: ignore[index]


def test_claim_refusals_name_why_and_change_nothing() -> None:
    chain, clock = day(max_quantity=2_000)
    body = {"session": NAME, "gain": 10, "surplus": 0}
    why, text = refused(clock, P1, "uplift.claim", body)
    assert why is Reason.RULE_VIOLATION and "not cleared yet" in text
    clear(clock)
    why, text = refused(clock, P1, "uplift.claim", {**body, "session": "day-2"})
    assert why is Reason.NOT_FOUND and "no exchange session 'day-2'" in text
    why, text = refused(clock, Keys.stranger, "uplift.claim", body)
    assert why is Reason.FORBIDDEN and "not a member" in text
    # the bound: max_quantity 2000 Wh x the widest spread, max(300 - 100, 100 - 50) = 200 and
    # max(300 - 120, 120 - 50) = 180: 2000 x 380 = 760,000
    assert uplift.gain_bound(chain.state, uplift_session(chain), P1.public) == 760_000
    why, text = refused(clock, P1, "uplift.claim", {**body, "gain": 760_001})
    assert why is Reason.RULE_VIOLATION and "above 760000" in text
    for bad in ({**body, "gain": -1}, {**body, "surplus": 10**15 + 1}, {"session": NAME, "gain": 5}):
        assert refused(clock, P1, "uplift.claim", bad)[0] is Reason.MALFORMED
    ok(clock.send(P1, {**body, "gain": 760_000}, "uplift.claim"))
    why, text = refused(clock, P1, "uplift.claim", body)
    assert why is Reason.DUPLICATE and "already claimed" in text
    assert uplift.claim(chain.state, NAME, P1.public)["gain"] == 760_000  # type: ignore[index]


@pytest.mark.parametrize("priced", [True, False])
def test_a_gain_from_a_member_without_a_max_quantity_rule_is_refused_its_surplus_taken(priced: bool) -> None:
    """Review17 U-C: without the rule `gain_bound` is ~10^12 Wh x the spread, no bound, so a payer claiming last
    could take every payer's surplus or void the honest make-whole; its claim of gain 0 still counts."""
    chain, clock = day(max_quantity=None, priced=priced)
    clear(clock)
    record = uplift_session(chain)
    assert uplift.unbounded_interval(chain.state, record, P1.public) == record["first_interval"]
    assert uplift.unbounded_interval(chain.state, record, P2.public) is None
    before = chain.state.get(uplift.claim_key(NAME, P1.public))
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 1, "surplus": 0})
    assert why is Reason.RULE_VIOLATION and "no max_quantity for interval" in text and "claim gain 0" in text
    assert chain.state.get(uplift.claim_key(NAME, P1.public)) is before is None
    ok(claim(clock, P1, 0, 7_000))
    # a member with the rule may claim a gain within its bound (unpriced, this chain's spread is 0: none)
    assert (claim(clock, P2, 50_000, 0).ok, claim(clock, P2, 0, 0).ok) == (priced, not priced)
    assert uplift.claim(chain.state, NAME, P1.public) == {"gain": 0, "surplus": 7_000, "txid": ANY}


def uplift_session(chain: LocalChain) -> dict[str, Any]:
    record = exchange_state.session(chain.state, NAME)
    assert record is not None
    return record


def test_without_the_dsos_cover_prices_the_bound_is_the_chains_own_spread_and_none_by_default() -> None:
    """Review18 U-1: an unpriced interval left the gain unbounded, so a member with the rule claimed 10^15 and
    voided the honest make-whole. Now it counts genesis `uplift_max_spread` there (0 by default: no gain)."""
    chain, clock = day(priced=False, max_quantity=2_000)
    clear(clock)
    assert uplift.gain_bound(chain.state, uplift_session(chain), P1.public) == 0
    for gain in (10**15, 1):
        before = chain.state.get(uplift.claim_key(NAME, P1.public))
        why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": gain, "surplus": 0})
        assert (
            why is Reason.RULE_VIOLATION and f"gain {gain} above 0" in text and "uplift_max_spread, 0" in text
        )
        assert chain.state.get(uplift.claim_key(NAME, P1.public)) is before is None
    ok(claim(clock, P1, 0, 5_000))  # its surplus still counts
    # the chain's own spread, 250 per Wh: 2000 Wh x 250 in each of the two intervals
    chain, clock = day(priced=False, max_quantity=2_000, max_spread=250)
    clear(clock)
    assert uplift.gain_bound(chain.state, uplift_session(chain), P1.public, None, 250) == 1_000_000
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 1_000_001, "surplus": 0})
    assert (
        why is Reason.RULE_VIOLATION and "above 1000000" in text and "uplift_max_spread, 250 per Wh" in text
    )
    ok(claim(clock, P1, 1_000_000, 0))
    # where the DSO priced the member its cover prices count, not the chain's spread: 760,000 as priced
    chain, clock = day(max_quantity=2_000, max_spread=250)
    clear(clock)
    assert uplift.gain_bound(chain.state, uplift_session(chain), P1.public, None, 250) == 760_000


def test_review18_u1_an_inflated_claim_drops_itself_and_the_honest_genset_is_paid() -> None:
    """R18 U-1's row (/work/notes/r18/unpriced_bound.py): on an unpriced day P2, a payer with a rule, claimed
    10^15 and nobody was paid. Now its claim is refused (bound 0), it claims gain 0 with its surplus, and the
    genset P1 (priced by the chain's spread) is paid 40,000 by P2, P3 and P4 in proportion to their surplus."""
    chain, clock = day(priced=False, max_spread=100)
    clear(clock)
    for k in (P1, P3, P4):
        ok(claim(clock, k, *CLAIMS[k]))
    assert reason(claim(clock, P2, 10**15, 0)) is Reason.RULE_VIOLATION
    ok(claim(clock, P2, 0, 30_000))
    keys = {k.public: k for k in (P1, P2, P3, P4)}
    for tid, tr in trades(chain):  # unpriced: no `short`, each side states what was delivered
        for side in ("seller", "buyer"):
            ok(clock.send(keys[tr[side]], {"trade": tid, "delivered": tr["quantity"]}))
    before = balances(chain)
    ok(clock.send(P2, {"session": NAME}, "uplift.settle"))
    moved = {k: balances(chain)[k] - before[k] for k in before}
    assert moved == {P1.public: 40_000, P2.public: -12_000, P3.public: -24_000, P4.public: -4_000}


def test_an_unfunded_uplift_pays_nobody_and_names_its_shortfall() -> None:
    """P2 claims a gain within its bound but above the payers' surplus: the day is unfunded and nobody is paid,
    P1's honest 40,000 included (review19 F1: paying the smallest claims that fit instead let a payer claim just
    under P1, unfund the day and be paid first: P1 0, P2 its claim); the settle names owed and surplus."""
    chain, clock = day()
    clear(clock)
    ok(claim(clock, P1, 40_000, 0))
    ok(claim(clock, P2, 100_000, 0))  # within its bound (1,000,000 Wh x the spread)
    ok(claim(clock, P3, 0, 60_000))
    ok(claim(clock, P4, 0, 10_000))
    deliver(chain, clock)
    before = balances(chain)
    settled = ok(clock.send(P4, {"session": NAME}, "uplift.settle")).events[0][1]
    assert balances(chain) == before
    figures = (settled["funded"], settled["owed"], settled["surplus"], settled["paid"])
    assert figures == (False, 140_000, 70_000, 0)
    done = uplift.outcome(chain.state, NAME)
    assert done is not None and done["credits"] == []


def test_the_claim_window_closes_claims_and_lets_the_settle_go_without_a_silent_member() -> None:
    deadline = T0 + 1_000_000
    chain, clock = day(window=50_000, deadline=deadline)
    clear(clock)
    for k in (P1, P2, P3):
        ok(claim(clock, k, *CLAIMS[k]))
    deliver(chain, clock)
    why, text = refused(clock, P1, "uplift.settle", {"session": NAME})
    assert (
        why is Reason.RULE_VIOLATION and "1 member(s)" in text and f"open until {deadline + 50_000}" in text
    )
    clock.now = deadline + 50_000  # the window's end: the next block (now + 1) is past it
    why, text = refused(clock, P4, "uplift.claim", {"session": NAME, "gain": 0, "surplus": 10_000})
    assert why is Reason.CLOSED and "late" in text
    before = balances(chain)
    ok(clock.send(P1, {"session": NAME}, "uplift.settle"))
    # the silent P4 funds nothing: P2 and P3 share the 40,000 by 30,000 : 60,000 (13,333.3 and 26,666.7: the
    # micro-unit left to the larger remainder)
    moved = {k: balances(chain)[k] - before[k] for k in before}
    assert moved == {P1.public: 40_000, P2.public: -13_333, P3.public: -26_667, P4.public: 0}


def test_ready_by_is_when_the_chains_own_rules_have_settled_every_trade_and_closed_the_window() -> None:
    """Review17 U-A: what the edges wait for instead of a fixed 12 s. A trade nobody stated: its interval's end
    on the clock + the wait for a first word + the wait for the DSO; a stated one: its deadline + the DSO's
    wait (a dispute before the deadline is ruled by then); with W > 0 and a member silent, the window's end."""
    deadline = T0 + 1_000_000
    chain, clock = day(window=50_000, deadline=deadline)
    clear(clock)
    record = uplift_session(chain)
    params = chain.genesis.params

    def by(windowed: bool = False) -> int | None:  # the trades' part alone unless `windowed`
        window = params if windowed else dataclasses.replace(params, uplift_claim_ms=0)
        return uplift.ready_by(chain.state, window, record, NAME)

    def why() -> str | None:
        return uplift.waiting_for(chain.state, params, record, NAME, clock.now)

    assert by() == (FIRST + 2) * 900_000 + 2 * WAIT  # the later interval's end (epoch 0) + both waits
    assert by(windowed=True) == deadline + 50_000 + 1  # nobody claimed yet: the window's end is later
    assert "not settled yet (the first in interval 100)" in (why() or "")
    keys = {k.public: k for k in (P1, P2, P3, P4)}
    for tid, tr in trades(chain):  # the sellers state; the deadline is the first word + the wait
        ok(clock.send(keys[tr["seller"]], {"trade": tid, "delivered": tr["quantity"], "short": 0}))
    last_word = clock.now
    assert by() == last_word + 2 * WAIT
    for tid, tr in trades(chain):
        ok(clock.send(keys[tr["buyer"]], {"trade": tid, "delivered": tr["quantity"]}))
    for k in (P1, P2, P3):
        ok(claim(clock, k, *CLAIMS[k]))
    assert by() == 0 and by(windowed=True) == deadline + 50_000 + 1  # settled: P4's silence holds it
    assert f"open until {deadline + 50_000}" in (why() or "")
    clock.now = deadline + 50_000
    assert uplift.waiting_for(chain.state, params, record, NAME, deadline + 50_001) is None
    ok(clock.send(P1, {"session": NAME}, "uplift.settle"))


@pytest.mark.parametrize("late_by", [0, 1])
def test_a_claim_lands_up_to_the_windows_end_and_not_after(late_by: int) -> None:
    deadline = T0 + 1_000_000
    _, clock = day(window=50_000, deadline=deadline)
    clear(clock)
    clock.now = deadline + 50_000 + late_by - 1  # Clock.send seals at now + 1
    result = claim(clock, P4, 0, 10_000)
    assert result.ok is (late_by == 0)
    if late_by:
        assert reason(result) is Reason.CLOSED and f"closed at {deadline + 50_000}" in str(result)


def test_the_claim_window_parameter_is_encoded_only_when_set_and_bounded() -> None:
    plain = make_genesis()
    assert "uplift_claim_ms" not in plain.params.to_value()
    windowed = make_genesis(params=Params(uplift_claim_ms=60_000))
    assert windowed.params.to_value()["uplift_claim_ms"] == 60_000
    assert Genesis.decode(windowed.encode()).params.uplift_claim_ms == 60_000 and windowed.hash != plain.hash
    with pytest.raises(GenesisError, match="uplift_claim_ms: expected 0 to"):
        Params(uplift_claim_ms=-1)
    with pytest.raises(GenesisError, match="uplift_claim_ms: 0 is the default"):
        Params.from_value({**plain.params.to_value(), "uplift_claim_ms": 0})


def test_the_chains_spread_is_encoded_only_when_set_and_bounded() -> None:
    """A genesis without `uplift_max_spread` keeps its bytes and hash (review18 U-1 adds it)."""
    plain = make_genesis()
    assert "uplift_max_spread" not in plain.params.to_value()
    spread = make_genesis(params=Params(uplift_max_spread=250))
    assert spread.params.to_value()["uplift_max_spread"] == 250 and spread.hash != plain.hash
    assert Genesis.decode(spread.encode()).params.uplift_max_spread == 250
    for bad in (-1, 10**12 + 1):
        with pytest.raises(GenesisError, match="uplift_max_spread: expected 0 to 1000000000000"):
            Params(uplift_max_spread=bad)
    with pytest.raises(GenesisError, match="uplift_max_spread: 0 is the default"):
        Params.from_value({**plain.params.to_value(), "uplift_max_spread": 0})


@settings(max_examples=25, deadline=None)
@given(
    claims=st.fixed_dictionaries(
        {
            k.public: st.tuples(st.sampled_from([0, 2_000, 2_502, 50_000, 700_000]), st.integers(0, 200_000))
            for k in (P1, P2, P3, P4)
        }
    ),
    silent=st.sets(st.sampled_from([P2.public, P3.public, P4.public]), max_size=2),
    short=st.dictionaries(st.sampled_from([P1.public, P2.public]), st.integers(1, 400), max_size=2),
)
def test_any_claims_and_deliveries_pay_the_rule_exactly_and_conserve_money(
    claims: dict[bytes, tuple[int, int]], silent: set[bytes], short: dict[bytes, int]
) -> None:
    chain, clock = day()
    clear(clock)
    keys = {k.public: k for k in (P1, P2, P3, P4)}
    for member, (gain, surplus) in claims.items():
        if member not in silent:
            ok(claim(clock, keys[member], gain, surplus))
    deliver(chain, clock, short)
    traded: dict[bytes, int] = {}
    for _, tr in trades(chain):
        for party in (tr["seller"], tr["buyer"]):
            traded[party] = traded.get(party, 0) + tr["quantity"]
    owed = {m: g for m, (g, _) in claims.items() if m not in silent and g > max(traded.get(m, 0), 1000) + 1}
    surplus = {m: (0 if m in silent else s) for m, (_, s) in claims.items() if m in traded and m not in owed}
    want = uplift_rule.withhold(uplift_rule.split(owed, surplus), set(short))
    before = balances(chain)
    ok(clock.send(P1, {"session": NAME}, "uplift.settle"))
    moved = {k: balances(chain)[k] - before[k] for k in before}
    assert sum(moved.values()) == 0
    assert moved == {k: want.credits.get(k, 0) - want.charges.get(k, 0) for k in before}
    done = uplift.outcome(chain.state, NAME)
    assert (
        done is not None
        and done["funded"] == want.funded
        and done["withheld"] == sorted(map(list, want.withheld.items()))
    )
    assert all(c <= surplus[m] for m, c in want.charges.items())  # no payer beyond its claimed surplus

"""D4's order dependence, pinned and fixed (D5): a revealed statement whose counterparty committed and kept its
reveal back, which nobody repeats (`takeup` "withheld"), beside a sibling dispute of the same seller. Without
seller_vouched the DSO settles the statement at the contract's penalty (`disputes_vouch.penalty`: a silent
buyer took all of it, a silent seller delivered nothing). Before, a sibling the DSO resolved before that
penalty landed shared the seller's export with the statement by the meters, and after it under the penalty's
figure: s sold 400 to b (b withheld) and 200 to c (disputed: c 150, s 200), s exported 400, b and c imported
200 each, priced 300/50 at 200 a kWh: c's trade settled 200 delivered (c -40,000, s +120,000) or 0 delivered
with s short 200 (c +20,000, s +60,000), by arrival order (/work/notes/d5/withheld_orders.out). Now a sibling
takes the statement at its penalty from the moment the DSO takes it up (`dispute_shares._standing`), so both
orders give the second figures - those the stater's own repeat gives too, and within the seller's meter
(review12 F2). A silent seller's penalty (0 delivered) never bound the sibling: the same figures either way,
before and now. With seller_vouched the statement is metered as the hold (D4): order-free before and now.
On a real sealed MGMC chain, resolved and settled by the DSO in each order."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Vouched, resolve
from peergrid_dso.sealed_readings import ChainTime
from peergrid_ledger import query

from .test_disputes import CLOCK, END_MS, Market, chain_time, market, ramp
from .test_disputes_withheld_statement import COVER, WAIT, _commit, _reveal

Figures = dict[str, Any]


def kept_back(
    silent: str,
    vouched: bool,
    meters: tuple[float, float, float],
    said: tuple[int, int],
    repeat: bool = False,
) -> tuple[Market, bytes, bytes, dict[str, int]]:
    """s sells 400 to b and 200 to c, priced. On s->b both commit; the `silent` party never reveals, the
    other reveals (s 400 short 0, or b `said[0]` short 0) and repeats it at the reveal deadline only if
    `repeat`. On s->c c reveals `said[1]` short 0 and s 200 short 0: disputed. `meters`: s's export, b's
    and c's import (Wh over the window). (market, s->b, s->c, each MG's balance before any settle)."""
    s_out, b_in, c_in = meters
    readings = {"s": ramp(s_out, export=True), "b": ramp(b_in, export=False), "c": ramp(c_in, export=False)}
    params = {"sealed_statements": 1, **({"seller_vouched": 1} if vouched else {})}
    m = market({("s", "b"): 400, ("s", "c"): 200}, {}, readings=readings, wait_ms=WAIT, cover=COVER,
               params=params)  # fmt: skip
    tid, sib = m.trade_id("s", "b"), m.trade_id("s", "c")
    start = {mg: query.balance(m.chain.state, k.public) for mg, k in m.anonyms.items()}
    stater, says = ("s", 400) if silent == "buyer" else ("b", said[0])
    _commit(m, "b", tid, says, 0, max(m.now, END_MS))
    _commit(m, "s", tid, says, 0)
    _reveal(m, stater, tid, says, 0)
    _commit(m, "c", sib, said[1], 0)
    _commit(m, "s", sib, 200, 0)
    _reveal(m, "c", sib, said[1], 0)
    _reveal(m, "s", sib, 200, 0)
    if repeat:
        m.pass_time(int(query.settlement(m.chain.state, tid)["deadline"]))  # type: ignore[index]
        m.do(m.anonyms[stater], "settle", {"trade": tid, "delivered": says, "short": 0})
    return m, tid, sib, start


def the_chains_time(m: Market) -> ChainTime:
    """The DSO replica's time, with the genesis' seller_vouched as the node reads it."""
    return replace(chain_time(m), seller_vouched=bool(m.chain.genesis.params.seller_vouched))


def settled_in(
    m: Market, trades: dict[str, bytes], order: list[str], start: dict[str, int]
) -> tuple[Figures, dict[str, int]]:
    """Past every deadline, the DSO resolves and settles the `trades` (name -> id) in `order` one after the
    other (each settle landing before the next resolve; a trade settled already is passed by): each trade's
    settled figures by name, and each MG's net balance change since `start`."""
    m.pass_time(m.now + 2 * WAIT)
    for tid in (trades[name] for name in order):
        if query.settlement(m.chain.state, tid)["state"] == "settled":  # type: ignore[index]
            continue
        decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, the_chains_time(m))
        assert isinstance(decision, Vouched), decision
        body: dict[str, Any] = {"trade": tid, "delivered": decision.delivered}
        if decision.shorts is not None:
            body["seller_short"], body["buyer_short"] = decision.shorts
        m.do(m.dso, "settle", body)
    figures = {}
    for name, tid in trades.items():
        where = query.settlement(m.chain.state, tid)
        assert where is not None and where["state"] == "settled", where
        paid = where["settlement"]
        figures[name] = {k: paid.get(k) for k in ("delivered", "amount", "compensation")}
    return figures, {mg: query.balance(m.chain.state, k.public) - start[mg] for mg, k in m.anonyms.items()}


def both_orders(
    silent: str, vouched: bool, meters: tuple[float, float, float], said: tuple[int, int]
) -> tuple[tuple[Figures, dict[str, int]], tuple[Figures, dict[str, int]]]:
    """The figures with the statement settled first, and with its sibling first."""
    m, tid, sib, start = kept_back(silent, vouched, meters, said)
    first = settled_in(m, {"held": tid, "sib": sib}, ["held", "sib"], start)
    m, tid, sib, start = kept_back(silent, vouched, meters, said)
    return first, settled_in(m, {"held": tid, "sib": sib}, ["sib", "held"], start)


@pytest.mark.parametrize("vouched", [False, True])
@pytest.mark.parametrize("silent", ["buyer", "seller"])
def test_the_statement_and_its_sibling_settle_alike_in_either_order(silent: str, vouched: bool) -> None:
    """The measured case, each figure pinned: without seller_vouched a withheld buyer pays for all 400, c's
    trade settles 0 delivered and s owns its 200 short (c +20,000, s +60,000) whichever the DSO settles
    first (before: c -40,000 and s +120,000 where c's came first); a withheld seller (b states 300; s
    exported 300, b imported 300) is paid nothing and c's trade settles 120. With seller_vouched, metered as
    the hold: 200 and 200 (b -40,000, c -40,000, s +80,000), and 180 and 120."""
    meters = (400.0, 200.0, 200.0) if silent == "buyer" else (300.0, 300.0, 200.0)
    first, second = both_orders(silent, vouched, meters, (300, 150))
    assert first == second
    delivered = [first[0][name]["delivered"] for name in ("held", "sib")]
    expected = {
        ("buyer", False): ([400, 0], {"b": -80_000, "c": 20_000, "s": 60_000}),
        ("seller", False): ([0, 120], {"b": 40_000, "c": -16_000, "s": -24_000}),
        ("buyer", True): ([200, 200], {"b": -40_000, "c": -40_000, "s": 80_000}),
        ("seller", True): ([180, 120], {"b": -24_000, "c": -16_000, "s": 40_000}),
    }[(silent, vouched)]
    assert (delivered, first[1]) == expected


def test_the_dso_settles_the_sibling_as_after_the_staters_own_repeat() -> None:
    """Without seller_vouched the stater's repeat settles the statement at the penalty on the parties' word
    (basis "withheld"); the sibling the DSO settles after it comes to the same figures as when the DSO took
    the statement up itself, in either order: one rule for the sibling whoever moved first."""
    meters, said = (400.0, 200.0, 200.0), (300, 150)
    m, tid, sib, start = kept_back("buyer", False, meters, said, repeat=True)
    assert query.trade(m.chain.state, tid)["settlement"]["basis"] == "withheld"  # type: ignore[index]
    by_repeat = settled_in(m, {"held": tid, "sib": sib}, ["sib"], start)
    by_dso, sib_first = both_orders("buyer", False, meters, said)
    assert by_repeat[1] == by_dso[1] == sib_first[1] == {"b": -80_000, "c": 20_000, "s": 60_000}
    assert by_repeat[0]["sib"] == by_dso[0]["sib"] == sib_first[0]["sib"]
    assert by_repeat[0]["held"]["delivered"] == by_dso[0]["held"]["delivered"] == 400


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["buyer", "seller"]),
    st.booleans(),
    st.tuples(st.integers(0, 600), st.integers(0, 450), st.integers(0, 250)),
    st.tuples(st.integers(0, 400), st.integers(0, 199)),
)
def test_no_order_of_the_dsos_settles_moves_money(
    silent: str, vouched: bool, meters: tuple[int, int, int], said: tuple[int, int]
) -> None:
    """Any meters and statements: the DSO settling the withheld statement first or its sibling first gives
    each trade the same figures and each MG the same net, with or without seller_vouched."""
    first, second = both_orders(silent, vouched, (float(meters[0]), float(meters[1]), float(meters[2])), said)
    assert first == second

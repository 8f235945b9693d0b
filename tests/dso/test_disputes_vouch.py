"""The DSO node vouches for the seller's side of agreed trades (genesis seller_vouched; review13 F2), on a
real MGMC chain: two agreeing statements wait (`vouching`) and the DSO settles them from the seller's sealed
export before `until` - the agreed figures where the seller's meter covers them, else the metered delivery
with the gap the seller's; a seller whose readings never come is settled at 0 from `disputes.VOUCH_RULE` of
the window (D7). Time is the chain's, driven by the test."""

from __future__ import annotations

import asyncio

from peergrid_dso.disputes import VOUCH_RULE, Unresolved, Vouched, resolve
from peergrid_dso.sealed_readings import ChainTime
from peergrid_ledger import query

from .test_disputes import CLOCK, PRICE, Market, chain_time, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for

RETAIL, FEED_IN = 300, 50
WAIT_MS = 120_000
VOUCHED = {"seller_vouched": 1}


def agreed(seller_wh: float, by_buyer: int, by_seller: int) -> Market:
    readings = {"s": ramp(seller_wh, export=True), "b": ramp(400.0, export=False)}
    return market({("s", "b"): 400}, {("s", "b"): (by_buyer, by_seller)}, readings=readings,
                  wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN), params=VOUCHED)  # fmt: skip


def gains(m: Market, run: object) -> int:
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    assert callable(run)
    run()
    return query.balance(m.chain.state, m.anonyms["s"].public) - before


def dso_settles(m: Market, give: tuple[str, ...] = ("s",)) -> list[dict[str, object]]:
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    for mg in give:
        hand_over(m, settler, mg)
    asyncio.run(settler.settle_due())
    return [body for _, _, body, _ in adapter.sent]


def test_r13_f2_a_seller_that_states_the_agreed_quantity_settles_as_the_honest_one() -> None:
    """The seller's meter shows 250 of 400; it states 400, short 0 (predictable: the buyer's meter shows its
    whole import) and agrees with the honest buyer: vouching, then the DSO settles 250, the 150 the seller's,
    exactly as the honest seller's dispute (250, short 150) settles."""
    lying = agreed(250.0, 400, 400)
    tid = lying.trade_id("s", "b")
    where = query.settlement(lying.chain.state, tid)
    assert where is not None and where["state"] == "vouching"
    sent: list[list[dict[str, object]]] = []
    lied = gains(lying, lambda: sent.append(dso_settles(lying)))
    assert sent == [[{"trade": tid, "delivered": 250, "seller_short": 150, "buyer_short": 0}]]
    done = query.settlement(lying.chain.state, tid)
    assert done is not None and done["settlement"]["basis"] == "dso"
    assert lying.chain.tip.time < where["vouch"]["until"]  # within the DSO's window: final
    honest = agreed(250.0, 400, 250)
    h_tid = honest.trade_id("s", "b")
    assert query.settlement(honest.chain.state, h_tid)["state"] == "disputed"  # type: ignore[index]
    honest_gain = gains(honest, lambda: dso_settles(honest, ("s", "b")))
    assert lied == honest_gain == 250 * PRICE - 150 * (RETAIL - PRICE)


def test_an_honest_sellers_agreed_trade_settles_at_the_agreed_figures_by_the_dso_before_until() -> None:
    m = agreed(400.0, 400, 400)
    tid = m.trade_id("s", "b")
    until = query.settlement(m.chain.state, tid)["vouch"]["until"]  # type: ignore[index]
    gained = gains(m, lambda: dso_settles(m))
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["state"] == "settled" and done["settlement"]["basis"] == "dso"
    assert done["settlement"]["delivered"] == 400 and done["settlement"]["compensation"]["amount"] == 0
    assert gained == 400 * PRICE and m.chain.tip.time < until


def test_a_seller_that_withholds_its_readings_is_settled_at_zero_from_its_part_of_the_window() -> None:
    m = agreed(400.0, 400, 400)
    tid = m.trade_id("s", "b")
    where = query.settlement(m.chain.state, tid)
    assert where is not None
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    waiting = settler.decision(tid)
    assert adapter.sent == [] and waiting is not None and "seller's metering" in waiting["why"]
    start = max(int(s["time"]) for s in where["statements"].values())
    rule = start + int((where["vouch"]["until"] - start) * VOUCH_RULE)
    assert waiting["until_ms"] == rule
    m.pass_time(rule - 1)
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == []
    m.pass_time(rule)
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 0, "seller_short": 400, "buyer_short": 0}
    ]
    assert query.settlement(m.chain.state, tid)["settlement"]["basis"] == "dso"  # type: ignore[index]


def chain_with_tolerance(m: Market, wh: int) -> ChainTime:
    """The chain's time as the DSO node gives it, with the chain's agreement tolerance (`chain_time` has none)."""
    wait = m.chain.genesis.params.settle_wait_ms
    return ChainTime(m.chain, m.chain.tip.time, wait, wait, wh)


def test_the_sellers_share_covers_the_agreement_within_the_chains_tolerance_only() -> None:
    """Agreed 400: a seller metered 395 is within a 10-Wh tolerance (the agreed figures stand, as two meters
    that far apart would agree); one metered 385 is not (385 delivered, the 15 the seller's)."""
    for metered, delivered, shorts in ((395.0, 400, (0, 0)), (385.0, 385, (15, 0))):
        m = agreed(metered, 400, 400)
        tid = m.trade_id("s", "b")
        decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_with_tolerance(m, 10))
        assert isinstance(decision, Vouched), decision
        assert (decision.delivered, decision.shorts) == (delivered, shorts), metered


def test_a_meterless_seller_is_taken_at_the_agreement_at_once() -> None:
    m = agreed(0.0, 400, 400)
    tid = m.trade_id("s", "b")
    seller = m.anonyms["s"].public
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), {}, chain_time(m), meterless={seller})
    assert isinstance(decision, Vouched) and decision.rule == "seller meterless"
    assert (decision.delivered, decision.shorts) == (400, (0, 0))
    assert isinstance(resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed), Unresolved)  # no chain time

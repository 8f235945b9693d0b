"""The DSO node vouches for the seller's side of agreed trades (genesis seller_vouched; review13 F2), on a
real MGMC chain: two agreeing statements wait (`vouching`) and the DSO settles them from the seller's sealed
export before `until` - the agreed figures where the seller's meter covers them, else the metered delivery
with the gap the seller's (review14 K5: min(held, share), the metered gap the seller's, no tolerance on the
meter's own word; K7: a gap nobody owns is the seller's, so the contract takes the settle); a seller whose
readings never come is settled at 0 from `takeup.VOUCH_RULE` of
the window (D7). On a priced trade with a gap the buyer's meter names its own shortfall too (D2: the larger
of its word and its metered gap; both edges post their readings for a vouch), and a buyer whose readings
never come is named the whole gap from VOUCH_RULE. Time is the chain's, driven by the test."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger import query
from peergrid_ledger.takeup import VOUCH_RULE

from .test_disputes import CLOCK, END_MS, PRICE, Market, chain_time, market, ramp
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


def dso_settles(m: Market, give: tuple[str, ...] = ("s", "b")) -> list[dict[str, object]]:
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
    hand_over(m, settler, "b")  # the buyer's edge posts for its vouching purchase (its meter: 400 taken)
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


def stated(
    seller_wh: float,
    by_seller: tuple[int, int],
    by_buyer: tuple[int, int],
    tolerance: dict[str, int],
    buyer_wh: float = 400.0,
) -> Market:
    """400 Wh agreed on a priced seller_vouched chain with the given tolerance params; the buyer then the seller
    state (delivered, short) after the interval; the seller's meter shows `seller_wh`, the buyer's `buyer_wh`."""
    readings = {"s": ramp(seller_wh, export=True), "b": ramp(buyer_wh, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN),
               params={**VOUCHED, **tolerance})  # fmt: skip
    tid = m.trade_id("s", "b")
    for mg, (delivered, short) in (("b", by_buyer), ("s", by_seller)):
        m.do(
            m.anonyms[mg],
            "settle",
            {"trade": tid, "delivered": delivered, "short": short},
            max(m.now, END_MS),
        )
    return m


LAB_TOLERANCE = {
    "settle_tolerance_wh": 500,
    "settle_tolerance_permille": 30,
}  # the lab's: min(500, 12) on 400


def test_r14_k5_the_sellers_meter_decides_within_the_tolerance_so_agreeing_pays_no_more_than_honesty() -> (
    None
):
    """review14 K5: the seller's meter shows 391 of 400. Stating "400, short 0" agrees with the honest buyer
    within the lab's tolerance (12 Wh); the DSO used to pay the held 400, compensation-free. Now it settles
    min(held, share) = 391 with the metered 9 the seller's shortfall, exactly what stating 391 short 9 nets."""
    net = {}
    for says in ((400, 0), (391, 9)):
        m = stated(391.0, says, (400, 0), LAB_TOLERANCE)
        tid = m.trade_id("s", "b")
        assert query.settlement(m.chain.state, tid)["state"] == "vouching"  # type: ignore[index]
        net[says] = gains(m, lambda m=m: dso_settles(m))
        done = query.settlement(m.chain.state, tid)
        assert done is not None and done["settlement"]["basis"] == "dso"
        assert done["settlement"]["delivered"] == 391
    assert net[(400, 0)] == net[(391, 9)] == 391 * PRICE - 9 * (RETAIL - PRICE)


def test_the_sellers_share_above_the_agreement_settles_the_agreement() -> None:
    """A meter showing more than the held agreement settles the agreement (the buyer's own word caps it), with
    the buyer's stated shortfall standing: 380 held, short 20 the buyer's."""
    m = stated(400.0, (380, 0), (380, 20), LAB_TOLERANCE)
    tid = m.trade_id("s", "b")
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.rule == "seller metered, agreement covered"
    assert (decision.delivered, decision.shorts) == (380, (0, 20))
    assert dso_settles(m) == [{"trade": tid, "delivered": 380, "seller_short": 0, "buyer_short": 20}]
    assert query.settlement(m.chain.state, tid)["settlement"]["basis"] == "dso"  # type: ignore[index]


def test_r14_k7_an_unowned_gap_within_an_absolute_tolerance_is_the_sellers_and_the_chain_takes_the_settle() -> (
    None
):
    """review14 K7: settle_tolerance_wh 20 without permille lets two statements agree leaving up to 20 Wh
    unowned (buyer 400 short 0, seller 390 short 0: 10 unowned). The DSO used to repeat the held (0, 0),
    which the contract refuses `invalid` for good (the larger shortfall must be the gap); now the seller is
    named the 10 Wh gap and the chain takes the DSO's settle, inside the window."""
    m = stated(400.0, (390, 0), (400, 0), {"settle_tolerance_wh": 20})
    tid = m.trade_id("s", "b")
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching" and where["vouch"]["seller_short"] == 0
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 390, "seller_short": 10, "buyer_short": 0}
    ]
    done = query.settlement(m.chain.state, tid)
    assert (
        done is not None
        and done["settlement"]["basis"] == "dso"
        and m.chain.tip.time < where["vouch"]["until"]
    )
    assert settler.decision(tid)["outcome"] == "settled" and not settler.failed  # type: ignore[index]


@st.composite
def agreements(draw: st.DrawFn) -> tuple[tuple[int, int], tuple[int, int], bool]:
    """Two statements (seller's, buyer's (delivered, short)) that agree on 400 Wh: within 20 Wh of each other,
    the gap owned by the lower stater's shortfall, or with an absolute tolerance (`True`) up to 20 Wh of it
    left unowned."""
    by_buyer = draw(st.integers(370, 400))
    by_seller = draw(st.integers(max(370, by_buyer - 20), min(400, by_buyer + 20)))
    absolute = draw(st.booleans())
    shorts = [draw(st.integers(0, 400 - by_seller)), draw(st.integers(0, 400 - by_buyer))]
    lower = 0 if by_seller <= by_buyer else 1
    gap = 400 - min(by_seller, by_buyer)
    shorts[lower] = max(shorts[lower], gap - (draw(st.integers(0, 20)) if absolute else 0))
    return (by_seller, shorts[0]), (by_buyer, shorts[1]), absolute


@settings(max_examples=40, deadline=None)
@given(seller_wh=st.integers(0, 450), buyer_wh=st.integers(0, 450), statements=agreements())
def test_every_vouch_is_a_settle_the_contract_takes_and_never_above_the_sellers_meter(
    seller_wh: int, buyer_wh: int, statements: tuple[tuple[int, int], tuple[int, int], bool]
) -> None:
    """Whatever agreement the statements reach (an absolute tolerance or the lab's) and whatever the buyer's
    meter shows, the DSO's vouch is a settle the contract accepts (checked by submitting it), delivered never
    above the seller's share nor the held agreement, the seller's shortfall at least its metered gap, and the
    buyer's the larger of its word and its metered gap, at most the gap (D2)."""
    by_seller, by_buyer, absolute = statements
    tolerance = {"settle_tolerance_wh": 30, **({} if absolute else {"settle_tolerance_permille": 75})}
    m = stated(float(seller_wh), by_seller, by_buyer, tolerance, float(buyer_wh))
    tid = m.trade_id("s", "b")
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching", (where, statements)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.shorts is not None and decision.seller is not None
    share = decision.seller.share_wh
    assert decision.delivered == min(share, int(where["vouch"]["delivered"]))
    assert decision.shorts[0] >= 400 - min(share, 400)
    gap = 400 - decision.delivered
    assert decision.buyer is not None or gap == 0
    metered_gap = 0 if decision.buyer is None else 400 - min(decision.buyer.share_wh, 400)
    assert decision.shorts[1] == min(gap, max(int(where["vouch"]["buyer_short"]), metered_gap))
    body = {"trade": tid, "delivered": decision.delivered, "seller_short": decision.shorts[0],
            "buyer_short": decision.shorts[1]}  # fmt: skip
    result = m.chain.sign_and_submit(m.dso, "settle", body, m.chain.tip.time + 1)
    assert result.ok, result


def test_a_meterless_seller_is_taken_at_the_agreement_at_once() -> None:
    m = agreed(0.0, 400, 400)
    tid = m.trade_id("s", "b")
    seller = m.anonyms["s"].public
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), {}, chain_time(m), meterless={seller})
    assert isinstance(decision, Vouched) and decision.rule == "seller meterless"
    assert (decision.delivered, decision.shorts) == (400, (0, 0))
    assert isinstance(resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed), Unresolved)  # no chain time

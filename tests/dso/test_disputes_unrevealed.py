"""review14 K3b: both parties committed sealed statements and neither revealed by the reveal deadline. The
contract settles such a trade only on a party's late reveal and repeat, so it stayed open for ever (a seller
whose salt file is gone was never paid while its buyer kept its reveal back). The DSO node now watches such a
trade from the second commitment, takes it up when a final block's time reaches the reveal deadline, and
meters it like a dispute that became one then (`peergrid_ledger.takeup.unrevealed_since`; its deadline rules
`wait_ms` after it). On a real sealed MGMC chain (`LocalChain`) through the DSO node's settler; time is the chain's."""

from __future__ import annotations

import asyncio

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.takeup import reveals_due, unrevealed_since

from .test_disputes import CLOCK, END_MS, PRICE, Market, chain_time, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for

WAIT_MS = 120_000
RETAIL, FEED_IN = 300, 50


def both_commit(seller_wh: float, buyer_wh: float) -> tuple[Market, bytes, int]:
    """400 Wh agreed on a priced sealed chain, both MGs' readings sealed in time; both parties commit after
    the interval and neither reveals. (market, trade, the reveal deadline)."""
    readings = {"s": ramp(seller_wh, export=True), "b": ramp(buyer_wh, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT_MS, cover=(RETAIL, FEED_IN),
               params={"sealed_statements": 1})  # fmt: skip
    tid = m.trade_id("s", "b")
    for mg in ("s", "b"):
        seal = seal_of(m.chain.genesis.chain, tid, m.anonyms[mg].public, 400, 0, bytes([len(mg)]) * 32)
        m.do(m.anonyms[mg], "settle", {"trade": tid, "seal": seal}, max(m.now, END_MS))
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "open" and where["statements"] == {}
    return m, tid, int(where["deadline"])


def test_two_unrevealed_commitments_are_metered_by_the_dso_from_the_reveal_deadline() -> None:
    """Both meters show 400: before the reveal deadline the DSO leaves the trade to the parties (watching it);
    at the deadline it takes it up and settles the 400 both meters confirm, no compensation."""
    m, tid, due = both_commit(400.0, 400.0)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {} and settler.reveals == {tid: due}
    m.pass_time(due - 1)
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {}
    before = query.balance(m.chain.state, m.anonyms["s"].public)
    m.pass_time(due)
    final_blocks(m, settler, seen)
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 400, "seller_short": 0, "buyer_short": 0}
    ]
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["settlement"]["basis"] == "dso"
    assert query.balance(m.chain.state, m.anonyms["s"].public) - before == 400 * PRICE
    assert settler.reveals == {} and settler.pending == {}


def test_a_buyer_that_keeps_its_reveal_and_its_readings_back_pays_the_sellers_meter_at_the_deadline() -> None:
    """R14 K3b's case: the seller (its salt lost) cannot reveal, the buyer keeps its reveal and its readings
    back. From the reveal deadline the DSO waits `wait_ms` for the buyer's side, then settles by "seller
    metered only": the seller's metered 300 of 400 (its shortfall the 100), the buyer paying for it."""
    m, tid, due = both_commit(300.0, 400.0)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    m.pass_time(due)
    seen = final_blocks(m, settler, seen)
    hand_over(m, settler, "s")
    asyncio.run(settler.settle_due())
    waiting = settler.decision(tid)
    assert adapter.sent == [] and waiting is not None and waiting["until_ms"] == due + WAIT_MS
    assert "the buyer's metering" in waiting["why"]
    before = query.balance(m.chain.state, m.anonyms["b"].public)
    m.pass_time(due + WAIT_MS)
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 300, "seller_short": 100, "buyer_short": 100}
    ]
    assert settler.decision(tid)["rule"] == "seller metered only"  # type: ignore[index]
    assert query.balance(m.chain.state, m.anonyms["b"].public) - before == -300 * PRICE


def test_a_reveal_in_time_nobody_repeats_is_taken_up_at_the_deadline_at_what_the_repeat_pays() -> None:
    """One party reveals before the deadline, the other keeps its reveal back: the trade is the parties' (the
    contract's withheld rule takes the silent committer at its worst on the stater's repeat) until the reveal
    deadline. Nobody repeats (D4: before, it stayed "stated" for ever and the DSO never looked): the DSO
    watches it and, at the deadline, settles what the repeat pays on this chain without seller_vouched - the
    silent buyer took all 400, no shortfalls (`disputes._penalty`); a repeat first pays the same."""
    m, tid, due = both_commit(400.0, 400.0)
    settler, adapter, _ = settler_for(m)
    seen = final_blocks(m, settler)
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 400, "short": 0, "salt": bytes([1]) * 32})
    seen = final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert adapter.sent == [] and settler.pending == {} and settler.reveals == {tid: due}
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Unresolved) and "not disputed" in decision.why
    m.pass_time(due)
    final_blocks(m, settler, seen)
    asyncio.run(settler.settle_due())
    assert [body for _, _, body, _ in adapter.sent] == [
        {"trade": tid, "delivered": 400, "seller_short": 0, "buyer_short": 0}
    ]
    assert settler.decision(tid)["rule"] == "buyer withheld"  # type: ignore[index]
    repeated, rtid, rdue = both_commit(400.0, 400.0)
    salt = {"salt": bytes([1]) * 32}
    repeated.do(repeated.anonyms["s"], "settle", {"trade": rtid, "delivered": 400, "short": 0, **salt})
    repeated.pass_time(rdue)
    repeated.do(repeated.anonyms["s"], "settle", {"trade": rtid, "delivered": 400, "short": 0})
    by_dso, by_repeat = query.settlement(m.chain.state, tid), query.settlement(repeated.chain.state, rtid)
    assert by_dso is not None and by_repeat is not None
    keep = ("delivered", "amount", "seller_short", "buyer_short")
    assert {k: by_dso["settlement"].get(k) for k in keep} == {k: by_repeat["settlement"].get(k) for k in keep}


def test_a_restarted_dso_finds_an_unrevealed_trade_past_its_deadline_and_the_rule_is_the_chains_time() -> (
    None
):
    m, tid, due = both_commit(400.0, 400.0)
    record = query.trade(m.chain.state, tid)
    assert record is not None and reveals_due(record) == due
    assert unrevealed_since(record, due - 1) is None and unrevealed_since(record, due) == due
    assert isinstance(resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed), Unresolved)  # no chain time
    m.pass_time(due + 10)
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and (decision.delivered, decision.rule) == (400, "both metered")
    settler, adapter, _ = settler_for(m)  # started after the deadline: nothing in a block names the trade
    settler.look_everywhere()
    hand_over(m, settler, "s")
    hand_over(m, settler, "b")
    asyncio.run(settler.settle_due())
    assert [body["delivered"] for _, _, body, _ in adapter.sent] == [400]

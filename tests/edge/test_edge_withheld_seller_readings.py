"""A withheld seller's hold is metered as a dispute, so its buyer's edge posts its readings for it (review15 M4).

On a `sealed_statements` + `seller_vouched` chain a seller that committed and is down past the reveal window
is held at the trade's quantity, with `release` (its worst case) on the hold; the DSO meters it as a dispute
in which the seller said nothing: min(the seller's share, the buyer's metered share), so keeping a reveal
back never nets more than revealing (K3) where the buyer took less than the seller exported. That needs the
buyer's meter: its agent's watch (`agent_settlement.counterparty_readings`, `pcc_readings.readings_needed`)
posts its readings for such a hold, as for an ordinary agreement waiting for the DSO (D2: there the buyer's
meter names its own shortfall on a priced trade short of the agreement). The seller's meter shows 400 exported, the buyer's 300 imported; the
buyer states 300, short 100; price 200, retail 300, feed-in 50. Over real HTTP to the DSO server's disputes
API (`served_disputes`), each MG's watch as its agent runs it (`agent_of`).
"""

from __future__ import annotations

import asyncio
import hashlib

from dso.test_disputes import END_MS, PRICE, Market, T, market, ramp
from dso.test_disputes_node import served_disputes
from edge.test_edge_counterparty_readings import agent_of, dso_rounds

from peergrid_edge import agent_settlement
from peergrid_edge.pcc_readings import readings_needed
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.takeup import with_dso

WAIT = 120_000  # ms: settle_wait_ms
RETAIL, FEED_IN = 300, 50
QUANTITY = 400


def _salt(m: Market, mg: str, tid: bytes) -> bytes:
    return hashlib.sha256(b"salt/" + m.anonyms[mg].public + tid).digest()


def withheld_seller() -> tuple[Market, bytes]:
    """Both commit after the interval (the seller 400, short 0; the buyer 300, short 100); the buyer reveals,
    the seller's Pi is down past the reveal deadline, and the buyer's edge repeats its lone statement: the
    trade waits for the DSO, held at the quantity with the seller's worst case as `release`."""
    readings = {"s": ramp(400.0, export=True), "b": ramp(300.0, export=False)}
    m = market({("s", "b"): QUANTITY}, {}, readings=readings, wait_ms=WAIT, cover=(RETAIL, FEED_IN),
               params={"seller_vouched": 1, "sealed_statements": 1})  # fmt: skip
    tid, chain = m.trade_id("s", "b"), m.chain.genesis.chain
    s, b = m.anonyms["s"], m.anonyms["b"]
    m.do(
        b,
        "settle",
        {"trade": tid, "seal": seal_of(chain, tid, b.public, 300, 100, _salt(m, "b", tid))},
        END_MS,
    )
    m.do(s, "settle", {"trade": tid, "seal": seal_of(chain, tid, s.public, QUANTITY, 0, _salt(m, "s", tid))})
    m.do(b, "settle", {"trade": tid, "delivered": 300, "short": 100, "salt": _salt(m, "b", tid)})
    m.pass_time(int(query.settlement(m.chain.state, tid)["deadline"]))  # type: ignore[index]
    m.do(b, "settle", {"trade": tid, "delivered": 300, "short": 100})
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "vouching" and "release" in where["vouch"]
    return m, tid


def test_the_buyer_posts_for_a_withheld_sellers_hold_and_for_an_ordinary_agreement() -> None:
    m, tid = withheld_seller()
    trades, now = query.trades(m.chain.state, T), m.chain.tip.time
    assert readings_needed(trades, m.anonyms["b"].public, now) == [tid]
    assert readings_needed(trades, m.anonyms["s"].public, now) == [tid]  # the seller's, when it is back
    agreed = market({("s", "b"): QUANTITY}, {("s", "b"): (QUANTITY, QUANTITY)}, wait_ms=WAIT,
                    params={"seller_vouched": 1})  # fmt: skip
    trades, now = query.trades(agreed.chain.state, T), agreed.chain.tip.time
    [(held, record)] = trades
    assert "release" not in record["vouch"]
    assert readings_needed(trades, agreed.anonyms["b"].public, now) == [
        held
    ]  # its shortfall by its meter (D2)
    assert readings_needed(trades, agreed.anonyms["s"].public, now) == [held]


def test_a_withheld_sellers_buyer_posts_its_readings_and_the_dso_settles_from_both_meters() -> None:
    """The seller's agent, back from its reboot, and the buyer's both watch interval T and post their
    readings; the DSO settles min(400, 300) = 300 with the buyer's metered 100 its own, before the part of the
    window from which it would settle on the seller's meter alone: the seller nets 300 x 200 + 100 x (200 -
    50) = 75,000, as it does by revealing (withholding it used to net 80,000: the buyer's meter was not read)."""
    m, tid = withheld_seller()
    record = query.trade(m.chain.state, tid)
    assert record is not None
    taken = with_dso(record, m.chain.tip.time)
    assert taken is not None
    rules_from = taken.rules_from(WAIT)  # from then the DSO would settle without the buyer's meter
    before = {mg: query.balance(m.chain.state, m.anonyms[mg].public) for mg in ("s", "b")}
    with served_disputes(m) as (url, settler):

        def dso_round() -> None:
            settler.look_everywhere()
            asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)

        async def both_watch() -> None:
            watches = [agent_settlement.counterparty_readings(agent_of(url, m, mg), T) for mg in ("s", "b")]
            await asyncio.wait_for(asyncio.gather(*watches), 10)

        with dso_rounds(dso_round):
            asyncio.run(both_watch())
        shown = settler.decision(tid)
    where = query.settlement(m.chain.state, tid)
    assert where is not None and where["state"] == "settled" and where["settlement"]["basis"] == "dso"
    assert where["settlement"]["delivered"] == 300 and m.chain.tip.time < rules_from
    assert shown is not None and shown["rule"] == "both metered"
    assert (shown["seller_short"], shown["buyer_short"]) == (0, 100)
    paid = {mg: query.balance(m.chain.state, m.anonyms[mg].public) - before[mg] for mg in ("s", "b")}
    assert paid["s"] == 300 * PRICE + 100 * (PRICE - FEED_IN) == -paid["b"]

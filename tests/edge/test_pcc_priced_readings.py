"""A buyer posts its readings for its own vouched purchase only where the DSO priced the trade (D3).

On a seller_vouched chain an agreement waits for the DSO's word, which meters the seller for what was
delivered and, only on a trade whose parties the DSO priced (`market_state.cover_prices`: `market.tariff` for
both in the interval), the buyer for its own shortfall (D2, dso-server `disputes._vouch`). Before, every buyer
posted its readings for each vouched purchase, on an unpriced chain too, where the DSO never reads them. Now
the edge asks its replica (`MgMetering.priced`, `pcc_readings.readings_needed`): an unpriced vouch's buyer
posts nothing unless its seller has a disputed sale or (V4) another vouch beside it (then the DSO shares the
seller's export by each buyer's meter), a priced one's as before; the seller posts either way, and a withheld seller's hold
(`release`, metered as a dispute on both sides) has its buyer post priced or not.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from dso.test_disputes import T, market, ramp
from dso.test_disputes_node import served_disputes
from test_edge_counterparty_readings import agent_of, dso_rounds

from peergrid_edge import agent_settlement
from peergrid_edge.pcc_readings import DisputeReadings, readings_needed
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import cover_prices

S, B, C = (bytes([k]) * 32 for k in range(1, 4))
AGREED = {"buyer": {"delivered": 100, "time": 1}, "seller": {"delivered": 100, "time": 2}}
VOUCH = {"delivered": 100, "seller_short": 0, "buyer_short": 0, "until": 9}


def vouched(vouch: dict[str, Any] = VOUCH) -> list[tuple[bytes, dict[str, Any]]]:
    return [(b"sb", {"seller": S, "buyer": B, "statements": AGREED, "vouch": vouch, "settlement": None})]


def test_a_buyer_posts_for_its_vouched_purchase_only_where_it_is_priced() -> None:
    trades = vouched()
    assert readings_needed(trades, B, priced=lambda t: False) == []
    assert readings_needed(trades, B, priced=lambda t: True) == [b"sb"]
    assert readings_needed(trades, B) == [b"sb"]  # not known (no replica given): it posts, as before
    # the seller's meter decides the delivery: it posts either way
    assert readings_needed(trades, S, priced=lambda t: False) == [b"sb"]
    assert readings_needed(trades, S, priced=lambda t: True) == [b"sb"]
    assert readings_needed(trades, C, priced=lambda t: True) == []  # no party, no disputed sibling


def test_an_unpriced_vouchs_buyer_posts_where_its_seller_has_a_disputed_sale_too() -> None:
    """Beside a disputed sale of the same seller the DSO shares the seller's export over both by what each
    buyer's meter proves (`dispute_shares`: alone, the vouch's share is the seller's meter whatever the
    buyer's), so the buyer's meter counts there, priced or not; a disputed sale of another seller does not
    make it count (/work/notes/d3/vouch_buyer_present.py: 200 with its readings, 266 without)."""
    disputed = {"buyer": {"delivered": 150, "time": 1}, "seller": {"delivered": 200, "time": 2}}
    sibling = (b"sc", {"seller": S, "buyer": C, "statements": disputed, "disputed": True, "settlement": None})
    # and for the dispute too (V4: was [b"sb"]): the vouch is metered as a dispute, so resolving sc shares
    # S's export over both by B's meter as well as C's
    assert readings_needed([*vouched(), sibling], B, priced=lambda t: False) == [b"sb", b"sc"]
    other = (b"xc", {**sibling[1], "seller": bytes([9]) * 32})
    assert readings_needed([*vouched(), other], B, priced=lambda t: False) == []


def test_an_unpriced_vouchs_buyer_posts_where_its_seller_has_another_vouch() -> None:
    """V4: two vouches of one seller share its export by their buyers' meters (`metering.metered_as_dispute`
    counts every vouch), so each buyer posts for both, priced or not; a vouch of another seller does not make
    it count (tests/dso/test_disputes_vouch_siblings.py: before, the DSO's settle order decided)."""
    sibling = (b"sc", {"seller": S, "buyer": C, "statements": AGREED, "vouch": VOUCH, "settlement": None})
    assert readings_needed([*vouched(), sibling], B, priced=lambda t: False) == [b"sb", b"sc"]
    assert readings_needed([*vouched(), sibling], C, priced=lambda t: False) == [b"sb", b"sc"]
    other = (b"xc", {**sibling[1], "seller": bytes([9]) * 32})
    assert readings_needed([*vouched(), other], B, priced=lambda t: False) == []


def test_a_withheld_sellers_hold_has_its_buyer_post_priced_or_not() -> None:
    """review15 M4: the hold is metered as a dispute, both meters (`release`): the price does not matter."""
    hold = {**VOUCH, "basis": "withheld", "release": {"delivered": 0, "seller_short": 100, "buyer_short": 0}}
    assert readings_needed(vouched(hold), B, priced=lambda t: False) == [b"sb"]


def test_the_priced_question_is_asked_of_the_vouched_purchase_itself() -> None:
    """`priced` is called with the trade record the rule reads (its parties and interval: what cover_prices
    reads), and only for a vouched purchase of `me`'s."""
    asked: list[dict[str, Any]] = []

    def priced(trade: dict[str, Any]) -> bool:
        asked.append(trade)
        return False

    readings_needed(vouched(), B, priced=priced)
    assert [(t["seller"], t["buyer"]) for t in asked] == [(S, B)]
    asked.clear()
    readings_needed(vouched(), S, priced=priced)
    assert asked == []


def posts_on(cover: tuple[int, int] | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Any]:
    """A seller_vouched chain on which s and b agree on 400 and s's meter shows 250: both edges' watches run
    with `priced` read off the chain (cover_prices, as the agent's replica gives it) against the DSO's real
    disputes API; returns how many readings bodies each MG posted and the trade's settlement."""
    readings = {"s": ramp(250.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {("s", "b"): (400, 400)}, readings=readings, wait_ms=120_000, cover=cover,
               params={"seller_vouched": 1})  # fmt: skip
    tid, names = m.trade_id("s", "b"), {m.nodes[mg].public.hex(): mg for mg in ("s", "b")}
    posted: Counter[str] = Counter()
    request = DisputeReadings._request

    def counted(self: DisputeReadings, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if body is not None:
            posted[names[body["node"]]] += 1
        return request(self, path, body)

    monkeypatch.setattr(DisputeReadings, "_request", counted)
    with served_disputes(m) as (url, settler):

        def dso_round() -> None:
            settler.look_everywhere()
            asyncio.run_coroutine_threadsafe(settler.settle_due(), settler.adapter.loop).result(10)

        async def both_watch() -> None:
            agents = [agent_of(url, m, mg) for mg in ("s", "b")]
            for agent in agents:
                agent._metering().priced = lambda trade: cover_prices(m.chain.state, trade) is not None
            watches = [agent_settlement.counterparty_readings(agent, T) for agent in agents]
            await asyncio.wait_for(asyncio.gather(*watches), 10)

        with dso_rounds(dso_round):
            asyncio.run(both_watch())
    return posted, query.settlement(m.chain.state, tid)


def test_on_an_unpriced_chain_the_buyer_posts_nothing_and_the_vouch_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted, where = posts_on(None, monkeypatch)
    assert (
        where is not None
        and where["settlement"]["basis"] == "dso"
        and where["settlement"]["delivered"] == 250
    )
    assert posted["b"] == 0 and posted["s"] > 0


def test_on_a_priced_chain_the_buyer_still_posts_for_its_own_shortfall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted, where = posts_on((300, 50), monkeypatch)
    assert where is not None and where["settlement"]["delivered"] == 250
    assert where["settlement"]["compensation"]["seller_short"] == 150
    assert where["settlement"]["compensation"]["buyer_short"] == 0  # its meter: it took all 400
    assert posted["b"] > 0 and posted["s"] > 0

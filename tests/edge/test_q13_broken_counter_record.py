"""Q13 through the agent's own metering: a seller whose export counter jumps forward past its posted connection
(L3's raised TotWh_SF) gives each of the interval's trades up at the day's end with the jump's words (the
Settler's `not_stated`, as `agent_settlement.settler_for` wires `MgMetering.not_stated`), not as 'not metered
yet'. The chain is a dict and the clock the test's: no timing."""

from __future__ import annotations

import asyncio
from typing import Any

from test_l3_scale_raised import POSTED_1_MW, TRADES, exporting, metering

from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import Settlements
from peergrid_edge.settlement import Settler


def test_each_trade_of_the_broken_interval_is_given_up_naming_the_jump() -> None:
    """Before: 'the trading day ended; last refusal: not metered yet (no PCC reading after the interval's
    end)' for both sales."""
    m = metering(exporting(1_000_000, 90_000), POSTED_1_MW)
    on_chain: dict[str, Any] = {"state": "open", "statements": {}, "deadline": None, "settlement": None}
    clock, records, sent = [200.0], [], []

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body)
        return Submission(True)

    s = Settler(
        submit, lambda tid: on_chain, lambda: clock[0], asyncio.sleep, lambda: False, records.append,
        Settlements(1.0, 4.0), by_both=True, metering=m.statement, not_stated=m.not_stated,
    )  # fmt: skip

    async def day() -> None:
        await s.settle(1, TRADES, TRADES[0][1]["seller"], 0.0)
        for _ in range(2):
            await s.retry_due()
            clock[0] += 10.0

    asyncio.run(day())
    ended = s.end_of_day()
    assert not sent and len(ended) == 2
    for e in ended:
        assert "counter jumps forward" in e.reason and "between 88000 and 90000 ms" in e.reason
        assert "not metered yet" not in e.reason and "unmetered for its PCC meter" in e.reason
    assert [r["settlement"]["reason"] for r in records] == [e.reason for e in ended]

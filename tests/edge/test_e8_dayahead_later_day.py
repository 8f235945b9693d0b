"""The day-ahead session of an MGMC whose `market.first_interval` is on a later day than the scenario's first (a
long-lived chain, `days` 1; review R44): its slots were day 0's chain intervals (`run_dayahead` built it from
interval 0) while its window was the later day's, so it answered nothing there. Now its slots are the chain
intervals of the day traded, and it and its forward trades answer as the same window on day 0 does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_edge_dayahead_session import free_day, ledger_for, market_agent, run_on

from peergrid_edge.exchange_io import SessionOutcome
from peergrid_edge.forward_chain import ForwardOutcome
from peergrid_ledger.contracts import exchange_state


def test_a_dayahead_session_on_a_later_day_trades_that_days_intervals(tmp_path: Path) -> None:
    """The same MGs with the same window shape, profile indices 1 to 3: from chain interval 1 (day 0) and from
    chain interval n + 1 (day 1), each session followed by its forward trades. Both run the same day on the
    scenario's profiles; the later one's slots are day 1's chain intervals (its record's first_interval n) and
    its clear closes day 1's intervals. Before: first_interval 0, the window outside every slot."""
    scenario = free_day(3, 4)
    n = scenario.intervals

    def day(where: Path, first_interval: int) -> tuple[list[SessionOutcome], list[ForwardOutcome], int]:
        ledger, keys_ = ledger_for(where, scenario)
        agents = [
            market_agent(ledger, k, scenario, name, where / f"{name}.jsonl") for name, k in keys_.items()
        ]
        for agent in agents:
            agent.s.first_interval = first_interval  # type: ignore[misc]

        async def play() -> tuple[list[SessionOutcome], list[ForwardOutcome]]:
            sessions = await asyncio.gather(*(a.run_dayahead() for a in agents))
            assert all(o.completed for o in sessions), [o.reason for o in sessions]
            return sessions, await asyncio.gather(*(a.run_forward() for a in agents))

        sessions, forwards = run_on(ledger, play)
        record = exchange_state.session(ledger.state("mgmc"), sessions[0].session)
        assert record is not None
        return sessions, forwards, record["first_interval"]

    sessions0, forwards0, first0 = day(tmp_path / "day0", 1)
    sessions1, forwards1, first1 = day(tmp_path / "day1", n + 1)
    assert (first0, first1) == (0, n)
    assert any(any(o.positions[1:]) for o in sessions0)  # something traded in the window: the test can tell
    assert [(o.prices, o.positions) for o in sessions1] == [(o.prices, o.positions) for o in sessions0]
    assert all(o.cleared for o in forwards0 + forwards1), [o.reason for o in forwards0 + forwards1]
    assert [o.accepted for o in forwards1] == [o.accepted for o in forwards0]
    closed0 = [list(o.intervals) for o in forwards0]
    assert any(closed0) and [list(o.intervals) for o in forwards1] == [[t + n for t in c] for c in closed0]

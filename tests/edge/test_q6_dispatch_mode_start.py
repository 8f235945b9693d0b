"""The first move to a schedule out of the safe mode every MGMC starts in is the normal start, logged at INFO; a
move to safe after a schedule, and back from it, stays a WARNING (U2: every MGMC's log opened with 'WARNING
dispatch mode safe -> schedule (schedule 36)' at the first interval, a user's warning for nothing to act on).
`EdgeDaemon.dispatch_once` on a stand-in daemon: `decide`'s verdicts given, the actuator a no-op."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_edge import daemon
from peergrid_edge.dispatch import Decision


class NoActuator:
    async def perform(self, _decision: Any) -> None: ...
    def check_following(self, _views: Any) -> None: ...
    async def feed(self, _views: Any) -> None: ...


def test_the_first_schedule_is_info_and_later_moves_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    verdicts = iter([
        Decision("schedule", reason="schedule 36"), Decision("schedule", reason="schedule 37"),
        Decision("safe", reason="schedule 38 not valid now"), Decision("schedule", reason="schedule 39"),
    ])  # fmt: skip
    monkeypatch.setattr(daemon, "view_of", lambda state, now: state)
    monkeypatch.setattr(daemon, "decide", lambda *args: next(verdicts))
    edge = SimpleNamespace(
        clock=SimpleNamespace(monotonic=lambda: 0.0, wall=lambda: 0.0), states={"pv": object()},
        settings=SimpleNamespace(dispatch=SimpleNamespace(readback_tolerance_pct=5.0)),
        current_schedule=lambda: None, actuator=NoActuator(), mode="safe", scheduled_before=False,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="peergrid.edge"):
        for _ in range(4):
            asyncio.run(daemon.EdgeDaemon.dispatch_once(edge, 1.0))  # type: ignore[arg-type]
    told = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid.edge"]
    assert told == [
        ("INFO", "dispatch mode safe -> schedule (schedule 36)"),
        ("WARNING", "dispatch mode schedule -> safe (schedule 38 not valid now)"),
        ("WARNING", "dispatch mode safe -> schedule (schedule 39)"),
    ]

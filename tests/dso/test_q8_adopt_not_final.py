"""The start adoption's records not final at the first try are told at INFO, a later try at WARNING (D2's
noticed, as 72a3286 / 21d487c for capacities and enrolments): every lab's dso.log opened with a WARNING 'the
switching_plan of adopt-... at start not final yet', though it landed at the next try: the DSO chain makes no
block until its co-validators, the MGMCs, run, and the lab starts them after the DSO."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.services import switching_adopt
from peergrid_dso.services.switching_adopt import record_adoption

RECORDS = [
    ("switching_plan", {"plan": "adopt-1 at start", "interval": 0, "actions": []}),
    ("switching_result", {"plan": "adopt-1 at start", "results": []}),
]


def record_after(timeouts: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`record_adoption` on a chain whose first `timeouts` submits are not final; returns the kinds sent."""
    landed: set[str] = set()
    sent: list[str] = []

    async def submit(key: Any, kind: str, body: dict[str, Any]) -> Any:
        sent.append(kind)
        if len(sent) <= timeouts:
            return SimpleNamespace(ok=False, reason="timeout", detail=f"{kind} not final in 8.0 s")
        landed.add(kind)
        return SimpleNamespace(ok=True, reason="", detail="")

    async def wait(timeout: float) -> None:
        return None

    monkeypatch.setattr(switching_adopt, "_landed", lambda state, kind, plan_id: kind in landed)
    adapter, changed = SimpleNamespace(submit=submit), SimpleNamespace(wait=wait)
    assert asyncio.run(record_adoption(adapter, None, RECORDS, lambda: None, changed))
    return sent


def test_the_first_try_not_final_is_info_a_later_one_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "peergrid_dso.switching"):
        assert record_after(1, monkeypatch) == ["switching_plan", "switching_plan", "switching_result"]
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        (
            "INFO",
            "the switching_plan of adopt-1 at start not final yet (switching_plan not final in 8.0 s); tried again",
        )
    ]  # before: WARNING
    caplog.clear()
    with caplog.at_level(logging.INFO, "peergrid_dso.switching"):
        assert record_after(3, monkeypatch) == ["switching_plan"] * 4 + ["switching_result"]
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING", "WARNING"]

"""An MGMC that did not hear the DSO's verdict of interval t (islanded while it was published) stops waiting
for it once it holds a verdict of a later interval: the DSO runs its intervals in order, so it is past t
(`dso_verdicts.await_dso`). Before, it waited out `dso_timeout_s` (80 s in the lab)."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from peergrid_edge import dso_verdicts

HOUR = 3600.0  # a wait that never ends within the test: only the rule can end it


def _agent(verdicts: dict[int, dict[str, Any]]) -> Any:
    return types.SimpleNamespace(
        s=types.SimpleNamespace(dso_timeout_s=HOUR),
        d=types.SimpleNamespace(keypair=types.SimpleNamespace(public=b"\x01" * 32)),
        verdicts=verdicts,
        _verdict_event=asyncio.Event(),
        _stopped=lambda: None,
    )


def test_a_later_intervals_verdict_ends_the_wait_with_the_agreed_plan() -> None:
    agent = _agent({39: {"interval": 39, "iteration": 0, "final": True}})
    got = asyncio.run(asyncio.wait_for(dso_verdicts.await_dso(agent, 38, None, None, None), 60))  # type: ignore[arg-type]
    assert got is None  # as after the timeout: no verdict of 38, the agreed plan stands


def test_a_verdict_of_t_that_arrives_is_still_taken() -> None:
    async def run() -> Any:
        agent = _agent({37: {"interval": 37, "iteration": 0, "final": True}})
        waiting = asyncio.ensure_future(dso_verdicts.await_dso(agent, 38, None, None, None))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not waiting.done()  # an earlier interval's verdict says nothing of 38
        agent.verdicts[38] = {"interval": 38, "iteration": 0, "final": True, "secure": True}
        agent._verdict_event.set()
        return await asyncio.wait_for(waiting, 60)

    assert asyncio.run(run())["interval"] == 38


if __name__ == "__main__":
    pytest.main([__file__])

"""Day after day (`market.days`): a later day's first interval waits for the DSO's final verdict of the day
before's last, as every interval after the run's first does (`dso_verdicts.previous_cleared`). Before, the
day's first interval (the agent's settings' `first_interval` since it moved to the day) was let through at once,
so an MGMC could open the day while its peers and the DSO were still on the day before's last interval."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from peergrid_edge.dso_verdicts import previous_cleared
from peergrid_edge.verdict_inbox import file_verdict


def agent_on_day_two(done: int) -> SimpleNamespace:
    """The agent as `previous_cleared` reads it, moved to a day whose first interval is 24 after `done` intervals."""
    return SimpleNamespace(
        s=SimpleNamespace(first_interval=24, interval_s=60.0), done=done, verdicts={},
        _verdict_event=asyncio.Event(), d=SimpleNamespace(stopping=asyncio.Event()),
    )  # fmt: skip


def test_a_later_days_first_interval_waits_for_the_verdict_of_the_day_befores_last() -> None:
    async def main() -> tuple[bool, bool]:
        agent = agent_on_day_two(done=4)
        waiting = asyncio.create_task(previous_cleared(agent, 24))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        before = waiting.done()
        file_verdict(agent, b'{"interval": 23, "final": true, "secure": true}')  # type: ignore[arg-type]
        await asyncio.wait_for(waiting, 5)
        return before, waiting.done()

    assert asyncio.run(main()) == (False, True)


def test_the_runs_first_interval_is_not_held() -> None:
    async def main() -> None:
        await asyncio.wait_for(previous_cleared(agent_on_day_two(done=0), 24), 1)  # type: ignore[arg-type]

    asyncio.run(main())

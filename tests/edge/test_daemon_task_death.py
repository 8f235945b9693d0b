"""The edge daemon notices a long-lived task that dies (review14 K4): before, `EdgeDaemon.run` waited only for
`stopping`, so a trading agent (or a commit loop) that raised was never looked at and the edge polled on
without it. Now the death is logged as CRITICAL with its traceback, the daemon shuts down the clean way and
`run` raises `TaskDied` (the process exits non-zero; systemd's Restart=on-failure starts it again). A trading
agent that returns after its day's end is no death: the daemon runs on. No broker: nothing listens on port 9.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from peergrid_edge.config import EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.task_watch import TaskDied, watch


def settings(tmp_path: Path) -> EdgeSettings:
    return EdgeSettings.model_validate({
        "node_id": "mgmc-test", "mg": "mg1", "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": 9}, "dispatch": {"enabled": False},
    })  # fmt: skip


class Agent:
    """A trading agent that raises, or returns (its day done), `after` seconds into the run."""

    def __init__(self, raises: bool, after: float = 0.2) -> None:
        self.raises, self.after = raises, after

    async def run(self) -> None:
        await asyncio.sleep(self.after)
        if self.raises:
            raise KeyError("a bug in the day's end")

    def status(self) -> dict[str, Any]:
        return {}


def test_a_trading_agent_that_raises_stops_the_daemon_which_raises_task_died(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[EdgeDaemon, BaseException]:
        daemon = EdgeDaemon(settings(tmp_path))
        daemon.agent = Agent(raises=True)  # type: ignore[assignment]
        with pytest.raises(TaskDied) as died:
            await asyncio.wait_for(daemon.run(install_signals=False), 10)
        return daemon, died.value

    with caplog.at_level(logging.INFO, logger="peergrid.edge"):
        daemon, died = asyncio.run(main())
    assert "trading agent" in str(died) and isinstance(died.__cause__, KeyError)
    (critical,) = [r for r in caplog.records if r.levelno == logging.CRITICAL and r.name == "peergrid.edge"]
    assert "task trading agent died" in critical.getMessage() and critical.exc_info is not None
    assert isinstance(critical.exc_info[1], KeyError)
    assert daemon.stopping.is_set() and "edge mgmc-test stopping" in caplog.text  # the clean shutdown ran
    with pytest.raises(RuntimeError, match="Database is closed"):  # the store was closed by that shutdown
        daemon.store.queued()


def test_a_commit_loop_that_raises_stops_the_daemon_too(tmp_path: Path) -> None:
    async def main() -> TaskDied:
        daemon = EdgeDaemon(settings(tmp_path))

        async def broken_commit_loop() -> None:
            await asyncio.sleep(0.1)
            raise OSError(5, "Input/output error")

        daemon._commit_loop = broken_commit_loop  # type: ignore[method-assign]
        with pytest.raises(TaskDied) as died:
            await asyncio.wait_for(daemon.run(install_signals=False), 10)
        return died.value

    died = asyncio.run(main())
    assert died.task.get_name() == "commit" and isinstance(died.__cause__, OSError)


def test_an_agent_whose_day_ended_leaves_the_daemon_running_until_it_is_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> bool:
        daemon = EdgeDaemon(settings(tmp_path))
        daemon.agent = Agent(raises=False, after=0.05)  # type: ignore[assignment]
        run = asyncio.create_task(daemon.run(install_signals=False))
        await asyncio.sleep(0.6)
        running = not run.done()
        daemon.stop()
        await asyncio.wait_for(run, 10)  # returns: no TaskDied
        return running

    with caplog.at_level(logging.INFO, logger="peergrid.edge"):
        assert asyncio.run(main())
    assert "task trading agent finished" in caplog.text and "died" not in caplog.text


def test_watch_takes_a_task_cancelled_while_running_as_dead_and_one_ended_by_the_stop_as_not() -> None:
    async def main() -> tuple[str | None, Any]:
        stopping = asyncio.Event()
        forever = asyncio.create_task(asyncio.Event().wait(), name="forever")
        victim = asyncio.create_task(asyncio.Event().wait(), name="victim")
        asyncio.get_running_loop().call_later(0.05, victim.cancel)
        dead = await watch([forever, victim], stopping)
        assert stopping.is_set()  # it stops the daemon
        # after a stop, the tasks the shutdown cancels are no deaths
        stopping2 = asyncio.Event()
        other = asyncio.create_task(asyncio.Event().wait(), name="other")

        def stop_and_cancel() -> None:
            stopping2.set()
            other.cancel()

        asyncio.get_running_loop().call_later(0.05, stop_and_cancel)
        quiet = await watch([other], stopping2)
        forever.cancel()
        return None if dead is None else dead.get_name(), quiet

    assert asyncio.run(main()) == ("victim", None)


def test_the_agents_followers_are_ended_before_the_store_closes(tmp_path: Path) -> None:
    """An agent's dispute followers (`MarketAgent.background`) read the daemon's store: the shutdown ends them
    first. Before, they ran on and raised 'Database is closed' (seen in a lab's MGMC log at its stop)."""

    class Following(Agent):
        def __init__(self, daemon: EdgeDaemon) -> None:
            super().__init__(raises=False, after=60.0)
            self.reads: list[bool] = []
            self.follower = asyncio.ensure_future(self.follow(daemon))

        async def follow(self, daemon: EdgeDaemon) -> None:
            while True:
                self.reads.append(daemon.store.is_sealed(0))
                await asyncio.sleep(0)  # every loop turn, so it meets the closed store if left running

        def background(self) -> list[asyncio.Task[Any]]:
            return [self.follower]

    async def main() -> Following:
        daemon = EdgeDaemon(settings(tmp_path))
        agent = Following(daemon)
        daemon.agent = agent  # type: ignore[assignment]
        run = asyncio.create_task(daemon.run(install_signals=False))
        await asyncio.sleep(0.3)
        daemon.stop()
        await asyncio.wait_for(run, 10)
        await asyncio.sleep(0.1)
        return agent

    agent = asyncio.run(main())
    assert agent.reads and agent.follower.cancelled()

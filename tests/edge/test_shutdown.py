"""The daemon's shutdown: no task runs on after a lost cancellation, and nothing touches the ledger once closed.

Python 3.11's `asyncio.wait_for` swallows a cancellation that arrives in the loop turn its awaited event fires
(it returns the event's result instead); both tests below make that happen deterministically, by firing the
event and cancelling in the same turn. And a message paho queued on the loop just before its thread stopped
used to reach the replica after `ledger.close()` ("Database is closed" in the log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from peergrid_edge.config import EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_ledger import keys
from peergrid_ledger.consensus.shutdown import cancel_until_done
from peergrid_ledger.consensus.transport import TX, topic
from peergrid_ledger.genesis import Account, Genesis

LOSES_CANCELS = sys.version_info < (3, 12)  # 3.12's wait_for no longer swallows it


def test_a_cancellation_lost_in_wait_for_is_repeated_until_the_task_ends() -> None:
    async def main() -> None:
        tick, never = asyncio.Event(), asyncio.Event()
        ran_on: list[str] = []

        async def stubborn() -> None:
            await asyncio.wait_for(tick.wait(), 60)
            ran_on.append("after its cancel")  # the lost cancellation: it goes on...
            await asyncio.wait_for(never.wait(), 60)  # ...to wait for something else

        once, again = asyncio.create_task(stubborn()), asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)  # both wait on `tick`
        tick.set()  # the event fires, and in the same loop turn:
        once.cancel()  # the old shutdown: cancel once, then wait
        stuck = await cancel_until_done([again], grace_s=5.0)
        await asyncio.sleep(0.2)
        if LOSES_CANCELS:
            assert not once.done(), "the single cancel was lost: the old shutdown would wait on it"
            assert ran_on == ["after its cancel", "after its cancel"]  # `again` lost its first one too
        assert stuck == [] and again.cancelled()
        await cancel_until_done([once], grace_s=5.0)
        assert once.cancelled()

    asyncio.run(main())


def test_cancel_until_done_gives_up_after_its_grace_and_names_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[str]:
        mortal = asyncio.Event()

        async def immortal() -> None:
            while True:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    if mortal.is_set():
                        raise
                    # a bug: it ignores every cancellation

        task = asyncio.create_task(immortal(), name="immortal")
        await asyncio.sleep(0)
        stuck = await cancel_until_done([task], grace_s=0.3)
        assert not task.done()
        mortal.set()  # tidy up: asyncio.run cancels what is left
        return stuck

    with caplog.at_level(logging.ERROR, logger="peergrid_ledger.shutdown"):
        assert asyncio.run(main()) == ["immortal"]
    assert "still running after 0.3 s" in caplog.text and "immortal" in caplog.text


class StubbornAgent:
    """An agent task that waits on the daemon's stop event through wait_for and, its cancellation lost, goes
    on waiting for something that never comes (the old shutdown then hung in gather)."""

    def __init__(self, daemon: EdgeDaemon) -> None:
        self.d, self.ran_on = daemon, 0

    async def run(self) -> None:
        await asyncio.wait_for(self.d.stopping.wait(), 60)
        self.ran_on += 1
        await asyncio.wait_for(asyncio.Event().wait(), 60)

    def status(self) -> dict[str, Any]:
        return {}


def settings(tmp_path: Path, **extra: Any) -> EdgeSettings:
    return EdgeSettings.model_validate({
        "node_id": "mgmc-test", "mg": "mg1", "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": 9},  # nothing listens
        "dispatch": {"enabled": False}, **extra,
    })  # fmt: skip


def test_the_daemon_stops_although_a_task_lost_its_cancellation(tmp_path: Path) -> None:
    async def main() -> int:
        daemon = EdgeDaemon(settings(tmp_path))
        agent = StubbornAgent(daemon)
        daemon.agent = agent  # type: ignore[assignment]
        run = asyncio.create_task(daemon.run(install_signals=False))
        await asyncio.sleep(0.3)
        daemon.stop()
        await asyncio.wait_for(run, 5)  # the old single cancel: 60 s
        return agent.ran_on

    assert asyncio.run(main()) == (1 if LOSES_CANCELS else 0)


def test_nothing_reaches_the_ledger_after_it_closed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = keys.Keypair.generate()
    key_file = tmp_path / "node.key"
    keys.write_keyfile(key_file, node)
    genesis = Genesis(chain="mgmc-stop", time=0, authorities=(node.public,),
                      accounts=(Account(node.public, ("mgmc",)),), contracts=("market",))  # fmt: skip
    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_text(json.dumps(genesis.to_json()))
    replicas = {"mgmc": {"genesis": str(genesis_file), "block_period_ms": 50, "wal_fsync": False}}
    touched_closed: list[str] = []

    async def main() -> EdgeDaemon:
        daemon = EdgeDaemon(settings(tmp_path, ledger={"key_file": str(key_file), "replicas": replicas}))
        ledger = daemon.ledger
        assert ledger is not None
        replica = ledger.replicas["mgmc"]
        for name in ("receive", "fire"):
            real = getattr(replica, name)

            def spy(*args: Any, _real: Any = real, _name: str = name) -> Any:
                if any(store._db.closed for store in ledger.stores):
                    touched_closed.append(_name)
                return _real(*args)

            setattr(replica, name, spy)
        link = daemon.link
        disconnect = link.client.disconnect

        def disconnect_with_a_message_in_flight() -> Any:
            # paho's thread hands over one last message as the link stops: queued on the loop, run later
            message = mqtt.MQTTMessage(topic=topic("feeder1", "mgmc-stop", TX).encode())
            message.payload = b"a transaction gossiped at the last moment"
            link._on_message(link.client, None, message)
            return disconnect()

        link.client.disconnect = disconnect_with_a_message_in_flight  # type: ignore[method-assign]
        run = asyncio.create_task(daemon.run(install_signals=False))
        await asyncio.sleep(0.5)  # the replica runs its timers
        daemon.stop()
        await asyncio.wait_for(run, 10)
        await asyncio.sleep(0.5)  # what was queued or scheduled on the loop runs now
        return daemon

    with caplog.at_level(logging.WARNING):
        daemon = asyncio.run(main())
    assert touched_closed == []
    assert daemon.link.dropped_after_stop == 1 and daemon.link.dropped == 0
    assert "closed" not in caplog.text.lower() and "dropped a message" not in caplog.text

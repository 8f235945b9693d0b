"""R42 on c3957f7: the console's reader of the DSO node's records ends before the node closes the DSO chain's
store. Before, the daemon thread (`follow_node_records`) went on reading the LevelDB store while the node's stop
closed it (`DsoNode.run`: `store.close()` before `EmbeddedLoop.running` turns false); a read under way then
crashed the server with SIGSEGV (9 of 20 closes during the first scan, /tmp/r42/node_records_close_trials.py),
and one after it logged a traceback. Now the server's stop first stops the reader and waits for it
(`ConsoleState.stop_node_records`), and a scan stops before its next block, so a first scan of up to 10,000
blocks does not hold the stop up. And a scan that fails at one block no longer loses the lines of the blocks it
read before it (/tmp/r42/node_records_lost_lines.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.lab_client import lab_client
from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_dso.console.node_records import NODE, NodeRecords
from peergrid_dso.services.container import build_dso_services

WAIT_S = 30  # a bound against hanging, not a figure tested
FOLLOWER = "console-node-records"


class HeldChain:
    """A DSO chain of 100 empty blocks whose 5th block is read only once the reader was told to stop."""

    def __init__(self) -> None:
        self.height = 100
        self.read: list[int] = []
        self.at_five, self.stop_asked = threading.Event(), threading.Event()

    def block(self, height: int) -> Any:
        self.read.append(height)
        if height == 5:
            self.at_five.set()
            assert self.stop_asked.wait(WAIT_S)
        return SimpleNamespace(header=SimpleNamespace(time=0), txs=[])


def test_a_stop_ends_the_reader_within_its_first_scan(users_file: Path) -> None:
    with lab_client(users_file) as client:
        state = client.app.state.console  # type: ignore[attr-defined]
        chain = HeldChain()
        state.node_records = NodeRecords(chain)
        follower = state.follow_node_records(lambda: True)
        assert chain.at_five.wait(WAIT_S)
        asking = threading.Thread(target=state.stop_node_records)
        asking.start()
        while not state._stop_reading.is_set():  # the stop is asked while block 5 is being read
            asking.join(0.01)
        chain.stop_asked.set()
        asking.join(WAIT_S)
        assert not follower.is_alive()  # ended when stop_node_records returned
        # no block read after the stop: not the 95 left of the first scan
        assert chain.read == [1, 2, 3, 4, 5]


class StandInLoop:
    """The embedded node as the server's lifespan and `build_console` use it (lab services, no MGMC chain);
    its stop notes which console readers of the DSO chain were still running when it closed the stores."""

    before: set[threading.Thread] = set()
    reading_at_stop: list[str] | None = None

    def __init__(self, settings: DsoSettings) -> None:
        self.settings, self.lock, self.listeners, self.running = settings, threading.RLock(), [], False

    def start(self) -> Any:
        self.running = True
        return build_dso_services(dict(self.settings.console.mg_buses))

    def replica(self, name: str) -> None:
        return None

    def stop(self) -> None:
        alive = [t for t in threading.enumerate() if t.name == FOLLOWER and t not in StandInLoop.before]
        StandInLoop.reading_at_stop = [t.name for t in alive if t.is_alive()]
        self.running = False


def test_the_server_stops_the_reader_before_the_node(users_file: Path, monkeypatch: Any) -> None:
    import peergrid_dso.live

    monkeypatch.setattr(peergrid_dso.live, "EmbeddedLoop", StandInLoop)
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users_file), "lab_market": False, "lab_drift": False}}
    )
    settings = settings.model_copy(update={"loop": SimpleNamespace()})  # the closed loop's DSO, stood in for
    StandInLoop.before = set(threading.enumerate())
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        assert client.app.state.console.node_records is not None  # type: ignore[attr-defined]
        assert any(t.name == FOLLOWER for t in set(threading.enumerate()) - StandInLoop.before)
    assert StandInLoop.reading_at_stop == []  # before: ['console-node-records'], reading as the stores closed


class FailingChain:
    """Four blocks, each with one relay-watch record of the node; block 3 cannot be read at first."""

    height = 4

    def __init__(self) -> None:
        self.failing = {3}

    def block(self, height: int) -> Any:
        if height in self.failing:
            raise RuntimeError(f"height {height}: stored body is corrupt")
        body = {"operator": NODE, "action": f"watch {height}", "txs": []}
        tx = SimpleNamespace(kind="operator_action", body=body, txid=bytes([height]) * 32)
        return SimpleNamespace(header=SimpleNamespace(time=0), txs=[tx])


def test_the_lines_read_before_a_block_that_failed_come_with_the_next_scan() -> None:
    chain = FailingChain()
    records = NodeRecords(chain)
    with pytest.raises(RuntimeError, match="height 3"):
        records.scan()
    assert records.scanned == 2
    chain.failing.clear()
    # before: ['watch 3', 'watch 4'], the first two lost (`scanned` had moved past them)
    assert [line["action"] for line in records.scan()] == ["watch 1", "watch 2", "watch 3", "watch 4"]
    assert records.scan() == [] and records.changes == 4

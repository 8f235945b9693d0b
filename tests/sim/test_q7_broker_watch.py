"""The testbed starts a dead broker again (`broker_watch`): the same broker on the same port after a back-off, each
death and return told once, and it gives up with one ERROR after quick deaths in a row, never after its stop
began. Before, it only told the user how to restart it by hand (U2 P5, f96a21c), and the lab stalled until then.
The back-off and the stop race over a fake broker and clock; the restart and the giving up over a real Mosquitto
on a free loopback port (killed with SIGKILL; its port then held by a socket of the test's own)."""

from __future__ import annotations

import json
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_proc import alive
from helpers_wait import wait_until

from peergrid_sim import processes
from peergrid_sim.broker import LOOPBACK, BrokerError, MosquittoBroker
from peergrid_sim.broker_watch import BrokerGaveUp, BrokerWatch, RestartBackoff, exit_status
from peergrid_sim.ports import listening_ports


def test_the_waits_double_from_one_second_to_their_cap_and_a_long_run_starts_them_over() -> None:
    backoff = RestartBackoff()
    assert backoff.after_death(3600.0) == 1.0  # a broker that ran an hour: started again a second later
    assert [backoff.after_death(0.5) for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]
    assert backoff.after_death(31.0) == 1.0  # it ran past QUICK_S: the count starts over
    assert [backoff.after_death(0.0) for _ in range(5)] == [2.0, 4.0, 8.0, 8.0, None]  # the fifth quick one


def test_exit_statuses_are_named() -> None:
    assert exit_status(-9) == "exited with -9 (SIGKILL)"
    assert exit_status(1) == "exited with 1"
    assert exit_status(None) == "never listened"


@dataclass
class FakeProcess:
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeBroker:
    """What the watch uses of `MosquittoBroker`: its process, port and log, `restart`, `stop`."""

    def __init__(self, comes_back: bool = True) -> None:
        self.process: FakeProcess | None = FakeProcess(100)
        self.port, self.log_path = 1883, Path("/lab/broker/mosquitto.log")
        self.comes_back, self.starts = comes_back, 0

    def restart(self) -> None:
        self.starts += 1
        self.process = FakeProcess(100 + self.starts, None if self.comes_back else 3)
        if not self.comes_back:
            raise BrokerError("mosquitto did not come back")

    def stop(self) -> None:
        self.process = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch(broker: FakeBroker, clock: Clock) -> tuple[BrokerWatch, list[str]]:
    restarts: list[str] = []
    watch = BrokerWatch(broker, lambda: restarts.append("pids"), clock=clock)  # type: ignore[arg-type]
    return watch, restarts


def test_a_dead_broker_is_told_once_and_started_again_after_its_wait() -> None:
    broker, clock = FakeBroker(), Clock()
    watch, restarts = _watch(broker, clock)
    going = lambda: False  # noqa: E731
    assert watch.check(going) == []
    clock.now += 600
    assert broker.process is not None
    broker.process.returncode = -9
    assert watch.check(going) == [
        "WARNING the broker (mosquitto, PID 100) exited with -9 (SIGKILL); starting it again on port 1883 in 1 s "
        "(see /lab/broker/mosquitto.log)"
    ]
    clock.now += 0.5
    assert watch.check(going) == [] and broker.starts == 0  # told once, waiting
    clock.now += 0.5
    assert watch.check(going) == [
        "the broker is back on port 1883 (mosquitto, PID 101), 1.0 s after it exited"
    ]
    assert broker.starts == 1 and restarts == ["pids"]
    assert watch.check(going) == []


def test_quick_deaths_in_a_row_end_in_one_error() -> None:
    broker, clock = FakeBroker(comes_back=False), Clock()
    watch, _ = _watch(broker, clock)
    assert broker.process is not None
    clock.now += 600  # it ran ten minutes: its death is not a quick one, the five failed starts after it are
    broker.process.returncode = 0
    lines = []
    with pytest.raises(BrokerGaveUp) as gave_up:
        for _ in range(100):
            lines += watch.check(lambda: False)
            clock.now += 0.5
    assert broker.starts == 5 and lines[0].startswith("WARNING the broker (mosquitto, PID 100) exited with 0")
    assert lines[1:] == [
        f"WARNING the broker did not come back on port 1883 (exited with 3); trying again in {wait} s "
        "(see /lab/broker/mosquitto.log)"
        for wait in (2, 4, 8, 8)
    ]
    assert str(gave_up.value) == (
        "ERROR the broker (mosquitto) died 5 times in a row, each within 30 s of its start (the last exited with "
        "3); not started again, so the lab stops: see /lab/broker/mosquitto.log"
    )
    assert broker.process is None  # the last failed start ended, nothing left running


def test_no_restart_once_the_stop_began() -> None:
    broker, clock = FakeBroker(), Clock()
    watch, _ = _watch(broker, clock)
    assert broker.process is not None
    broker.process.returncode = -15
    assert watch.check(lambda: False)  # told; a start due in 1 s
    clock.now += 5
    assert watch.check(lambda: True) == [] and broker.starts == 0  # the stop began: never started
    # and a stop that begins between the due time's check and the start: the second look at it holds it back
    looks = iter([False, True])
    assert watch.check(lambda: next(looks)) == [] and broker.starts == 0


def test_a_broker_started_again_by_another_hand_is_watched_from_then_on() -> None:
    broker, clock = FakeBroker(), Clock()
    watch, _ = _watch(broker, clock)
    assert broker.process is not None
    broker.process.returncode = 1
    assert watch.check(lambda: False)
    broker.restart()  # control/restart-broker, before the watch's own start was due
    assert watch.check(lambda: False) == [
        "the broker is back on port 1883 (mosquitto, PID 101), 0.0 s after it exited"
    ]
    clock.now += 10
    assert watch.check(lambda: False) == [] and broker.starts == 1  # no second start of its own


def _bed(workdir: Path) -> processes.Testbed:
    return processes.Testbed(workdir, Path("unused.yaml"), None, 0, 60.0)  # type: ignore[arg-type]


def test_a_broker_killed_comes_back_on_its_port_and_pids_json_names_it(tmp_path: Path) -> None:
    bed = _bed(tmp_path)
    bed.broker = MosquittoBroker(tmp_path / "broker").start()
    try:
        assert bed.watch_broker(lambda: False) == []
        assert bed.broker.process is not None
        old, port = bed.broker.process.pid, bed.broker.port
        os.kill(old, signal.SIGKILL)
        told: list[str] = []
        assert wait_until(lambda: bool(told.extend(bed.watch_broker(lambda: False)) or len(told) == 2))
        assert told[0].startswith(f"WARNING the broker (mosquitto, PID {old}) exited with -9 (SIGKILL); ")
        assert told[1].startswith(f"the broker is back on port {port} (mosquitto, PID ")
        new = bed.broker.process.pid
        assert new != old and not alive(old) and port in listening_ports(new)
        assert json.loads((tmp_path / "pids.json").read_text())["mosquitto"] == new
    finally:
        bed.stop()
    assert not alive(new)
    assert json.loads((tmp_path / "logs" / "stopped-pids.json").read_text())["mosquitto"] == new


def test_a_broker_that_cannot_come_back_ends_in_a_testbed_error(tmp_path: Path) -> None:
    """Its port taken by another process: every start exits at once ('address in use'), five in a row."""
    bed = _bed(tmp_path)
    bed.broker_backoff = RestartBackoff(first_wait_s=0.05, max_wait_s=0.2)
    bed.broker = MosquittoBroker(tmp_path / "broker").start()
    try:
        assert bed.broker.process is not None
        os.kill(bed.broker.process.pid, signal.SIGKILL)
        bed.broker.process.wait(timeout=10)
        told: list[str] = []
        with (
            socket.create_server((LOOPBACK, bed.broker.port)),
            pytest.raises(processes.TestbedError) as gave_up,
        ):
            assert not wait_until(lambda: bool(told.extend(bed.watch_broker(lambda: False))) and False)
        # killed a moment after its start, the first death is a quick one too: it and four failed starts
        assert len(told) == 4 and all(line.startswith("WARNING the broker ") for line in told)
        assert "did not come back" in told[1] and "(exited with " in told[1]
        assert str(gave_up.value).startswith("ERROR the broker (mosquitto) died 5 times in a row")
        assert bed.broker.process is None  # nothing of it left running
    finally:
        bed.stop()

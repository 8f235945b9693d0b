"""H5 (session 18): at start the DSO node reads every relay before it serves (`switching_adopt.start_topology`),
and a silent relay - one that takes the connection and never answers - costs its whole read timeout. Read one
after the other, 37 silent relays held the node 37 s; now the Modbus driver reads them all at once, one worker
per connection (`ModbusRelayDriver.read_every`), keeping each relay's own verdict. Against stand-in relays on
loopback that accept and never answer: the requests are shown waiting at the same moment (not timed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.services.switching import SwitchingExecutor, plan_switching
from peergrid_dso.services.switching_adopt import read_relays, start_topology

from .test_switching import BASE, OPTIMUM, dso_chain

SILENT = (7, 9, 14, 32, 33, 34, 35, 36, 37)


class SilentRelays:
    """TCP listeners that take a Modbus request and never answer; count the requests waiting at once."""

    def __init__(self, n: int) -> None:
        self.listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
        self.ports = [s.getsockname()[1] for s in self.listeners]
        self._lock = threading.Lock()
        self.waiting = self.most_waiting = self.requests = 0
        self.arrivals: list[float] = []  # monotonic time of each request
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self.listeners]
        for thread in self._threads:
            thread.start()

    def _serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            if not conn.recv(260):  # the request (or a close before one)
                return
            with self._lock:
                self.requests += 1
                self.arrivals.append(time.monotonic())
                self.waiting += 1
                self.most_waiting = max(self.most_waiting, self.waiting)
            try:
                while conn.recv(260):  # never answered; until the driver gives up and closes
                    pass
            except OSError:
                pass
            with self._lock:
                self.waiting -= 1

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1)
        for listener in self.listeners:
            listener.close()


@pytest.fixture
def silent() -> Iterator[tuple[SilentRelays, ModbusRelayDriver]]:
    relays = SilentRelays(len(SILENT))
    endpoints = {b: RelayEndpoint("127.0.0.1", port) for b, port in zip(SILENT, relays.ports, strict=True)}
    driver = ModbusRelayDriver(endpoints, timeout_s=0.3)
    try:
        yield relays, driver
    finally:
        driver.close()
        relays.close()


def test_silent_relays_at_start_are_read_at_once_each_named(silent) -> None:
    relays, driver = silent
    start = start_topology(case33bw(), driver)
    assert relays.requests == len(SILENT)
    assert relays.most_waiting == len(SILENT)  # one after the other: 1 (each its own timeout)
    assert start.open_set == case33bw().initially_open() and start.adoption is None
    assert start.alarm is not None
    for branch in SILENT:
        assert f"branch {branch} unreachable (read_discrete_inputs to 127.0.0.1:" in start.alarm


def test_the_plans_read_of_every_relay_is_at_once_too(silent) -> None:
    relays, driver = silent
    chain, dso = dso_chain()
    from peergrid_dso.services.dso_chain import ChainRecorder

    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=0.5)
    plan = plan_switching(case33bw(), BASE, OPTIMUM, plan_id="p-silent")
    executor.recorder.plan(plan)
    result = executor.execute(plan)
    assert relays.most_waiting == len(SILENT)
    assert not result.ok and result.steps == ()
    assert result.alarm is not None and result.alarm.count("unreachable") == len(SILENT)


def test_relays_behind_one_connection_are_read_in_turn_and_a_driver_without_read_every_as_before() -> None:
    relays = SilentRelays(1)
    shared = {b: RelayEndpoint("127.0.0.1", relays.ports[0], unit_id=i + 1) for i, b in enumerate((33, 37))}
    driver = ModbusRelayDriver(shared, timeout_s=0.2)
    try:
        reading = read_relays(driver)
        assert reading is not None and sorted(reading.unreadable) == [33, 37] and reading.positions == {}
        # in turn: the second request goes out only once the first timed out (0.2 s). Not `most_waiting`: the
        # stand-in sees the first connection closed only when its thread next runs, which under load can be
        # after the driver's reconnect for the second (ci18e: 2 waiting "at once", sent 0.2 s apart)
        first, second = relays.arrivals
        assert relays.requests == 2 and second - first >= 0.15, relays.arrivals
    finally:
        driver.close()
        relays.close()
    memory = InMemoryRelays({b: b not in BASE for b in (33, 37)})
    reading = read_relays(memory)
    assert reading is not None and reading.positions == {33: "open", 37: "open"} and reading.unreadable == {}

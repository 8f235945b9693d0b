"""A relay that drops its TCP connection mid-plan (a reboot, a middlebox losing the flow), and a driver that
raises something other than `RelayError`: both are failed steps that roll back, are recorded and alarmed -
the feeder is never left meshed and nobody is left without a record (review21 F3)."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint, load_relay_map
from peergrid_dso.drivers.relay_tls import RelayTls
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.switching import (
    RelayError,
    RelayOperation,
    RelayStatus,
    StepRecord,
    SwitchingExecutor,
    SwitchingPlan,
)
from peergrid_sim.certs import make_lab_pki

from .test_switching import Clock, FakeRelays, dso_chain
from .test_switching_relays import chain_steps

RELAY_MAP = load_relay_map()
# Close tie 33, then open branch 7 in the loop it made (make-before-break): between the two the feeder
# is meshed, so a failure after the first step must undo it.
PLAN = SwitchingPlan(
    "reset-1",
    0,
    (33, 34, 35, 36, 37),
    (7, 34, 35, 36, 37),
    (RelayOperation(33, True), RelayOperation(7, False)),
)


@dataclass
class ResettingRelay:
    """One Modbus TCP relay (function 2 status, function 5 command; the DSO's relay_map.yaml) on loopback.

    Once commanded, it answers its next `resets` status reads by resetting the connection (RST, no reply)."""

    closed: bool
    resets: int = 0
    commands: list[bool] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # Modbus/TCP Security: serve over TLS with this server context

    def __post_init__(self) -> None:
        self._armed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            while True:
                try:
                    request = conn.recv(260)
                except OSError:
                    return
                if len(request) < 8:
                    return
                header, unit, function = request[:4], request[6], request[7]
                if function == 5:
                    coil = struct.unpack(">H", request[8:10])[0]
                    self.closed = coil == RELAY_MAP["coils"]["close_command"]
                    self.commands.append(self.closed)
                    self._armed = True
                    pdu = request[7:12]  # a coil write is echoed
                elif function == 2:
                    if self._armed and self.resets > 0:
                        self.resets -= 1
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return  # closing with linger 0 sends RST
                    di = RELAY_MAP["discrete_inputs"]
                    bits = 1 << (di["closed"] if self.closed else di["open"])
                    pdu = bytes([2, 1, bits])
                else:
                    pdu = bytes([function | 0x80, 1])
                conn.sendall(header + struct.pack(">H", len(pdu) + 1) + bytes([unit]) + pdu)

    def stop(self) -> None:
        for conn in [self._listener, *self._conns]:  # shutdown wakes the blocked accept/recv
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)
        assert not self._thread.is_alive()
        self._listener.close()


class Recorded:
    """A recorder that keeps the order of what it was handed, beside the DSO chain's own records."""

    def __init__(self, chain_recorder: ChainRecorder) -> None:
        self.inner, self.calls = chain_recorder, list[str]()

    def plan(self, plan: SwitchingPlan) -> None:
        self.calls.append("plan")
        self.inner.plan(plan)

    def step(self, plan: SwitchingPlan, index: int, step: StepRecord) -> None:
        self.calls.append(f"step {step.branch}")
        self.inner.step(plan, index, step)

    def result(self, plan: SwitchingPlan, steps: list[StepRecord]) -> None:
        self.calls.append("result")
        self.inner.result(plan, steps)


@pytest.fixture
def tie_and_branch() -> Iterator[tuple[ResettingRelay, ResettingRelay, ModbusRelayDriver]]:
    tie, branch = ResettingRelay(closed=False, resets=1), ResettingRelay(closed=True)
    driver = ModbusRelayDriver(
        {33: RelayEndpoint("127.0.0.1", tie.port), 7: RelayEndpoint("127.0.0.1", branch.port)}, timeout_s=5.0
    )
    yield tie, branch, driver
    driver.close()
    tie.stop()
    branch.stop()


def test_a_reset_connection_is_a_relay_error_and_the_next_call_reconnects(tie_and_branch) -> None:
    tie, _, driver = tie_and_branch
    driver.command(33, True)
    with pytest.raises(RelayError, match=r"ConnectionResetError|BrokenPipeError|ConnectionAbortedError"):
        driver.status(33)
    assert driver.status(33) == RelayStatus(True, False, False, False)  # a fresh connection
    assert tie.commands == [True]


def test_a_relay_resetting_after_the_command_is_rolled_back_recorded_and_alarmed(tie_and_branch) -> None:
    tie, branch, driver = tie_and_branch
    chain, dso = dso_chain()
    recorder = Recorded(ChainRecorder(chain, dso))
    executor = SwitchingExecutor(driver, recorder, timeout_s=5.0, poll_s=0.02)
    recorder.plan(PLAN)
    result = executor.execute(PLAN)  # never raises
    assert not result.ok and result.final_open == PLAN.from_open
    assert result.alarm is not None and "branch 33: read-back failed" in result.alarm
    assert "rolled back" in result.alarm and executor.alarms == [f"reset-1: {result.alarm}"]
    # The tie took the close, then was commanded open again; branch 7 was never touched: radial.
    assert tie.commands == [True, False] and not tie.closed
    assert branch.commands == [] and branch.closed
    assert recorder.calls == ["plan", "step 33", "step 33", "result"]
    steps = chain_steps(chain, "reset-1")
    assert [(s["switch"], s["close"], s["ok"], s["rollback"], s["status"]) for s in steps] == [
        ("s33", True, False, False, "unknown"),
        ("s33", False, True, True, "open"),
    ]
    assert "ConnectionResetError" in steps[0]["detail"]


def test_a_relay_that_keeps_resetting_fails_the_rollback_loudly_and_is_still_recorded(tie_and_branch) -> None:
    tie, branch, driver = tie_and_branch
    tie.resets = 1_000  # every read-back after a command resets: the undo cannot be confirmed either
    chain, dso = dso_chain()
    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=5.0, poll_s=0.02)
    ChainRecorder(chain, dso).plan(PLAN)
    result = executor.execute(PLAN)
    assert not result.ok and "ROLLBACK FAILED at branch 33" in (result.alarm or "")
    assert tie.commands == [True, False] and branch.commands == []  # the undo was still commanded
    steps = chain_steps(chain, "reset-1")
    assert [(s["switch"], s["ok"], s["rollback"]) for s in steps] == [
        ("s33", False, False),
        ("s33", False, True),
    ]


@dataclass
class BuggyDriver(FakeRelays):
    """A driver with a bug: after a command to `branch` its next status read raises a non-RelayError."""

    bug_on: int = 0
    bugs: int = 0

    def status(self, branch: int) -> RelayStatus:
        if branch == self.bug_on and self.operated and self.bugs == 0:
            self.bugs += 1
            raise ValueError("unpacked a short frame")
        return super().status(branch)


def test_any_driver_exception_is_a_failed_step_rolled_back_and_logged(caplog) -> None:
    driver = BuggyDriver({33: False, 7: True}, bug_on=7)
    chain, dso = dso_chain()
    clock = Clock()
    executor = SwitchingExecutor(
        driver, ChainRecorder(chain, dso), timeout_s=1.0, sleep=clock.sleep, clock=clock
    )
    ChainRecorder(chain, dso).plan(PLAN)
    with caplog.at_level(logging.ERROR, logger="peergrid_dso.switching"):
        result = executor.execute(PLAN)
    assert not result.ok and "branch 7: read-back failed: ValueError: unpacked a short frame" in (
        result.alarm or ""
    )
    # Both relays back where they started: 7 re-closed (it may have opened), then tie 33 re-opened.
    assert driver.operated == [(33, True), (7, False), (7, True), (33, False)]
    assert driver.closed == {33: False, 7: True} and result.final_open == PLAN.from_open
    steps = chain_steps(chain, "reset-1")
    assert [(s["switch"], s["ok"], s["rollback"]) for s in steps] == [
        ("s33", True, False), ("s7", False, False), ("s7", True, True), ("s33", True, True),
    ]  # fmt: skip
    assert any("relay driver raised ValueError" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_driver_exception_while_checking_the_plan_refuses_it_with_nothing_operated() -> None:
    class Unreadable(FakeRelays):
        def status(self, branch: int) -> RelayStatus:
            raise ConnectionResetError(104, "Connection reset by peer")

    driver = Unreadable({33: False, 7: True})
    chain, dso = dso_chain()
    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=1.0)
    ChainRecorder(chain, dso).plan(PLAN)
    result = executor.execute(PLAN)
    assert not result.ok and driver.operated == []
    assert "plan refused, no relay operated: branch 7 unreachable (ConnectionResetError" in (
        result.alarm or ""
    )


def test_a_tls_relay_resetting_mid_call_or_failing_its_handshake_is_a_relay_error(tmp_path: Path) -> None:
    """Modbus/TCP Security: a reset under TLS, and a handshake torn by a relay that is not speaking TLS,
    are RelayErrors too (ssl.SSLError is an OSError), never a bare socket exception."""
    pki = make_lab_pki(tmp_path / "pki", ["dso"], roles={"dso": "operator"}, servers=["relay-s33"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.servers["relay-s33"].cert, pki.servers["relay-s33"].key)
    server.load_verify_locations(pki.ca_cert)
    server.verify_mode = ssl.CERT_REQUIRED
    tls = RelayTls(ca_file=pki.ca_cert, cert_file=pki.clients["dso"].cert, key_file=pki.clients["dso"].key,
                   server_name="relay-s33")  # fmt: skip
    secure, plain = ResettingRelay(closed=False, resets=1, tls=server), ResettingRelay(closed=False)
    driver = ModbusRelayDriver(
        {
            33: RelayEndpoint("127.0.0.1", secure.port, 1, tls),
            7: RelayEndpoint("127.0.0.1", plain.port, 1, tls),
        },
        timeout_s=3.0,
    )
    try:
        assert driver.status(33).closed is False  # the TLS relay works
        driver.command(33, True)
        with pytest.raises(RelayError, match=r"read_discrete_inputs to 127\.0\.0\.1"):
            driver.status(33)  # reset under TLS
        assert driver.status(33).closed is True  # a fresh TLS connection
        with pytest.raises(RelayError, match=r"127\.0\.0\.1"):
            driver.status(7)  # a plain Modbus server answering a TLS client: no handshake
        assert plain.commands == []
    finally:
        driver.close()
        secure.stop()
        plain.stop()

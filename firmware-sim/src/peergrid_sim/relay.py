"""Feeder switch relays: a pure switching mechanism behind a vendor-style Modbus map (`maps/relay.yaml`).

Promises: a command starts an operation that completes after the operate delay on the simulated clock,
counts one operation, and moves the contacts; a locked-out or interlocked relay refuses commands
(exception 4) and a relay mid-operation answers BUSY (6). Fail modes: `no_operation` (the command is
accepted, nothing moves, `failed` is raised when the delay expires) and `wrong_status` (contacts move but
the status inputs report the opposite). Pure: time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .devices import Faults
from .image import DEVICE_FAILURE, ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, MAPS_DIR
from .modbus import READ_COILS, READ_HOLDING

SERVER_BUSY = 6
OPEN, CLOSED, OPERATING, UNKNOWN = 0, 1, 2, 3


def _load_map() -> dict[str, dict[int, str]]:
    import yaml

    raw = yaml.safe_load((MAPS_DIR / "relay.yaml").read_text(encoding="utf-8"))
    return {table: {int(k): v for k, v in raw[table].items()} for table in raw if table != "kind"}


RELAY_MAP = _load_map()


@dataclass
class RelayMechanism:
    closed: bool
    operate_delay_s: float = 0.1
    operations: int = 0
    locked_out: bool = False
    interlock: bool = False
    failed: bool = False
    pending: bool | None = None  # target position of an operation in progress
    due: float = 0.0

    def command(self, now: float, close: bool, fail_mode: str | None) -> int | None:
        """Start an operation; returns a Modbus exception code when refused."""
        if self.locked_out or self.interlock:
            return DEVICE_FAILURE
        if self.pending is not None:
            return SERVER_BUSY
        self.failed = False
        if close == self.closed:
            return None  # already there: nothing to do, as real switchgear
        self.pending, self.due = close, now + self.operate_delay_s
        return None

    def advance(self, now: float, fail_mode: str | None) -> None:
        if self.pending is not None and now >= self.due:
            if fail_mode == "no_operation":
                self.failed = True
            else:
                self.closed = self.pending
                self.operations += 1
            self.pending = None

    def reported_closed(self, fail_mode: str | None) -> bool:
        return (not self.closed) if fail_mode == "wrong_status" else self.closed

    def position(self, fail_mode: str | None) -> int:
        if self.pending is not None:
            return OPERATING
        if self.failed:
            return UNKNOWN
        return CLOSED if self.reported_closed(fail_mode) else OPEN


@dataclass
class RelayDevice:
    name: str
    branch: int
    unit_id: int
    mechanism: RelayMechanism
    spec: Any
    faults: Faults = field(default_factory=Faults)
    now: float = 0.0
    mg: None = None
    kind: str = "relay"

    @classmethod
    def create(cls, spec: Any) -> RelayDevice:
        mechanism = RelayMechanism(
            closed=spec.closed,
            operate_delay_s=spec.operate_delay_s,
            interlock=spec.interlock,
            locked_out=spec.locked_out,
        )
        return cls(spec.name, spec.branch, spec.unit_id, mechanism, spec)

    def advance(self, now: float) -> None:
        self.now = now
        self.mechanism.advance(now, self.faults.relay_fail)

    def reboot(self) -> None:
        """Power cycle: an operation in progress is lost, the lockout and the contacts stay."""
        self.mechanism.pending = None
        self.mechanism.operate_delay_s = self.spec.operate_delay_s

    def command(self, action: str) -> int | None:
        m = self.mechanism
        if action in ("open", "close"):
            result = m.command(self.now, action == "close", self.faults.relay_fail)
            self.advance(self.now)  # a zero delay completes at once
            return result
        if action == "lockout":
            m.locked_out = True
            return None
        if action == "reset":
            m.locked_out, m.failed = False, False
            return None
        return ILLEGAL_VALUE

    def points(self) -> dict[str, int]:
        m, fail = self.mechanism, self.faults.relay_fail
        reported = m.reported_closed(fail)
        return {
            "close_command": int(m.pending is True),
            "open_command": int(m.pending is False),
            "lockout": int(m.locked_out),
            "closed": int(reported and m.pending is None),
            "open": int(not reported and m.pending is None),
            "locked_out": int(m.locked_out),
            "interlock": int(m.interlock),
            "operating": int(m.pending is not None),
            "failed": int(m.failed),
            "operations_hi": (m.operations >> 16) & 0xFFFF,
            "operations_lo": m.operations & 0xFFFF,
            "position": m.position(fail),
            "operate_delay_ms": round(m.operate_delay_s * 1000),
            "command": 0,
        }

    def status(self) -> dict[str, Any]:
        m = self.mechanism
        return {
            "branch": self.branch,
            "closed": m.closed,
            "reported_closed": m.reported_closed(self.faults.relay_fail),
            "operations": m.operations,
            "locked_out": m.locked_out,
            "interlock": m.interlock,
            "operating": m.pending is not None,
            "failed": m.failed,
            "faults": self.faults.describe(),
        }

    def readings(self) -> dict[str, Any]:
        return self.status()

    # --- modbus.Target ---
    def _read(self, table: str, address: int, count: int) -> list[int] | int:
        names = RELAY_MAP[table]
        if any(a not in names for a in range(address, address + count)):
            return ILLEGAL_ADDRESS
        points = self.points()
        return [points[names[a]] for a in range(address, address + count)]

    def read_bits(self, table: int, address: int, count: int) -> list[int] | int:
        return self._read("coils" if table == READ_COILS else "discrete_inputs", address, count)

    def read_registers(self, table: int, address: int, count: int) -> list[int] | int:
        return self._read("holding_registers" if table == READ_HOLDING else "input_registers", address, count)

    def write_bits(self, address: int, values: list[int]) -> int | None:
        names = RELAY_MAP["coils"]
        if any(a not in names for a in range(address, address + len(values))):
            return ILLEGAL_ADDRESS
        for offset, value in enumerate(values):
            name = names[address + offset]
            if name == "lockout":
                error = self.command("lockout" if value else "reset")
            elif value:
                error = self.command("close" if name == "close_command" else "open")
            else:
                error = None  # writing 0 to a momentary command coil does nothing
            if error is not None:
                return error
        return None

    def write_registers(self, address: int, values: list[int]) -> int | None:
        names = RELAY_MAP["holding_registers"]
        if any(a not in names for a in range(address, address + len(values))):
            return ILLEGAL_ADDRESS
        for offset, value in enumerate(values):
            name = names[address + offset]
            if name == "operate_delay_ms":
                if value > 60000:
                    return ILLEGAL_VALUE
                self.mechanism.operate_delay_s = value / 1000.0
            else:
                action = {1: "open", 2: "close", 3: "lockout", 4: "reset"}.get(value)
                if action is None:
                    return ILLEGAL_VALUE
                error = self.command(action)
                if error is not None:
                    return error
        return None


__all__ = ["ILLEGAL_FUNCTION", "RelayDevice", "RelayMechanism"]

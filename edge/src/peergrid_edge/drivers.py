"""Device drivers behind one small interface: `read_all() -> Snapshot`, `write(setpoint, value)`, `close()`.

Promises: `read_all` never raises on device trouble; a failed read returns a Snapshot with `ok=False` and the
reason, so the poll loop treats every device the same. `write` takes a nature-level setpoint (`limit_w`,
`power_w`, `on`, `output_w`, `connected`) and raises `DeviceError` when the device refuses or does not answer;
it never confirms anything itself — the dispatcher reads back. Assumes asyncio; every call is bounded by the
device's timeout. Must never block the event loop. `make_driver` picks the implementation from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from peergrid_edge.config import DeviceSettings, EdgeSettings

if TYPE_CHECKING:
    from peergrid_edge.link import MqttLink


class DeviceError(Exception):
    """A device that did not answer, answered with a Modbus exception, or refused a value."""


@dataclass(frozen=True)
class Snapshot:
    device: str
    nature: str
    ok: bool
    at: float  # wall-clock seconds when the read started
    points: dict[str, dict[str, Any]] = field(default_factory=dict)  # model id -> point -> value
    error: str | None = None
    reading: dict[str, float | None] = field(default_factory=dict)  # the nature's quantities


class Driver(Protocol):
    settings: DeviceSettings

    async def read_all(self) -> Snapshot: ...

    async def write(self, setpoint: str, value: float) -> None: ...

    def close(self) -> None: ...


def make_driver(device: DeviceSettings, settings: EdgeSettings, link: MqttLink | None = None) -> Driver:
    if device.protocol == "mqtt":
        from peergrid_edge.telemetry import MqttTelemetryDriver

        if link is None:
            raise ValueError(f"device {device.name}: an MQTT device needs the broker link")
        topic = device.topic or settings.topic("telemetry", settings.mg, device.name)
        return MqttTelemetryDriver(device, link, topic)
    from peergrid_edge.modbus import SunSpecModbusDriver

    return SunSpecModbusDriver(device)

"""R42: an MQTT PCC meter's energy counters reach its reading leaves, so it is metered on both sides. firmware-sim's
MQTT meter publishes them as `export_wh` and `import_wh`; the edge's telemetry reader knew only the generic names
(`energy_wh`), so the meter's reading held no counter, its leaves (`rolls: false`, L2) none either, and metering
found no reading of either counter: the MG was unmetered as a seller and as a buyer, whatever it delivered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from peergrid_edge import commitments
from peergrid_edge.config import DeviceSettings
from peergrid_edge.telemetry import MqttTelemetryDriver, parse_telemetry
from peergrid_ledger.metering import COUNTER, metered
from peergrid_sim.physics_site import PccMeter

TOPIC = "site/mg1/pcc"


class _Link:
    """Subscriptions only: the driver reads what is handed to it."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[str, bytes], None]] = {}

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        self.handlers[topic] = handler


def _published(meter: PccMeter) -> bytes:
    """The meter's telemetry as firmware-sim's MQTT sensor publishes it (`mqtt_sensor._publish`)."""
    return json.dumps({"t": 0.0, "seq": 1, "readings": meter.readings()}).encode()


def test_a_meters_counters_are_read_by_their_telemetry_names() -> None:
    meter = PccMeter(rating_w=100_000, import_wh=12.5, export_wh=400.25)
    read = parse_telemetry(_published(meter), "meter")
    assert (read["energy_wh"], read["import_wh"]) == (400.25, 12.5)  # the meter nature's export and import
    other = parse_telemetry(_published(meter), "pv")  # another nature's message: the generic names alone
    assert "energy_wh" not in other and "import_wh" not in other


def test_an_mqtt_meters_leaves_meter_it_as_a_seller_and_as_a_buyer() -> None:
    link = _Link()
    driver = MqttTelemetryDriver(
        DeviceSettings(name="pcc", nature="meter", protocol="mqtt"),
        link,  # type: ignore[arg-type]
        TOPIC,
    )
    meter = PccMeter(rating_w=100_000)
    leaves = []
    for k, injected_w in enumerate([0.0, 36_000.0, 36_000.0, -18_000.0, -18_000.0]):  # one reading a second
        meter.update(1.0, [injected_w])
        link.handlers[TOPIC](TOPIC, _published(meter))
        snapshot = asyncio.run(driver.read_all())
        # as the daemon seals an MQTT device's reading (`rolls: false`, L2)
        leaves.append(commitments.reading_leaf("pcc", "meter", 1_000.0 + k, snapshot.reading, rolls=False))
    window = (1_000_000, 1_004_000)
    assert metered(leaves, window, COUNTER["seller"], 2_000) == 20  # 36 kW exported for 2 s
    assert metered(leaves, window, COUNTER["buyer"], 2_000) == 10  # 18 kW imported for 2 s

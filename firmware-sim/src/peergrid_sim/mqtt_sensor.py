"""MQTT sensors: devices that publish telemetry to the feeder's broker and take commands from it.

Topics (under `peergrid/<feeder>/telemetry/<mg>/<device>`):
  <topic>          JSON telemetry every `period_s` real seconds and after every command:
                   {"mg", "device", "kind", "t" (simulated epoch s), "seq", "readings": {...}}
  <topic>/set      JSON command {"<setting>": value, ...}, e.g. {"limit_enabled": 1, "limit_pct": 50}
  <topic>/ack      JSON {"seq", "accepted": {...}, "rejected": {"<setting>": reason}} (QoS 1)
Promises: a command is applied whole or not at all; a malformed command is answered on /ack and never
raises; a broker outage only delays telemetry (paho reconnects: `RECONNECT_MIN_S` after the loss, the wait doubling
up to `RECONNECT_MAX_S`, so the devices publish again within that long of the broker's return), and is told once
at WARNING when lost (or not reached at start) and once at WARNING when back, with how long it was down (the
ledger's `BrokerOutage`, as the MGMCs and the DSO tell theirs; our own `close()` is no outage). The first telemetry is published only once
the broker acknowledged the /set subscriptions, so a client that has seen a device's telemetry can command it. Assumes paho-mqtt 2.x; its network
thread hands commands to the asyncio loop, which alone touches device state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_ledger.consensus.mqtt_transport import BrokerOutage

log = logging.getLogger("peergrid_sim.mqtt")

# paho's default back-off doubles to 120 s, so after an outage the devices came back up to two minutes after the
# broker while the lab's MGMCs, whose edge link waits 1 s then doubles up to their phase timeout (2 s at the lab's
# 6-s intervals), were back within 2 s and found no telemetry. The same bounds here: one more connect attempt
# every 2 s during an outage, to a broker that is (in the lab) on loopback.
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 2.0


def parse_command(payload: bytes, model: Any) -> tuple[dict[str, float], dict[str, str]]:
    """Pure: a command payload -> (accepted settings, rejected with reasons); accepted is empty if any fail."""
    try:
        command = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the decoder's recursion limit
        return {}, {"*": "payload is not JSON"}
    if not isinstance(command, dict) or not command:
        return {}, {"*": "command must be a non-empty JSON object"}
    accepted: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for name, value in command.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            rejected[name] = "value must be a number"
            continue
        reason = model.check(name, float(value))
        if reason is None:
            accepted[name] = float(value)
        else:
            rejected[name] = reason
    return ({} if rejected else accepted), rejected


def _silent(device: Any) -> bool:
    """Told not to respond, or rebooting: publishes nothing and ignores commands."""
    return bool(device.faults.no_response or time.monotonic() < device.faults.down_until)


class MqttSensors:
    def __init__(self, scenario: Any, devices: list[tuple[Any, Any, str | None]], clock: Any):
        self.clock = clock
        assert scenario.broker is not None
        self.feeder = scenario.feeder
        self.broker = scenario.broker
        self.devices = devices
        self.seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed: asyncio.Event | None = (
            None  # set once the broker acknowledged the /set subscriptions
        )
        self._subscribe_mid: int | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"firmware-sim-{scenario.name}")
        if self.broker.ca_file is not None:
            self.client.tls_set(
                ca_certs=str(self.broker.ca_file),
                certfile=str(self.broker.cert_file),
                keyfile=str(self.broker.key_file),
            )
        # paho annotates int seconds but only compares, doubles and sleeps them: a float bound works as given
        self.client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)  # type: ignore[arg-type]
        self.outage = BrokerOutage(log, f"the broker {self.broker.host}:{self.broker.port}")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._by_topic = {self.topic(mg or "", spec.name): (spec, device) for spec, device, mg in devices}

    def topic(self, mg: str, device: str) -> str:
        return f"peergrid/{self.feeder}/telemetry/{mg}/{device}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._subscribed = asyncio.Event()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        for topic, (spec, device) in self._by_topic.items():
            self._tasks.append(asyncio.create_task(self._publish_forever(topic, spec.period_s, device)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):  # a CONNACK that refused (the broker's auth): paho retries
            self.outage.attempt_failed(reason)
            return
        self.outage.connected()
        if self._by_topic:
            _, self._subscribe_mid = client.subscribe([(f"{topic}/set", 1) for topic in self._by_topic])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.outage.attempt_failed("the connect attempt failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:  # not our own disconnect() at close()
            self.outage.lost(reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:  # e.g. the broker's ACL: the devices still publish, but take no commands
            log.warning("broker refused the command subscriptions: %s", ", ".join(refused))
        if self._loop is not None and self._subscribed is not None:
            self._loop.call_soon_threadsafe(self._subscribed.set)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(
                self._command, message.topic.removesuffix("/set"), bytes(message.payload)
            )

    def _command(self, topic: str, payload: bytes) -> None:
        entry = self._by_topic.get(topic)
        if entry is None:
            return
        device = entry[1]
        if _silent(device):
            return
        accepted, rejected = parse_command(payload, device.model)
        for name, value in accepted.items():
            device.model.apply(name, value)
        device.refresh()
        self.seq += 1
        ack = {"seq": self.seq, "accepted": accepted, "rejected": rejected}
        self.client.publish(f"{topic}/ack", json.dumps(ack), qos=1)
        self._publish(topic, device)

    def _publish(self, topic: str, device: Any) -> None:
        self.seq += 1
        body = {
            "mg": device.mg,
            "device": device.name,
            "kind": device.kind,
            "t": self._now(),
            "seq": self.seq,
            "readings": device.reported_readings(),
        }
        self.client.publish(topic, json.dumps(body), qos=0)

    def _now(self) -> float:
        return float(self.clock.now())

    async def _publish_forever(self, topic: str, period: float, device: Any) -> None:
        if self._subscribed is not None:
            await self._subscribed.wait()
        while True:
            if not _silent(device):
                await asyncio.sleep(device.faults.delay_s)
                self._publish(topic, device)
            await asyncio.sleep(period)

"""The MGMC daemon's asyncio shell: poll every device on its own period and publish node health.

Promises: each device is polled by its own task, so one slow or dead device never delays the others;
health goes to `peergrid/<feeder>/health/<node>` as JSON once per `health_period_s`; SIGTERM/SIGINT stop
it cleanly. Assumes the broker may be absent: polling goes on and publishing resumes on reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time

import paho.mqtt.client as mqtt

from peergrid_edge.config import EdgeSettings
from peergrid_edge.drivers import Snapshot, SunSpecTcpDriver
from peergrid_edge.summary import device_summary

log = logging.getLogger("peergrid.edge")


class EdgeDaemon:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.drivers = [SunSpecTcpDriver(d) for d in settings.devices]
        self.latest: dict[str, Snapshot] = {}
        self.stopping = asyncio.Event()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.node_id)
        self.mqtt.reconnect_delay_set(min_delay=1, max_delay=30)
        self.health_topic = f"peergrid/{settings.feeder}/health/{settings.node_id}"

    async def _poll_device(self, driver: SunSpecTcpDriver) -> None:
        period = driver.settings.poll_interval_s
        next_at = time.monotonic()
        while not self.stopping.is_set():
            snapshot = await driver.read_all()
            if not snapshot.ok:
                log.warning("device %s: %s", snapshot.device, snapshot.error)
            self.latest[snapshot.device] = snapshot
            next_at += period
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (e.g. a timeout): skip missed slots rather than burst
                next_at = time.monotonic()
                delay = 0
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except TimeoutError:
                pass

    def health(self) -> dict[str, object]:
        now = time.time()
        devices = [
            device_summary(s, now=now, stale_after_s=3 * d.settings.poll_interval_s + d.settings.timeout_s)
            for d in self.drivers
            if (s := self.latest.get(d.settings.name)) is not None
        ]
        return {"node": self.settings.node_id, "mg": self.settings.mg, "at": now, "devices": devices}

    async def _publish_health(self) -> None:
        while not self.stopping.is_set():
            if self.mqtt.is_connected():
                payload = json.dumps(self.health(), separators=(",", ":"))
                self.mqtt.publish(self.health_topic, payload, qos=0)
            try:
                await asyncio.wait_for(self.stopping.wait(), self.settings.health_period_s)
            except TimeoutError:
                pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        broker = self.settings.broker
        self.mqtt.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s)
        self.mqtt.loop_start()
        log.info(
            "edge %s (mg %s) polling %d devices", self.settings.node_id, self.settings.mg, len(self.drivers)
        )
        tasks = [asyncio.create_task(self._poll_device(d)) for d in self.drivers]
        tasks.append(asyncio.create_task(self._publish_health()))
        await self.stopping.wait()
        log.info("edge %s stopping", self.settings.node_id)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in self.drivers:
            d.close()
        self.mqtt.loop_stop()
        self.mqtt.disconnect()

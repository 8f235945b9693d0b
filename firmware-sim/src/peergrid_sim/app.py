"""The firmware-sim process: build the simulation, start its listeners, tick the clock, stop on a signal.

Promises: `run(scenario, ...)` starts every device's Modbus TCP listener (Modbus/TCP Security for devices
marked `tls`), RTU line and MQTT sensor and the control API, writes the endpoints JSON atomically (the file
appears complete or not at all), prints them, and on SIGINT/SIGTERM closes everything and returns 0. Assumes a validated scenario. Never leaves a
listener behind on exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .clock import SimClock, start_at
from .control import ControlApi
from .modbus_security import TlsListener, TlsPolicy, server_context
from .mqtt_sensor import MqttSensors
from .runtime import ScenarioError, Simulation
from .scenario import Scenario
from .server import ModbusRtuLine, ModbusTcpServer


class FirmwareSim:
    def __init__(self, scenario: Scenario, speed: float | None = None, tick_s: float = 0.1):
        self.scenario = scenario
        speed = scenario.speed if speed is None else speed
        self.clock = SimClock(
            start_at(scenario.start_epoch(), speed, scenario.start_wall, time.time()), speed
        )
        self.sim = Simulation(scenario, self.clock)
        self.tick_s = tick_s
        self.tcp: list[ModbusTcpServer] = []
        self.lines: dict[str, ModbusRtuLine] = {}
        self.mqtt: MqttSensors | None = None
        self.control = ControlApi(self)
        self.endpoints: list[dict[str, Any]] = []
        self._ticker: asyncio.Task[None] | None = None

    def _wired(self) -> list[tuple[Any, Any, str | None]]:
        """(scenario spec, device, mg name) for every device and relay."""
        out: list[tuple[Any, Any, str | None]] = []
        for mg in self.scenario.microgrids:
            for spec in mg.devices:
                out.append((spec, self.sim.microgrids[mg.name].devices[spec.name], mg.name))
        for relay in self.scenario.relays:
            out.append((relay, self.sim.relays[relay.name], None))
        return out

    def _tls_listener(self) -> TlsListener | None:
        conf = self.scenario.modbus_tls
        if conf is None:
            return None
        try:
            context = server_context(conf.ca_file, conf.cert_file, conf.key_file)
        except OSError as exc:  # missing file, or not a PEM certificate/key (ssl.SSLError)
            raise ScenarioError(f"modbus_tls: cannot load the CA, certificate or key: {exc}") from None
        return TlsListener(context, TlsPolicy(dict(conf.roles), dict(conf.clients)))

    async def start(self, control_port: int = 0) -> list[dict[str, Any]]:
        host = self.scenario.host
        tls = self._tls_listener()
        shared_tls: set[int] = set()
        shared: dict[int, dict[int, Any]] = defaultdict(dict)
        rtu: dict[str, dict[int, Any]] = defaultdict(dict)
        own: list[tuple[Any, Any, str | None, ModbusTcpServer]] = []
        mqtt_devices = []
        for spec, device, mg in self._wired():
            device_tls = tls if spec.tls else None
            if spec.protocol == "modbus-tcp" and spec.port:
                shared[spec.port][spec.unit_id] = device
                if device_tls is not None:
                    shared_tls.add(spec.port)
            elif spec.protocol == "modbus-tcp":
                own.append((spec, device, mg, ModbusTcpServer(host, 0, {spec.unit_id: device}, device_tls)))
            elif spec.protocol == "modbus-rtu":
                rtu[spec.line][spec.unit_id] = device
            else:
                mqtt_devices.append((spec, device, mg))
        for port, targets in shared.items():
            server = ModbusTcpServer(host, port, targets, tls if port in shared_tls else None)
            await server.start()
            self.tcp.append(server)
        for _, _, _, server in own:
            await server.start()
            self.tcp.append(server)
        for line in self.scenario.serial_lines:
            if line.name in rtu:
                self.lines[line.name] = ModbusRtuLine(line.device, line.baudrate, rtu[line.name])
                await self.lines[line.name].start()
        if mqtt_devices:
            assert self.scenario.broker is not None
            self.mqtt = MqttSensors(self.scenario, mqtt_devices, self.clock)
            await self.mqtt.start()
        await self.control.start(host, control_port)
        self.endpoints = self._describe(own)
        self._ticker = asyncio.create_task(self._tick_forever())
        return self.endpoints

    def _describe(self, own: list[tuple[Any, Any, str | None, ModbusTcpServer]]) -> list[dict[str, Any]]:
        own_ports = {id(device): server.port for _, device, _, server in own}
        out = []
        for spec, device, mg in self._wired():
            entry: dict[str, Any] = {
                "mg": mg,
                "device": spec.name,
                "kind": device.kind,
                "protocol": "modbus-tls" if spec.tls else spec.protocol,
            }
            if spec.protocol == "modbus-tcp":
                entry.update(
                    host=self.scenario.host, port=own_ports.get(id(device), spec.port), unit_id=spec.unit_id
                )
            elif spec.protocol == "modbus-rtu":
                line = self.lines[spec.line]
                entry.update(host=None, port=line.path, unit_id=spec.unit_id, baudrate=line.baudrate)
            else:
                assert self.scenario.broker is not None and self.mqtt is not None
                entry.update(
                    host=self.scenario.broker.host,
                    port=self.scenario.broker.port,
                    unit_id=None,
                    topic=self.mqtt.topic(mg or "", spec.name),
                )
            if device.kind == "relay":
                entry.update(branch=spec.branch, tie=spec.tie, from_bus=spec.from_bus, to_bus=spec.to_bus)
            out.append(entry)
        out.append(
            {
                "mg": None,
                "device": "control",
                "kind": "control",
                "protocol": "http",
                "host": self.scenario.host,
                "port": self.control.port,
                "unit_id": None,
            }
        )
        return out

    async def _tick_forever(self) -> None:
        while True:
            self.sim.tick()
            await asyncio.sleep(self.tick_s)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self.control.close()
        if self.mqtt is not None:
            await self.mqtt.close()
        for server in self.tcp:
            await server.close()
        for line in self.lines.values():
            await line.close()


def write_endpoints(path: Path, endpoints: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(endpoints, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def format_endpoint(e: dict[str, Any]) -> str:
    where = f"{e['host']}:{e['port']}" if e["host"] else str(e["port"])
    unit = f" unit {e['unit_id']}" if e.get("unit_id") is not None else ""
    name = f"{e['mg']}/{e['device']}" if e["mg"] else e["device"]
    return f"{name:<24} {e['kind']:<8} {e['protocol']:<11} {where}{unit}"


async def run(scenario: Scenario, speed: float | None, endpoints_json: Path | None, control_port: int) -> int:
    app = FirmwareSim(scenario, speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        endpoints = await app.start(control_port)
        for e in endpoints:
            print(format_endpoint(e), flush=True)
        if endpoints_json is not None:
            write_endpoints(endpoints_json, endpoints)
        print(
            f"firmware-sim: {scenario.name} ready, {len(endpoints) - 1} devices, speed {app.clock.speed:g}x",
            flush=True,
        )
        await stop.wait()
    finally:
        await app.close()
    print("firmware-sim: stopped", file=sys.stderr, flush=True)
    return 0

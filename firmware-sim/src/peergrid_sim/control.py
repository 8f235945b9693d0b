"""The control API: a small JSON-over-HTTP/1.1 endpoint on loopback for tests, tools and the testbed.

Routes (all JSON; errors are 4xx with {"error": reason}, never a crash):
  GET  /state                          every MG's environment, devices' readings, relays' status, clock
  GET  /endpoints                      the same list as the endpoints JSON
  GET  /devices/<mg>/<device>          one device's readings, faults (`forced`: its stuck or forced points and
                                       readings) and (SunSpec) point values
  GET  /devices/<relay>                one relay's status
  GET  /faults                         every fault injected since the start, cleared or not (`faults.FaultLog`)
  POST /faults        {"device": "mg1/pv1", "fault": "delay", "seconds": 2}    see faults.py for kinds
  POST /faults/clear  {"device": "mg1/pv1", "fault": "delay"}                  omit "fault" to clear all
  POST /clock         {"speed": 60}, {"advance": 3600}, {"stop_at": T} (simulated epoch s: stand still there;
                      null: no stop) or {"resume_at": W} (wall epoch s: read the stop then and run on)
  POST /environment   {"mg": "mg1", "irradiance_w_m2": 500, "voltage_pu": 0.97}  null restores the profile
  POST /relays/<name> {"action": "open" | "close" | "lockout" | "reset"}      as a local operator would
Promises: one request per connection, bodies up to 64 KiB, nothing here can stop the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from . import faults

MAX_BODY = 65536


class HttpError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def _number(request: dict[str, Any], key: str) -> float:
    """`request[key]` as a number, else a 400 naming the key (a bool or null is no number of seconds)."""
    value = request[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise HttpError(400, f"{key} must be a number, not {value!r}")
    try:
        return float(value)
    except ValueError:
        raise HttpError(400, f"{key} must be a number, not {value!r}") from None


class ControlApi:
    def __init__(self, app: Any):
        self.app = app
        self.port = 0
        self._server: asyncio.Server | None = None
        self.log = faults.FaultLog()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, payload = 500, {"error": "internal error"}
        try:
            request_line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1").split()
            headers: dict[str, str] = {}
            while True:
                line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1").strip()
                if not line:
                    break
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(request_line) < 2 or length < 0 or length > MAX_BODY:
                raise HttpError(400, "bad request")
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            status, payload = 200, self.route(request_line[0], request_line[1], body)
        except HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except (faults.FaultError, ValueError) as exc:
            status, payload = 400, {"error": str(exc)}
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        data = json.dumps(payload, default=str).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(
            status, "Error"
        )
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def route(self, method: str, path: str, body: bytes) -> Any:
        sim = self.app.sim
        try:
            request = json.loads(body) if body else {}
        except json.JSONDecodeError:
            raise HttpError(400, "body is not JSON") from None
        if not isinstance(request, dict):
            raise HttpError(400, "body must be a JSON object")
        if method == "GET" and path == "/state":
            return sim.state()
        if method == "GET" and path == "/endpoints":
            return self.app.endpoints
        if method == "GET" and path.startswith("/devices/"):
            return self.describe(self._device(path.removeprefix("/devices/")))
        if method == "GET" and path == "/faults":
            return {"log": self.log.episodes}
        if method != "POST":
            raise HttpError(
                405 if path in ("/faults", "/faults/clear", "/clock", "/environment") else 404, "no route"
            )
        if path == "/faults":
            device = self._device(request.get("device"))
            faults.inject(device, request, time.monotonic())
            self.log.injected(request["device"], request, time.time())  # only a fault that took
            return self.describe(device)
        if path == "/faults/clear":
            device = self._device(request.get("device"))
            faults.clear(device, request.get("fault"))
            self.log.cleared(request["device"], request.get("fault"), time.time())
            return self.describe(device)
        if path == "/clock":
            if "speed" in request:
                sim.clock.set_speed(_number(request, "speed"))
            if "advance" in request:
                sim.clock.advance(_number(request, "advance"))
            if "stop_at" in request:  # the lab's start: stand still there unless resumed in time
                sim.clock.stop_at(None if request["stop_at"] is None else _number(request, "stop_at"))
            if "resume_at" in request:  # wall epoch s: when the clock reads its stop and runs on
                wall = _number(request, "resume_at")
                if not abs(wall - time.time()) <= 86400:
                    raise HttpError(400, f"resume_at must be a wall time within a day of now, not {wall!r}")
                sim.clock.resume_at(time.monotonic() + (wall - time.time()))
            sim.tick()
            return {"t": sim.t, "speed": sim.clock.speed, "stop": sim.clock.stop}
        if path == "/environment":
            mg = sim.microgrids.get(request.get("mg"))
            if mg is None:
                raise HttpError(404, f"no microgrid {request.get('mg')!r}")
            for key in ("irradiance_w_m2", "ambient_c", "load_factor", "voltage_pu"):
                if key in request:
                    if request[key] is None:
                        mg.env_override.pop(key, None)
                    else:
                        mg.env_override[key] = float(request[key])
            sim.tick()
            return mg.environment(sim.t).__dict__
        if path.startswith("/relays/"):
            relay = sim.relays.get(path.removeprefix("/relays/"))
            if relay is None:
                raise HttpError(404, "no such relay")
            error = relay.command(str(request.get("action")))
            if error is not None:
                raise HttpError(400, f"relay refused {request.get('action')!r} (Modbus exception {error})")
            return relay.status()
        raise HttpError(404, "no route")

    def _device(self, path: Any) -> Any:
        if not isinstance(path, str):
            raise HttpError(400, "'device' must be 'mg/device' or a relay name")
        try:
            return self.app.sim.device(path)
        except KeyError as exc:
            raise HttpError(404, str(exc.args[0])) from None

    @staticmethod
    def describe(device: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": device.name,
            "kind": device.kind,
            "readings": device.readings(),
            "faults": device.faults.describe(),
        }
        if device.kind != "relay":
            forced = sorted({*device.image.overrides, *device.forced})  # `stuck` and `value` faults
            if forced:
                out["faults"] = {**out["faults"], "forced": forced}
            device.sync()
            out["points"] = {e.key: device.image.value(e.key) for e in device.image.entries if e.implemented}
        return out

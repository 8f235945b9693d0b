"""firmware-sim on its own event loop in a background thread, for tests and tools with synchronous clients.

Promises: `BackgroundSim(scenario).start()` returns once every listener is up (or raises what stopped it),
with `endpoints` as `firmware-sim run` reports them; `call(fn)` runs `fn` on the simulator's loop, the only
place device state may be touched; `stop()` (or leaving the `with` block) closes every listener. Assumes
the scenario binds loopback ports (port 0 = a free one).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from peergrid_sim.app import FirmwareSim
from peergrid_sim.faults import clear, inject
from peergrid_sim.scenario import Scenario


class BackgroundSim:
    def __init__(self, scenario: Scenario, speed: float | None = None, tick_s: float = 0.1) -> None:
        self.app = FirmwareSim(scenario, speed, tick_s=tick_s)
        self.loop = asyncio.new_event_loop()
        self.endpoints: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="firmware-sim", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.endpoints = self.loop.run_until_complete(self.app.start())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.app.close())
        self.loop.close()

    def start(self, timeout: float = 10.0) -> BackgroundSim:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"firmware-sim did not start within {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the simulator's loop and return its result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    def endpoint(self, device: str, mg: str | None = None) -> dict[str, Any]:
        return next(e for e in self.endpoints if e["device"] == device and (mg is None or e["mg"] == mg))

    def device(self, mg: str, name: str) -> Any:
        return self.app.sim.device(f"{mg}/{name}")

    def fault(self, mg: str, name: str, **request: Any) -> None:
        self.call(lambda: inject(self.device(mg, name), request, time.monotonic()))

    def clear(self, mg: str, name: str, kind: str | None = None) -> None:
        self.call(lambda: clear(self.device(mg, name), kind))

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def __enter__(self) -> BackgroundSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

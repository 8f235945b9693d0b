"""The closed loop's DSO node inside `peergrid-dso serve`: what the config's `loop:` section starts.

Promises: `EmbeddedLoop(settings).start()` runs `interval_node.DsoNode` - the DSO-chain replica (an
authority), the MGMC-chain replica (a non-voting follower) when configured, enrolment and the per-interval
security check, adjustments and switching through the Modbus relays, writing `record_file` exactly as the
standalone node does - on a thread of its own with its own event loop, and returns the console's
`DsoServices` built on that node (one chain, one executor, one topology). `stop()` ends it and closes its
stores. `call(fn)` runs `fn` on the node's loop (for reads of the live ledger state, which only that loop
mutates). A start that fails (bad key file, a store of another chain) raises `ConfigError` in the caller.

Why a thread of its own rather than the web server's event loop: the consensus timers (block period, round
timeouts) and the MQTT inbox must keep time while the web server is busy (a power flow for a page, a slow
client), and the node then runs exactly as it does standalone (`asyncio.run`), so the two modes cannot drift.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from peergrid_ledger.settings import ConfigError

log = logging.getLogger("peergrid_dso.live")
T = TypeVar("T")


def preflight(settings: Any) -> None:
    """Fail fast, before the web server starts, on what the loop section names but cannot be read: the DSO
    key and the chains' geneses (`ConfigError` with one line; `peergrid-dso serve` exits 2)."""
    from peergrid_ledger import keys
    from peergrid_ledger.consensus.node_cli import load_genesis

    loop = settings.loop
    if loop is None:
        return
    try:
        keys.read_keyfile(loop.key_file)
    except keys.KeyFileError as exc:
        raise ConfigError(f"loop.key_file: {exc}") from None
    for chain in [loop.dso_chain, loop.mgmc_chain]:
        if chain is not None:
            load_genesis(chain.genesis)
    for name in ("relays_file", "ties"):
        path = getattr(loop, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"loop.{name}: {path}: no such file")


class EmbeddedLoop:
    def __init__(self, settings: Any) -> None:  # peergrid_dso.config.DsoSettings with a `loop` section
        from peergrid_dso.interval_node import IntervalNodeSettings

        assert settings.loop is not None
        self.node_settings = IntervalNodeSettings.model_validate(
            settings.loop.model_dump()
            | {
                "feeder": settings.feeder,
                "broker_host": settings.broker.host,
                "broker_port": settings.broker.port,
            }
        )
        self.client_id = f"{settings.node_id}-loop"
        self.lock = threading.RLock()  # every writer to the relays holds it: the loop, operators, the API
        self.node: Any = None
        self.services: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dso-loop", daemon=True)

    def start(self, timeout: float = 60.0) -> Any:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the DSO node did not start within {timeout:.0f} s")
        if self._error is not None:
            if isinstance(self._error, ConfigError):
                raise self._error
            raise ConfigError(
                f"loop: the DSO node could not start: {type(self._error).__name__}: {self._error}"
            )
        return self.services

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from peergrid_dso.interval_node import DsoNode
        from peergrid_dso.services.container import live_services

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.node = DsoNode.assemble(self.node_settings, lock=self.lock, client_id=self.client_id)
            self.services = live_services(self.node)
        except BaseException as exc:  # reported to start(); the thread ends
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self.node.run(self._stop)
        except Exception:
            log.exception("the DSO node stopped")

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the node's event loop (where the ledger state changes) and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def replica(self, role: str) -> Any:
        """The node's replica of the `dso` or `mgmc` chain, or None when it does not follow that chain."""
        if self.node is None:
            return None
        if role == "dso":
            return self.node.replica
        others = [r for r in self.node.node.replicas.values() if r is not self.node.replica]
        return others[0] if others else None

    @property
    def listeners(self) -> list[Callable[[dict[str, Any]], None]]:
        listeners: list[Callable[[dict[str, Any]], None]] = self.node.loop.listeners
        return listeners

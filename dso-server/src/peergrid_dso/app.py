"""The DSO server's FastAPI app: thin routes over services built in `lifespan`.

Promises: `create_app(settings)` builds nothing at import time; heavy objects (MQTT listener, the network
model, the DSO services, and with a `loop:` section the closed loop's DSO node with its ledger replicas and
relays) are made in `lifespan`, stored on `app.state` and reached through `Depends`, and stopped with it (the
console database closed last, after the node's records reader and the node); a
`ConfigError` raised there as it starts is kept as `app.state.start_refused` (`StartRefusal`: `serve`'s one line).
`GET /api/health` says `ok`, or `degraded` when the health listener does not hear the feeder (its section
`health_listener`, `health_listener.listener_health`: dead, disconnected, its subscription not granted, or
silent past the config's `health_listener.silent_after_s`; with its counts of reports taken, malformed and
dropped) or, with a loop, once its node died, while its start alarm or its relay alarm stands, or while its
ledger transport is not ok (its `ledger`: the network thread ended, or off the broker past a bound); and with a
loop its section: the node `running`, the `interval` it works on, its `start_alarm` (`EmbeddedLoop.start_alarm`:
the relays it could not adopt at start, until an operator adopts them; null when it adopted them or had none to
read), its `relay_alarm` (`EmbeddedLoop.relay_alarm`: what its read of every relay after the last interval
found - each relay that reports another position than the DSO holds, and what it reports, or that cannot be
read; null when every relay agrees), its `ledger` (`EmbeddedLoop.ledger`, `live_reconnect.ledger_health`:
`state`, `ok`, `alive`, `connected`, `down_s`, `down_after_s`, `disconnects`, and a `reason` when not ok), and
what is final of its start's postings (`start_postings.readiness`):
`enrolled` (the MGs enrolled on the DSO chain), `pricing` and `tariffs_through` (the last interval through
which every MG's cover prices are final on the MGMC chain, or null), and where the node posts connection
capacities `capacities` ({mg: the first interval from which its configured capacity stands on the MGMC chain,
or null}) - what the lab waits for before t0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.types import Message, Receive, Scope, Send

from peergrid_dso.config import DsoSettings
from peergrid_dso.services.health import MqttHealthListener, NodeBoard
from peergrid_ledger.settings import ConfigError


def get_board(request: Request) -> NodeBoard:
    board: NodeBoard = request.app.state.board
    return board


class StartRefusal:
    """The app as `peergrid-dso serve` hands it to uvicorn: where its lifespan's start raised a `ConfigError`
    (`refused`: a bad config or data the node finds only as it starts - a chain store another process holds,
    a capacity the chain cannot carry, the loop's keys the DSO chain revoked), uvicorn is told the start failed
    without the traceback Starlette writes into the ASGI `lifespan.startup.failed` message (which uvicorn logs),
    and `serve` says it in one line, exit 2. Anything else raised there keeps its traceback (a fault of ours)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def refused(self) -> ConfigError | None:
        refused: ConfigError | None = getattr(self.app.state, "start_refused", None)
        return refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def told(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.refused is not None:
                message = {"type": message["type"], "message": ""}
            await send(message)

        await self.app(scope, receive, told if scope["type"] == "lifespan" else send)


def create_app(settings: DsoSettings, *, listen: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.board = NodeBoard(settings.feeder)
        listener = app.state.health_listener = None
        if listen:
            listener = app.state.health_listener = MqttHealthListener(
                app.state.board,
                settings.broker.host,
                settings.broker.port,
                f"{settings.node_id}-health",
                silent_after_s=settings.health_listener.silent_after_s,
                reconnect_max_s=settings.broker.reconnect_max_s,  # None: 2 s (live_reconnect)
            )
            if (tls := settings.broker.tls()) is not None:  # the pilot's broker: TLS, the DSO's certificate
                tls.apply(listener.client)
            listener.start()
        loop = None
        starting = True
        try:
            if settings.loop is not None:  # the DSO of the closed loop: the console shows and operates it
                from peergrid_dso.live import EmbeddedLoop

                loop = EmbeddedLoop(settings)
                app.state.dso = await asyncio.to_thread(loop.start)
            else:  # lab: an in-process DSO chain, relays in memory, a simulated market
                from peergrid_dso.services.container import build_dso_services

                app.state.dso = build_dso_services(dict(settings.console.mg_buses))
            app.state.loop = loop
            from peergrid_dso.console.state import build_console  # the operator console (issue 9)

            app.state.console = build_console(settings.console, app.state.dso, loop)
            app.state.console.start_market()
            starting = False
            yield
        except ConfigError as err:
            if starting:  # for `serve` to say in one line (`StartRefusal`), not as uvicorn's traceback
                app.state.start_refused = err
            raise
        finally:
            console = getattr(app.state, "console", None)
            try:
                if (
                    console is not None
                ):  # its reader of the DSO chain first: the node's stop closes that store
                    await asyncio.to_thread(console.stop_node_records)
                if loop is not None:
                    await asyncio.to_thread(loop.stop)
                if listener is not None:
                    listener.stop()
            finally:
                # the console database (sessions, security log, audit trail; one connection, build_console's)
                # last: the node's records reader and the node itself may write its audit trail until they stop
                if console is not None and console.sessions.db is not None:
                    console.sessions.db.close()

    app = FastAPI(title="peergrid DSO server", version="0.1.0", lifespan=lifespan)
    from peergrid_dso.routes.console import install_console

    install_console(app)
    from peergrid_dso.routes.dso import install_dso_api

    install_dso_api(app)
    from peergrid_dso.request_errors import install_request_errors

    install_request_errors(app)  # after install_console: wraps its 422 handler; NaN/Infinity bodies -> 422

    @app.get("/api/health")
    def health(request: Request) -> dict[str, Any]:
        s: DsoSettings = request.app.state.settings
        doc: dict[str, Any] = {"status": "ok", "node": s.node_id, "feeder": s.feeder}
        listener = getattr(request.app.state, "health_listener", None)
        if listener is not None:  # a listener that hears nothing leaves every node view stale
            doc["health_listener"] = listener.health()
            if not doc["health_listener"]["ok"]:
                doc["status"] = "degraded"
        loop = getattr(request.app.state, "loop", None)
        if loop is not None:  # the closed loop's DSO node: a dead one is not a healthy DSO
            doc["loop"] = {"running": loop.running, "interval": loop.node.loop.current}
            doc["loop"]["start_alarm"] = loop.start_alarm  # every plan is refused while it stands
            doc["loop"]["relay_alarm"] = getattr(loop, "relay_alarm", None)  # relays off the DSO's open set
            if not loop.running or doc["loop"]["start_alarm"] is not None or doc["loop"]["relay_alarm"]:
                doc["status"] = "degraded"
            # a node whose transport died or lost the broker runs on, deaf: its chain gets nothing from it
            ledger = getattr(loop, "ledger", lambda: None)()  # (a stand-in loop of a test may have none)
            if ledger is not None:
                doc["loop"]["ledger"] = ledger
                if not ledger["ok"]:
                    doc["status"] = "degraded"
            # what is final of its start's postings: the MGs enrolled (DSO chain), the cover priced and the
            # connection capacities standing (MGMC chain); left out while the node cannot say (not running, or too busy to answer in time: half a
            # second, well within a poller's patience, so a node busy at its start still shows it runs)
            doc["loop"] |= loop.readiness(timeout=0.5) or {}
        return doc

    @app.get("/api/nodes")
    def nodes(board: NodeBoard = Depends(get_board)) -> dict[str, Any]:
        return board.snapshot()

    @app.get("/", response_class=HTMLResponse)
    def console() -> str:
        return resources.files("peergrid_dso.console").joinpath("index.html").read_text(encoding="utf-8")

    return app

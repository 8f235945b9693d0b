"""`/api/health` never waits on a busy DSO node: with the node's event loop held by a callback that does not
return (a stand-in for any blocking step on that loop), the route still answers, says the loop `running` and
its `interval` (read off the node's loop), and leaves out only what it would have read there (`enrolled`,
`pricing`, `tariffs_through`); once the loop is free the same route carries them again. The real
`EmbeddedLoop.readiness` over a real event loop on its own thread, as `peergrid-dso serve` runs it; the hold
ends only after the answer came, so the test cannot pass by the loop turning in time.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from .test_health_readiness import FIRST, MGS, Node, embedded
from .test_health_readiness import running_loop as running_loop  # a fixture: the node's loop


def test_health_answers_while_the_nodes_loop_is_held(
    tmp_path: Path, running_loop: asyncio.AbstractEventLoop
) -> None:
    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    node = Node()
    node.enrol("mg1")
    for mg in MGS:
        node.price(mg, FIRST, 1)
    live = embedded(node, running_loop)
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(tmp_path / "users.json"), "lab_market": False, "lab_drift": False}}
    )
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # the node's loop runs nothing else until released
        held.set()
        release.wait(60)

    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        client.app.state.loop = live  # type: ignore[attr-defined]
        free = client.get("/api/health").json()
        assert free["loop"] == {
            "running": True, "interval": None, "start_alarm": None, "relay_alarm": None,
            "enrolled": ["mg1"], "pricing": True,
            "tariffs_through": FIRST,
        }  # fmt: skip
        running_loop.call_soon_threadsafe(hold)
        assert held.wait(10)
        try:
            busy = client.get("/api/health").json()
        finally:
            release.set()
        assert busy["status"] == "ok" and busy["loop"] == {
            "running": True,
            "interval": None,
            "start_alarm": None,
            "relay_alarm": None,
        }
        again = client.get("/api/health").json()
        assert again["loop"] == free["loop"]
        client.app.state.loop = None  # type: ignore[attr-defined]

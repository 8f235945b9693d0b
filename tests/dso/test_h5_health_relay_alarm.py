"""H5 (session 18): `/api/health` is degraded while the DSO node's read of every relay after an interval finds
a relay off the DSO's open set or unreadable, and its loop section names the relay and what it reports
(`relay_alarm`, `EmbeddedLoop.relay_alarm`, `services.switching_watch`); ok again once every relay agrees."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_dso.live import EmbeddedLoop
from peergrid_dso.services.switching_watch import RelayWatch

from .test_h5_relay_watch import Chain, Field
from .test_switching import BASE


def test_health_is_degraded_while_a_relay_reads_off_the_dsos_open_set(tmp_path: Path) -> None:
    from peergrid_dso.drivers.relay_memory import InMemoryRelays

    relays = Field(InMemoryRelays({b: b not in BASE for b in range(1, 38)}))
    topology, chain = SimpleNamespace(open_set=BASE), Chain()
    watch = RelayWatch(relays, threading.RLock(), chain.submit)
    loop = object.__new__(EmbeddedLoop)  # the embedded node's loop and its watch (not started here)
    loop.node = SimpleNamespace(loop=SimpleNamespace(current=12, watch=watch))
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(tmp_path / "users.json"), "lab_market": False, "lab_drift": False}}
    )
    # the route reads these of the embedded loop; relay_alarm is the real property's reading, each request
    fake = SimpleNamespace(running=True, node=loop.node, start_alarm=None, readiness=lambda timeout: None)
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        client.app.state.loop = fake  # type: ignore[attr-defined]

        def health() -> dict[str, object]:
            fake.relay_alarm = loop.relay_alarm
            doc: dict[str, object] = client.get("/api/health").json()
            return doc

        asyncio.run(watch.check(topology))
        assert health()["status"] == "ok" and health()["loop"]["relay_alarm"] is None  # type: ignore[index]
        relays.relays.closed[37] = True  # a tie closed by hand between plans
        asyncio.run(watch.check(topology))
        doc = health()
        assert doc["status"] == "degraded", doc
        assert "branch 37 reports closed, the DSO holds it open" in doc["loop"]["relay_alarm"]  # type: ignore[index]
        assert doc["loop"]["start_alarm"] is None  # type: ignore[index]
        relays.relays.closed[37] = False
        asyncio.run(watch.check(topology))
        assert health()["status"] == "ok"
        client.app.state.loop = None  # type: ignore[attr-defined]

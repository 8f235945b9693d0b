"""H5 (session 18): the DSO config's `broker.reconnect_max_s` (as the edge's) reaches both of the DSO's MQTT
connections: the health listener `serve` starts and the loop's node's ledger transport. Unset, each keeps its
own bound (the listener 10 s, the edge's default; the ledger transport 2 s, as before); below 1 s, above
10 min, NaN or infinite is refused naming the field."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from peergrid_dso.app import create_app
from peergrid_dso.config import BrokerSettings, DsoSettings
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.services.health import MqttHealthListener

from .test_r27_relay_adopt import lab as lab  # a fixture: firmware-sim relays and their endpoints file
from .test_r27_relay_adopt import lab_config


def delays(client: Any) -> tuple[float, float]:
    return client._reconnect_min_delay, client._reconnect_max_delay


def test_the_bound_is_unset_by_default_and_bad_bounds_are_refused() -> None:
    assert BrokerSettings().reconnect_max_s is None  # a deployed config without the key: each keeps its own
    assert BrokerSettings.model_validate({"reconnect_max_s": 2}).reconnect_max_s == 2.0
    for bad in (0.5, 0, -3, 601, math.nan, math.inf, "soon"):
        with pytest.raises(ValidationError, match="reconnect_max_s"):
            BrokerSettings.model_validate({"reconnect_max_s": bad})
        with pytest.raises(ValidationError, match="broker_reconnect_max_s"):
            IntervalNodeSettings.model_validate({"broker_reconnect_max_s": bad})


def test_serve_hands_the_bound_to_its_health_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peergrid_dso.app

    built: list[MqttHealthListener] = []

    class Listener(MqttHealthListener):  # the real one, built as `serve` builds it, never connected here
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

        def start(self) -> None:
            pass

        def stop(self, timeout: float = 5.0) -> None:
            pass

    monkeypatch.setattr(peergrid_dso.app, "MqttHealthListener", Listener)
    console = {"users_file": str(tmp_path / "users.json"), "lab_market": False, "lab_drift": False}
    for broker, bound in (({}, 2.0), ({"reconnect_max_s": 3.5}, 3.5)):  # unset: the ledger transport's (C3)
        settings = DsoSettings.model_validate({"broker": broker, "console": console})
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8080"):
            assert delays(built[-1].client) == (0.1, bound)


def test_the_loops_node_hands_the_bound_to_its_ledger_transport(lab, tmp_path: Path) -> None:
    from peergrid_dso.dso_node import DsoNode
    from peergrid_dso.live import EmbeddedLoop

    _, relays_file = lab
    config = lab_config(tmp_path, relays_file)
    for extra, bound in (({}, 2.0), ({"broker_reconnect_max_s": 4.5}, 4.5)):
        cfg = config(tmp_path / f"node-{bound}") | extra
        Path(cfg["dso_chain"]["data_dir"]).parent.mkdir(exist_ok=True)

        async def build(cfg: dict[str, Any] = cfg) -> tuple[float, float]:
            node = DsoNode.assemble(IntervalNodeSettings.model_validate(cfg))
            try:
                return delays(node.transport.client)
            finally:
                for store in node.stores:
                    store.close()
                getattr(node.switching.executor.driver, "close", lambda: None)()

        assert asyncio.run(build()) == (0.1, bound)
    from peergrid_dso.loop_settings import LoopSettings

    loop = {k: v for k, v in config(tmp_path / "x").items() if k in LoopSettings.model_fields}
    server = DsoSettings.model_validate({"broker": {"reconnect_max_s": 6}, "loop": loop})
    assert EmbeddedLoop(server).node_settings.broker_reconnect_max_s == 6.0  # the server's config -> the node

"""D1 (session 20): `/api/health` says whether the DSO node's ledger transport still reaches the broker.

A DSO whose ledger transport's network thread died (paho's, started by `MqttTransport.start`), or whose broker
is gone, still answered `ok`: the node ran on, deaf, and its chain got nothing from it. Now the loop section's
`ledger` (`live_reconnect.LedgerLink`, `ledger_health`) says `alive`, `connected`, how long it has been down,
and the status is `degraded` with a `reason` once the thread ended or the transport has been off the broker
longer than the bound (the config's `health_listener.silent_after_s`, else `LEDGER_DOWN_AFTER_S`).
The pure judgement and the link's bookkeeping on an injected clock; then a live DSO (`peergrid-dso serve`'s
app with a `loop:` section) on a real Mosquitto that is stopped and started again, and whose paho loop is
stopped under it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from peergrid_dso.live_reconnect import LEDGER_DOWN_AFTER_S, LedgerLink, ledger_health

from .test_live_tls import settings_doc


class Transport:
    """Stands for `MqttTransport`: its client's `on_disconnect` clears `connected`; `start` runs a thread that
    lives until `end` is set, kept where paho keeps it."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.stats: Counter[str] = Counter()
        self.end = threading.Event()
        self.client = SimpleNamespace(on_disconnect=self._on_disconnect, _thread=None)

    def _on_disconnect(self, *_args: object) -> None:
        self.stats["disconnects"] += 1
        self.connected.clear()

    def start(self) -> None:
        self.client._thread = threading.Thread(target=self.end.wait, args=(30,), daemon=True)
        self.client._thread.start()


def test_the_judgement_names_each_state_and_a_reason_only_when_not_ok() -> None:
    def judge(**changes: Any) -> dict[str, Any]:
        found = dict(started=True, alive=True, connected=True, down_s=None, down_after_s=10.0, disconnects=0)
        return ledger_health(**(found | changes))  # type: ignore[arg-type]

    assert judge() == {
        "state": "connected", "ok": True, "alive": True, "connected": True, "down_s": None,
        "down_after_s": 10.0, "disconnects": 0, "subscribe_refused": 0, "reason": None,
    }  # fmt: skip
    assert judge(started=False, alive=False, connected=False)["state"] == "starting"
    assert judge(connected=False, down_s=10.0)["state"] == "connecting"  # within the bound: ok
    assert judge(connected=False, down_s=10.0)["ok"] is True
    past = judge(connected=False, down_s=12.34, disconnects=3)
    assert (past["state"], past["ok"], past["down_s"]) == ("disconnected", False, 12.34)
    assert past["disconnects"] == 3
    assert past["reason"] == "the ledger transport has been off the broker for 12.3 s (more than 10 s)"
    gone = judge(connected=False, down_s=12.34, subscribe_refused=2)  # refused once, now off the broker
    assert gone["reason"] == "the ledger transport has been off the broker for 12.3 s (more than 10 s)"
    deaf = judge(
        connected=False, down_s=12.34, subscribe_refused=2, refused_now=True
    )  # on it, topics refused
    assert (deaf["state"], deaf["ok"], deaf["subscribe_refused"]) == ("disconnected", False, 2)
    assert deaf["reason"] == (
        "the ledger transport has not heard the chain for 12.3 s (more than 10 s): the broker refused its"
        " subscriptions 2 time(s) (its log names the topics)"
    )
    dead = judge(alive=False)  # `connected` stays set when the thread dies: paho calls no on_disconnect
    assert (dead["state"], dead["ok"]) == ("dead", False)
    assert "network thread ended" in dead["reason"]


def test_the_bound_is_the_loops_own_setting_not_the_listeners_silence_bound(tmp_path: Path) -> None:
    # review34 R34-2: the listener's `silent_after_s` is how long the feeder may be silent (minutes on a pilot
    # reporting once an interval), so the ledger transport's bound is the loop's `ledger_down_after_s`
    from peergrid_dso.loop_settings import LoopSettings

    doc = {
        "key_file": str(tmp_path / "k"),
        "dso_chain": {"genesis": "g", "data_dir": str(tmp_path)},
        "mgs": {},
    }
    assert LoopSettings.model_validate(doc).ledger_down_after_s == LEDGER_DOWN_AFTER_S == 10.0
    assert LoopSettings.model_validate(doc | {"ledger_down_after_s": 45}).ledger_down_after_s == 45.0
    for bad in (0, -1, 3601):
        with pytest.raises(ValueError, match="ledger_down_after_s"):
            LoopSettings.model_validate(doc | {"ledger_down_after_s": bad})


def test_the_link_counts_down_time_from_its_start_and_from_each_lost_connection() -> None:
    now = [100.0]
    transport = Transport()
    link = LedgerLink(transport, clock=lambda: now[0])
    try:
        assert link.health(10.0)["state"] == "starting"
        link.start()
        now[0] = 105.0  # no connection yet: down since the start, within the bound
        assert (link.health(10.0)["state"], link.health(10.0)["down_s"]) == ("connecting", 5.0)
        now[0] = 111.0
        assert link.health(10.0)["state"] == "disconnected"
        transport.connected.set()  # SUBACK granted
        assert link.health(10.0)["state"] == "connected"
        now[0] = 500.0
        transport.client.on_disconnect(None, None, None, None, None)  # lost: counted from now, not the start
        assert not transport.connected.is_set() and transport.stats["disconnects"] == 1
        now[0] = 509.0
        assert (link.health(10.0)["state"], link.health(10.0)["down_s"]) == ("connecting", 9.0)
        # a connection whose subscriptions were refused never set `connected`; its loss does not restart the
        # count: the node has not heard the chain since 500
        now[0] = 520.0
        transport.client.on_disconnect(None, None, None, None, None)
        assert link.health(10.0)["down_s"] == 20.0 and link.health(10.0)["disconnects"] == 2
        transport.connected.set()
        transport.end.set()
        transport.client._thread.join(10)
        transport.client._thread = None  # as paho leaves it when its thread ends
        assert link.health(10.0)["state"] == "dead"
    finally:
        transport.end.set()


def test_a_connection_lost_while_health_reads_is_down_since_the_loss_not_since_the_start() -> None:
    # R34: paho's thread may run between health's reads; read `connected` after `_down_since`, a loss an hour
    # after the start was judged 'off the broker for 3600 s' (degraded) for that one answer
    now = [100.0]
    transport = Transport()
    link = LedgerLink(transport, clock=lambda: now[0])
    try:
        link.start()
        transport.connected.set()
        now[0] = 3700.0
        is_set = transport.connected.is_set

        def lost_meanwhile() -> bool:  # paho's on_disconnect runs as health reads `connected`
            transport.connected.is_set = is_set  # type: ignore[method-assign]
            transport.client.on_disconnect(None, None, None, None, None)
            return is_set()

        transport.connected.is_set = lost_meanwhile  # type: ignore[method-assign]
        doc = link.health(10.0)
        assert (doc["state"], doc["ok"], doc["down_s"]) == ("connecting", True, 0.0), doc
    finally:
        transport.end.set()


def wait_for(read: Callable[[], dict[str, Any]], until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        doc = read()
        if until(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def test_a_live_dso_is_degraded_while_its_broker_is_gone_and_when_its_transport_thread_ended(
    tmp_path: Path, mosquitto: Any
) -> None:
    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    doc = settings_doc(tmp_path, mosquitto, {})
    doc["console"]["users_file"] = str(tmp_path / "users.json")
    doc["loop"]["ledger_down_after_s"] = 1.0
    settings = DsoSettings.model_validate(doc)
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:

        def health() -> dict[str, Any]:
            found: dict[str, Any] = client.get("/api/health").json()
            return found

        def ledger(doc: dict[str, Any]) -> dict[str, Any]:
            found: dict[str, Any] = doc["loop"]["ledger"]
            return found

        up = wait_for(health, lambda d: ledger(d)["connected"])
        assert up["status"] == "ok" and ledger(up)["state"] == "connected", up
        assert ledger(up)["down_after_s"] == 1.0 and ledger(up)["reason"] is None

        mosquitto.stop()
        down = wait_for(health, lambda d: d["status"] == "degraded")
        assert down["status"] == "degraded", down
        assert ledger(down)["state"] == "disconnected" and not ledger(down)["connected"], down
        assert ledger(down)["reason"].startswith("the ledger transport has been off the broker for "), down
        assert ledger(down)["disconnects"] >= 1 and down["loop"]["running"] is True

        mosquitto.restart()  # same port: the transport reconnects within its back-off bound (2 s)
        back = wait_for(health, lambda d: d["status"] == "ok")
        assert back["status"] == "ok" and ledger(back)["state"] == "connected", back

        transport = client.app.state.loop.node.transport  # type: ignore[attr-defined]
        transport.client.loop_stop()  # paho's network thread ends; `connected` stays as it was
        assert transport.connected.is_set()
        dead = health()
        assert dead["status"] == "degraded" and ledger(dead)["state"] == "dead", dead
        assert not ledger(dead)["alive"] and "network thread ended" in ledger(dead)["reason"]

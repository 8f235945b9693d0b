"""The lab's readiness wait reads the DSO's health listener too (H4, session 17): `/api/health` says `degraded`
while the server's health listener does not hear the broker (dso `health_listener`), so a DSO whose loop runs
but whose listener is cut off is not ready, and the lab's one line says that, not that the node is not running."""

from __future__ import annotations

from typing import Any

from peergrid_sim.dso_ready import is_ready, not_ready


def _health(status: str, running: bool, listener: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"status": status, "node": "dso", "loop": {"running": running, "interval": None}}
    if listener is not None:
        doc["health_listener"] = listener
    return doc


def test_a_running_node_whose_listener_is_deaf_is_not_ready_and_the_line_says_why() -> None:
    listening = {"state": "listening", "ok": True}
    assert is_ready(_health("ok", True, listening)) and is_ready(
        _health("ok", True, None)
    )  # (an older server)
    cut = _health("degraded", True, {"state": "disconnected", "ok": False})
    assert not is_ready(cut)
    assert not_ready(cut) == "its health listener hearing the broker in /api/health (it is disconnected)"
    for doc in (None, {"status": "ok"}, _health("degraded", False, listening), _health("ok", False, None)):
        assert not is_ready(doc) and not_ready(doc) == "its node running in /api/health"
    odd = _health("starting", True, listening)  # degraded for a reason this lab does not know
    assert not is_ready(odd) and not_ready(odd) == "status ok in /api/health (it says 'starting')"


def test_a_running_node_whose_ledger_transport_is_down_is_not_ready_and_the_line_gives_its_reason() -> None:
    """D1 (session 20): `loop.ledger` says why a running node cannot hear the chain; the lab's line repeats it."""
    doc = _health("degraded", True, {"state": "listening", "ok": True})
    reason = "the ledger transport's network thread ended: the node no longer hears or sends the chain"
    doc["loop"]["ledger"] = {"state": "dead", "ok": False, "reason": reason}
    assert not is_ready(doc)
    assert not_ready(doc) == f"its node's ledger transport on the broker in /api/health ({reason})"
    doc["loop"]["ledger"] = {"state": "connected", "ok": True, "reason": None}
    assert not_ready(doc) == "status ok in /api/health (it says 'degraded')"  # degraded for another reason

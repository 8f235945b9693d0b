"""The health listener is back from a broker outage as promptly as the node's ledger transport (C3): the console
says the broker is back only once both DSO connections are, and the listener's back-off, the edge's 1 s doubling
to 10 s, kept 'back' up to 10 s after the broker (a 15-s outage: the listener back 9.9 s after the broker, the
ledger transport 0.06 s). A real Mosquitto killed (SIGKILL) and started again on the same loopback port, once the
listener's back-off has grown to its bound: both connections waited the same back-off before each refused
attempt (0.1 s doubling to the ledger's 2 s; before, 1 s doubling to 10 s), and each is back at its first
attempt on the returned broker. Order and sizes of paho's waits, not a wall clock: nothing here is timed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers_reconnect import Reconnects, back_on_first_try, doubling
from helpers_wait import wait_until

from peergrid_dso.live_reconnect import LEDGER_RECONNECT_MAX_S, LEDGER_RECONNECT_MIN_S, ledger_reconnect
from peergrid_dso.services.health import MqttHealthListener, NodeBoard
from peergrid_ledger.consensus.mqtt_transport import MqttTransport
from peergrid_sim.broker import MosquittoBroker

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")

# refused attempts until the waits reach the ledger's bound: 0.1, 0.2, 0.4, 0.8, 1.6, then 2.0 (5.1 s down)
GROWN = 6


def test_a_killed_broker_back_on_its_port_is_heard_by_both_connections_within_the_ledgers_bound(
    tmp_path: Path,
) -> None:
    with MosquittoBroker(tmp_path / "broker") as broker:
        listener = MqttHealthListener(
            NodeBoard("f1"), broker.host, broker.port, "dso-c3"
        )  # the default bound
        ledger = MqttTransport(broker.host, broker.port, "f1", b"\x01" * 32, ["dso"], lambda *_: None)
        ledger_reconnect(ledger, None)
        heard, chained = Reconnects(listener.client), Reconnects(ledger.client)
        listener.start()
        ledger.start()
        try:
            assert wait_until(lambda: listener.health()["state"] == "listening" and ledger.connected.is_set())
            assert broker.process is not None
            broker.process.kill()
            broker.process.wait()
            assert wait_until(lambda: min(len(heard.waits()), len(chained.waits())) >= GROWN), (
                heard.waits(),
                chained.waits(),
            )
            assert listener.outage.failed >= GROWN  # the listener's own count of the outage's attempts
            returned = heard.mark(), chained.mark()
            broker.restart()  # on the same port
            assert wait_until(lambda: listener.health()["state"] == "listening")
            assert wait_until(ledger.connected.is_set)
            # the same back-off for both: the ledger's first wait doubling to its bound (not the edge's 1 s to 10 s)
            schedule = doubling(LEDGER_RECONNECT_MIN_S, LEDGER_RECONNECT_MAX_S, GROWN)
            assert schedule[-1] == LEDGER_RECONNECT_MAX_S
            for name, reconnects in (("listener", heard), ("ledger", chained)):
                waits = reconnects.waits()
                assert waits[:GROWN] == schedule and max(waits) == LEDGER_RECONNECT_MAX_S, (name, waits)
            # so each is back within one of those waits of the broker's return: its first attempt on it connects
            assert back_on_first_try(heard.since(returned[0])), heard.since(returned[0])
            assert back_on_first_try(chained.since(returned[1])), chained.since(returned[1])
        finally:
            listener.stop()
            ledger.stop()

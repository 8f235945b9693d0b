"""The health listener is back from a broker outage as promptly as the node's ledger transport (C3): the console
says the broker is back only once both DSO connections are, and the listener's back-off, the edge's 1 s doubling
to 10 s, kept 'back' up to 10 s after the broker (a 15-s outage: the listener back 9.9 s after the broker, the
ledger transport 0.06 s). A real Mosquitto killed (SIGKILL) and started again on the same loopback port, after
the listener's back-off has grown (four failed attempts: 15 s into the outage before, 1.5 s now); the bound
checked is the back-off's own (2 s) with slack for a loaded machine, not a speed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from helpers_wait import wait_until

from peergrid_dso.live_reconnect import LEDGER_RECONNECT_MAX_S, ledger_reconnect
from peergrid_dso.services.health import MqttHealthListener, NodeBoard
from peergrid_ledger.consensus.mqtt_transport import MqttTransport
from peergrid_sim.broker import MosquittoBroker

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")

# scheduling on a loaded 2-core CI (-n 3), kept short of the old back-off's wait here (about 10 s, review40)
SLACK_S = 5.0


def test_a_killed_broker_back_on_its_port_is_heard_by_both_connections_within_the_ledgers_bound(
    tmp_path: Path,
) -> None:
    with MosquittoBroker(tmp_path / "broker") as broker:
        listener = MqttHealthListener(
            NodeBoard("f1"), broker.host, broker.port, "dso-c3"
        )  # the default bound
        ledger = MqttTransport(broker.host, broker.port, "f1", b"\x01" * 32, ["dso"], lambda *_: None)
        ledger_reconnect(ledger, None)
        listener.start()
        ledger.start()
        try:
            assert wait_until(lambda: listener.health()["state"] == "listening" and ledger.connected.is_set())
            assert broker.process is not None
            broker.process.kill()
            broker.process.wait()
            assert wait_until(lambda: listener.outage.failed >= 4)  # its back-off has grown
            broker.restart()  # on the same port
            back_from = time.monotonic()
            assert wait_until(lambda: listener.health()["state"] == "listening")
            listener_back_s = time.monotonic() - back_from
            assert wait_until(ledger.connected.is_set)
            assert listener_back_s <= LEDGER_RECONNECT_MAX_S + SLACK_S, listener_back_s
        finally:
            listener.stop()
            ledger.stop()

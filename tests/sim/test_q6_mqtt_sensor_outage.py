"""firmware-sim's MQTT devices tell a broker outage as the daemons do (the ledger's `BrokerOutage`): one WARNING
when the broker is lost, one WARNING when it is back with how long it was down, nothing per refused attempt, and
nothing at the sim's own stop. Before, firmware-sim.log said nothing of an outage at all (U2's lab: its client came
back 16 s after the broker, unseen). Over a real Mosquitto stopped until attempts were refused, then started on
its port again."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from helpers_wait import wait_until
from test_sim_mqtt import pv_over_mqtt

from peergrid_sim.broker import MosquittoBroker


def sim_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid_sim.mqtt"]


def test_an_outage_is_one_warning_lost_and_one_back_with_its_length(
    tmp_path: Path, run_sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peergrid_sim.mqtt")
    with MosquittoBroker(tmp_path / "broker") as broker:
        where = f"the broker {broker.host}:{broker.port}"
        scenario = pv_over_mqtt(broker, name="q6-outage")
        sim = run_sim(scenario)
        assert wait_until(lambda: ("INFO", f"connected to {where}") in sim_lines(caplog))
        broker.stop()
        assert wait_until(lambda: any(level == "WARNING" for level, _ in sim_lines(caplog)))
        time.sleep(1.5)  # paho's back-off (1 s, then 2 s): at least one attempt refused while it is down
        broker.restart()
        assert wait_until(lambda: any("again after" in line for _, line in sim_lines(caplog)))
        sim.stop()  # its own disconnect: no outage
    assert sim_lines(caplog)[0] == ("INFO", f"connected to {where}")
    warned = [line for level, line in sim_lines(caplog) if level != "INFO"]
    assert len(warned) == 2, sim_lines(caplog)
    assert warned[0] == f"lost {where} (the connection closed); reconnecting with back-off"
    assert warned[1].startswith(f"connected to {where} again after ") and "(failed attempts: " in warned[1]
    assert all(level in ("INFO", "WARNING") for level, _ in sim_lines(caplog))

"""`/api/health`'s loop section carries the DSO node's start alarm while it stands (X6).

The real path: `peergrid-dso serve` with a `loop:` section over a real Mosquitto, its relays firmware-sim's over
Modbus TCP. Relays the node cannot adopt at start (a tie closed by hand: not radial) -> `start_alarm` names
them and the server says `degraded` (every plan is refused until an operator adopts); the field put right and
an operator's adoption in the console -> the alarm no longer stands, `ok`. A node that adopted its relays at
start, or had none to read, says `start_alarm: null`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .test_r25_relay_positions import close_by_hand
from .test_r27_relay_adopt import BASE
from .test_r27_relay_adopt import lab as lab  # a fixture: firmware-sim relays and their endpoints file
from .test_x6_console_plan_ids import login, serving, settings_doc


def open_by_hand(sim: Any, branch: int) -> None:
    sim.call(lambda: setattr(sim.app.sim.relays[f"s{branch}"].mechanism, "closed", False))


def test_the_start_alarm_degrades_health_until_an_operator_adopts(
    lab, tmp_path: Path, mosquitto: Any
) -> None:
    sim, relays_file = lab
    doc = settings_doc(tmp_path, mosquitto)
    doc["loop"]["relays_file"] = str(relays_file)
    close_by_hand(sim, 37)  # a mesh in the field while the DSO was down
    with serving(doc) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "degraded" and health["loop"]["running"], health
        alarm = health["loop"]["start_alarm"]
        assert alarm.startswith("at start: relay positions not adopted") and "is not radial" in alarm
        open_by_hand(sim, 37)  # the field put right: the relays agree with the DSO again
        csrf = login(client)
        assert client.get("/api/health").json()["status"] == "degraded"  # it stands until an adoption
        read = client.get("/console/api/relays", headers=csrf).json()
        assert read["adoptable"] and read["adopt_open"] == list(BASE), read
        adopted = client.post("/console/api/relays/adopt", headers=csrf, json={"open_branches": list(BASE)})
        assert adopted.status_code == 200, adopted.text
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["loop"]["start_alarm"] is None, health
        assert any(a.startswith("at start:") for a in client.get("/console/api/feeder").json()["alarms"])
    with serving(doc) as client:  # the relays radial: adopted at start, no alarm
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["loop"]["start_alarm"] is None, health
    del doc["loop"]["relays_file"]  # relays in memory: nothing to read, no alarm
    with serving(doc) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["loop"]["start_alarm"] is None, health

"""REST `POST /api/dso/plans` after a restart on the same DSO chain (live mode): the plan ids of a new server life
never repeat the last life's, and a chain refusal is a 409, never a 500 (X6; before, plan-1 was refused by the
persistent chain as a duplicate and the route answered 500)."""

from pathlib import Path
from typing import Any

from dso.test_x6_console_plan_ids import login, serving, settings_doc


def test_a_plan_posted_after_a_restart_on_the_same_chain_is_taken(tmp_path: Path, mosquitto: Any) -> None:
    doc = settings_doc(tmp_path, mosquitto)
    target = {"target_open": [7, 9, 14, 32, 37], "interval": 0}  # case33bw's optimum from its open set
    with serving(doc) as client:
        first = client.post("/api/dso/plans", json=target, headers=login(client))
        assert first.status_code in (200, 201), first.text
    with serving(doc) as client:
        again = client.post("/api/dso/plans", json=target, headers=login(client))
        assert again.status_code in (200, 201), again.text
        assert again.json()["plan"] != first.json()["plan"]

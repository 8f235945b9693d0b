"""The console's plan ids and the DSO chain's refusals (X6).

Ids are the wall clock in ms, each above the last (`Operations._next_id`): a second life of the console on the
same DSO chain (what a restart is in live mode; `tests/dso/test_x6_console_plan_ids.py` runs the real restart)
takes new ids. A record the chain refuses all the same - here a clock set back to the first life's millisecond -
is a 409 naming the chain's reason and whether anything was operated, recorded by an `operator_action`,
never a 500. The DSO chain is the console's lab-mode `LocalChain`; its refusals are the ledger's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.helpers import PASSWORD
from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_dso.console.operations import Operations
from peergrid_dso.services.dso_chain import ChainRejected

WALL_S = 1765000000.0  # a fixed wall clock: its ms are the ids


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users_file), "lab_market": False, "lab_drift": False}}
    )
    app = create_app(settings, listen=False)
    with TestClient(app, base_url="http://127.0.0.1:8080", raise_server_exceptions=False) as c:
        c.app.state.console.ops.wall = lambda: WALL_S  # type: ignore[attr-defined]
        yield c


def state(c: TestClient) -> Any:
    return c.app.state.console  # type: ignore[attr-defined]


def login(c: TestClient) -> dict[str, str]:
    answer = c.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
    return {"X-CSRF-Token": answer.json()["csrf"]}


def switch(c: TestClient, branch: int, close: bool) -> Any:
    csrf = login(c)
    preview = c.post(f"/console/api/switches/{branch}/preview", headers=csrf, json={"close": close}).json()
    assert preview["confirm"], preview
    return c.post(f"/console/api/switches/{branch}/operate", headers=csrf,
                  json={"close": close, "confirm": preview["confirm"]})  # fmt: skip


def closed(c: TestClient, branch: int) -> bool:
    return bool(dict(state(c).grid.switchgear.states())[branch])


def last_block(c: TestClient) -> list[dict[str, Any]]:
    chain = c.app.state.dso.chain  # type: ignore[attr-defined]
    txs: list[dict[str, Any]] = c.get(f"/console/api/ledger/dso/blocks/{chain.height}").json()["transactions"]
    return txs


def second_life(c: TestClient, wall_s: float) -> None:
    """The console started again on the same DSO chain and relays (a restart in live mode)."""
    ops = state(c).ops
    state(c).ops = Operations(ops.grid, ops.dso, ops.planner, ops.interval, wall=lambda: wall_s)


def test_ids_rise_within_one_millisecond(client: TestClient) -> None:
    first, second = switch(client, 33, True).json(), switch(client, 33, False).json()
    assert first["plan"] == "manual-1765000000000 by olga"  # the wall clock's ms
    assert second["plan"] == "manual-1765000000001 by olga"  # the same ms: one above the last


def test_a_restart_takes_new_ids_and_a_refused_id_is_a_409_with_the_chains_reason(client: TestClient) -> None:
    assert switch(client, 33, True).json()["plan"] == "manual-1765000000000 by olga"
    second_life(client, WALL_S)  # its clock set back to the first life's millisecond: the same id again
    height = client.app.state.dso.chain.height  # type: ignore[attr-defined]
    refused = switch(client, 33, False)
    assert refused.status_code == 409, refused.text  # before: 500
    reason = refused.json()["detail"]
    assert "refused the plan, nothing was operated" in reason and "duplicate" in reason
    assert closed(client, 33)  # nothing commanded
    assert state(client).security.snapshot()["counts"]["conflict"] == 1
    record = last_block(client)[-1]  # the refusal is on the chain: who, what, no transaction caused
    assert client.app.state.dso.chain.height == height + 1  # type: ignore[attr-defined]
    assert record["kind"] == "operator_action" and record["body"]["txs"] == []
    assert record["body"]["action"] == "open branch 33 (refused by the DSO chain)"
    second_life(client, WALL_S + 60)  # a clock that moves on: new ids, switching goes again
    done = switch(client, 33, False)
    assert done.status_code == 200 and done.json()["ok"] and not closed(client, 33)
    assert done.json()["plan"] == "manual-1765000060000 by olga"


def test_an_approval_the_chain_refuses_is_a_409_and_the_plan_failed(client: TestClient) -> None:
    csrf = login(client)
    plan = client.post("/console/api/plans", headers=csrf).json()
    assert plan["id"] == "plan-1765000000000" and plan["status"] == "pending"
    dso = client.app.state.dso  # type: ignore[attr-defined]
    taken = {
        "plan": "plan-1765000000000 by olga",
        "interval": 0,
        "actions": [{"switch": "s7", "close": True}],
    }
    dso.recorder.submit("switching_plan", taken)  # a first life's record under the same label
    dso.chain.seal()
    before = dict(state(client).grid.switchgear.states())
    answer = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf)
    assert answer.status_code == 409, answer.text
    assert "refused the plan, nothing was operated" in answer.json()["detail"]
    assert dict(state(client).grid.switchgear.states()) == before
    shown = client.get("/console/api/operations").json()["plans"][0]
    assert shown["status"] == "failed" and "duplicate" in shown["alarm"]


def test_a_record_refused_during_execution_says_the_relays_may_have_moved(client: TestClient) -> None:
    recorder = client.app.state.dso.switching.executor.recorder  # type: ignore[attr-defined]

    def refused_step(*_: Any) -> None:  # e.g. the chain halted half-way through a plan
        raise ChainRejected("switching_step rejected: halted")

    recorder.step = refused_step
    answer = switch(client, 33, True)
    assert answer.status_code == 409, answer.text
    assert "the relays may have moved: read and adopt their positions" in answer.json()["detail"]
    driver = client.app.state.dso.switching.executor.driver  # type: ignore[attr-defined]
    assert driver.status(33).closed and not closed(client, 33)  # it moved; the DSO still holds it open
    alarms = client.get("/console/api/feeder").json()["alarms"]
    assert any("close branch 33: the DSO chain refused a record during execution" in a for a in alarms)
    del recorder.step  # the chain takes records again: the way out the answer names
    csrf = login(client)
    read = client.get("/console/api/relays", headers=csrf).json()
    assert read["changed"] == [33] and not read["adoptable"]  # closed 33 meshes the feeder: not adoptable

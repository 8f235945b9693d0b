"""C2 (session 20): the console's plans list keeps the pending plan and the last decided ones, not every proposal.

Before, `Operations.plans` grew with every proposal a long-running server was asked for. Now it keeps every
undecided plan and the last `plans_kept` decided ones (executed, failed, superseded, nothing to do), the older
dropped at the next proposal or decision; the DSO chain still holds every approved plan's records. Through the
console's HTTP API on the lab server (in-memory relays, the lab's DSO chain), with a planner that swaps between
two radial configurations so that each approval operates the relays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.lab_client import lab_client
from console.test_console_api import login
from peergrid_dso.app import create_app
from peergrid_dso.config import DsoSettings
from peergrid_dso.console.operations import PLANS_KEPT_DECIDED, Operations

KEPT = 3
OPTIMUM, TIES = (7, 9, 14, 32, 37), (33, 34, 35, 36, 37)  # the published 33-bus optimum; every tie open


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        ops = c.app.state.console.ops  # type: ignore[attr-defined]
        ops.plans_kept = KEPT
        ops.planner = lambda feeder, p, q: OPTIMUM if set(ops.dso.open_set) == set(TIES) else TIES
        yield c


def shown(c: TestClient) -> list[dict[str, Any]]:
    """The plans the Operations view lists, newest first."""
    plans: list[dict[str, Any]] = c.get("/console/api/operations").json()["plans"]
    return plans


def approved_on_chain(c: TestClient) -> list[str]:
    """The plan label of every switching_plan on the DSO chain."""
    chain = c.app.state.dso.chain  # type: ignore[attr-defined]
    return [
        tx["body"]["plan"]
        for height in range(1, chain.height + 1)
        for tx in c.get(f"/console/api/ledger/dso/blocks/{height}").json()["transactions"]
        if tx["kind"] == "switching_plan"
    ]


def test_the_list_keeps_the_pending_plan_and_the_last_decided_ones(client: TestClient) -> None:
    csrf = login(client, "olga")
    approved, proposed = [], []
    for _ in range(4):  # each round: one superseded, then one approved and executed
        proposed.append(client.post("/console/api/plans", headers=csrf).json()["id"])
        plan = client.post("/console/api/plans", headers=csrf).json()
        proposed.append(plan["id"])
        done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
        assert done["status"] == "executed", done
        approved.append(plan["id"])
        listed = shown(client)
        assert len(listed) <= KEPT and listed[0]["id"] == plan["id"]
    pending = client.post("/console/api/plans", headers=csrf).json()
    listed = shown(client)
    assert [p["id"] for p in listed] == [pending["id"], *reversed(proposed[-KEPT:])]
    assert [p["status"] for p in listed] == ["pending", "executed", "superseded", "executed"]
    assert approved_on_chain(client) == [f"{p} by olga" for p in approved]  # the dropped ones too
    # the pending plan the list kept can still be approved; a dropped one is no longer known
    assert (
        client.post(f"/console/api/plans/{pending['id']}/approve", headers=csrf).json()["status"]
        == "executed"
    )
    gone = client.post(f"/console/api/plans/{approved[0]}/approve", headers=csrf)
    assert gone.status_code == 409 and gone.json()["detail"] == f"no plan {approved[0]!r}"
    assert [p["id"] for p in shown(client)] == [pending["id"], *reversed(proposed[-KEPT + 1 :])]


def test_a_pending_plan_is_never_dropped(client: TestClient) -> None:
    client.app.state.console.ops.plans_kept = 0  # type: ignore[attr-defined]
    csrf = login(client, "olga")
    first = client.post("/console/api/plans", headers=csrf).json()
    assert [p["id"] for p in shown(client)] == [first["id"]]
    second = client.post("/console/api/plans", headers=csrf).json()  # supersedes the first: dropped
    assert [(p["id"], p["status"]) for p in shown(client)] == [(second["id"], "pending")]
    client.app.state.dso.open_set = OPTIMUM  # type: ignore[attr-defined]  # the switches moved meanwhile
    refused = client.post(f"/console/api/plans/{second['id']}/approve", headers=csrf)
    assert refused.status_code == 409 and "switches moved" in refused.json()["detail"]
    assert shown(client) == []  # superseded by the move: decided, and none kept


def test_the_operations_view_bounds_the_list_by_default() -> None:
    assert Operations(None, None).plans_kept == PLANS_KEPT_DECIDED  # type: ignore[arg-type]


@pytest.mark.parametrize("kept", [-1, 2.5, True, "20", None])
def test_a_bad_number_of_plans_kept_is_refused(kept: Any) -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(f"plans_kept must be a whole number >= 0 (decided plans kept), not {kept!r}"),
    ):
        Operations(None, None, plans_kept=kept)  # type: ignore[arg-type]


def test_the_console_setting_sets_the_bound(users_file: Path) -> None:
    """`console.plans_kept` in the DSO config reaches the Operations view; a negative one is a config error."""
    console = {"users_file": str(users_file), "lab_market": False, "lab_drift": False}
    settings = DsoSettings.model_validate({"console": console | {"plans_kept": 5}})
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as c:
        assert c.app.state.console.ops.plans_kept == 5  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="plans_kept"):
        DsoSettings.model_validate({"console": console | {"plans_kept": -1}})


def test_a_plan_whose_run_raised_is_failed_with_why_not_left_executing(client: TestClient) -> None:
    """review34: an approval that raised anything but the chain's refusal (a relay driver's bug, a store
    error) left the plan `executing` for good, never pruned; now it is `failed` with the error, alarmed."""
    csrf = login(client, "olga")
    plan = client.post("/console/api/plans", headers=csrf).json()
    switching = client.app.state.dso.switching  # type: ignore[attr-defined]

    def broken(_plan: object) -> None:
        raise OSError("relay s7: the serial line is gone")

    switching.submit = broken
    raised = TestClient(client.app, base_url=str(client.base_url), raise_server_exceptions=False)
    raised.cookies = client.cookies
    answer = raised.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf)
    assert answer.status_code == 500
    (listed,) = [p for p in shown(client) if p["id"] == plan["id"]]
    assert listed["status"] == "failed", listed
    assert "OSError: relay s7: the serial line is gone" in listed["alarm"]

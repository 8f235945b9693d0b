"""The DSO node's own reconfiguration is in the Operations view's audit trail (U3-7, closing23's noticed). Before,
the list held only the operators' actions: the closed loop's switching plans (`interval-<t>`, and the start's
adoption) and the relay watch's read-back records (`operator_action` by 'dso-node') were on the DSO chain but not
in the list. Now each is a line under 'dso-node' with its chain reference (the record's txid and height, and the
plan's transactions), placed by height among the operators' lines, and an operator's plan is not taken for the
node's. Records written by the DSO's own recorder on the console's lab-mode DSO chain (the ledger's rules), read
by `NodeRecords` as the closed loop's console reads them, through the operations route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.helpers import PASSWORD
from console.lab_client import lab_client
from peergrid_dso.auth.users import NODE_NAME, UserError, UserStore
from peergrid_dso.console.node_records import NODE, NodeRecords
from peergrid_dso.node_chains import FILLER_OPERATOR
from peergrid_dso.services.switching import RelayOperation, StepRecord, SwitchingPlan

WATCH_SAYS = "relays: s33 reports closed, held open"


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


def dso(c: TestClient) -> Any:
    return c.app.state.dso  # type: ignore[attr-defined]


def node_reconfigures(c: TestClient, t: int, ok: bool) -> None:
    """The loop's plan for interval t as its recorder writes it (close s33, open s7), sealed."""
    recorder, chain = dso(c).recorder, dso(c).chain
    plan = SwitchingPlan(
        f"interval-{t}", t, (33,), (7,), (RelayOperation(33, True), RelayOperation(7, False))
    )
    steps = [
        StepRecord(33, True, True, status="closed"),
        StepRecord(7, False, ok, status="open" if ok else "closed"),
    ]
    recorder.plan(plan)
    for index, step in enumerate(steps):
        recorder.step(plan, index, step)
    recorder.result(plan, steps)
    chain.seal()


def test_the_nodes_plans_and_the_relay_watchs_records_join_the_audit_trail_by_height(
    client: TestClient,
) -> None:
    state = client.app.state.console  # type: ignore[attr-defined]
    chain = dso(client).chain
    state.node_records = NodeRecords(chain)
    node_reconfigures(client, 40, ok=True)
    csrf = {
        "X-CSRF-Token": client.post(
            "/console/api/login", json={"username": "olga", "password": PASSWORD}
        ).json()["csrf"]
    }
    preview = client.post("/console/api/switches/34/preview", headers=csrf, json={"close": True}).json()
    done = client.post(
        "/console/api/switches/34/operate", headers=csrf, json={"close": True, "confirm": preview["confirm"]}
    )
    assert done.status_code == 200, done.text  # an operator's manual switching: its own line, not the node's
    dso(client).recorder.submit("operator_action", {"operator": NODE, "action": WATCH_SAYS, "txs": []})
    chain.seal()
    node_reconfigures(client, 41, ok=False)
    assert state.read_node_records() == 5  # three lines, two of them completed by their results
    audit = client.get("/console/api/operations").json()["audit"]  # newest first
    assert [(a["user"], a["action"]) for a in audit] == [
        (NODE, "reconfigure for interval 41 (interval-41): close s33, open s7: not done (s7 not confirmed)"),
        (NODE, WATCH_SAYS),
        ("olga", "close branch 34"),
        (NODE, "reconfigure for interval 40 (interval-40): close s33, open s7"),
    ]
    heights = [a["height"] for a in audit]
    assert heights == sorted(heights, reverse=True)
    for line in audit:  # each line's chain reference is where the chain has it
        assert chain.locate_tx(bytes.fromhex(line["record"]))[0] == line["height"]
    plan41 = audit[0]
    kinds = [chain.block(chain.locate_tx(bytes.fromhex(t))[0]).txs[chain.locate_tx(bytes.fromhex(t))[1]].kind
             for t in plan41["txids"]]  # fmt: skip
    assert kinds == ["switching_plan", "switching_step", "switching_step", "switching_result"]
    assert audit[1]["txids"] == [] and audit[1]["record"]
    assert state.read_node_records() == 5  # read once: nothing new, nothing added again
    assert len(client.get("/console/api/operations").json()["audit"]) == 4


def test_a_plans_line_is_written_at_its_plan_and_completed_by_its_result(client: TestClient) -> None:
    recorder, chain = dso(client).recorder, dso(client).chain
    records = NodeRecords(chain)
    plan = SwitchingPlan("adopt-1765000000000 at start", 0, (7,), (33,), (RelayOperation(7, True),))
    recorder.plan(plan)
    chain.seal()
    (line,) = records.scan()
    assert (
        line["action"]
        == "adopt relay positions (adopt-1765000000000 at start): close s7: no result recorded yet"
    )
    recorder.result(plan, [StepRecord(7, True, True, status="closed")])
    chain.seal()
    assert records.scan() == [] and records.changes == 2
    assert line["action"] == "adopt relay positions (adopt-1765000000000 at start): close s7"
    assert len(line["txids"]) == 2 and line["record"] == line["txids"][0]


def test_the_first_read_goes_back_a_bounded_number_of_blocks(client: TestClient) -> None:
    recorder, chain = dso(client).recorder, dso(client).chain
    for k in range(3):
        recorder.submit("operator_action", {"operator": NODE, "action": f"watch {k}", "txs": []})
        chain.seal()
    assert [line["action"] for line in NodeRecords(chain, back=2).scan()] == ["watch 1", "watch 2"]


def test_no_operator_may_take_the_nodes_name(tmp_path: Path) -> None:
    assert NODE_NAME == NODE == FILLER_OPERATOR
    with pytest.raises(UserError, match="the DSO node's own name"):
        UserStore(tmp_path / "users.json").add(NODE_NAME, "admin", "a long enough password")

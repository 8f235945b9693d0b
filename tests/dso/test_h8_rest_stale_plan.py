"""H8 (review31 R31-4): `POST /api/dso/plans` plans from the DSO's open set read before the relays' lock is its
own; when another writer (a console plan, the closed loop, an adoption) moves the network in between, the plan
is refused with 409 under the lock, before it is recorded or run, and the DSO keeps the open set the relays
stand at. Before, an executing service refused the stale plan (`_blocked`: no relay operated) and reported its
old starting open set as where the relays ended, and REST wrote that into `dso.open_set`: every later plan was
refused until an operator adopted.
"""

from __future__ import annotations

from typing import Any

import pytest

from peergrid_dso.routes import dso_plans
from peergrid_dso.services.switching import ExecutionResult, plan_switching
from peergrid_dso.services.switching_watch import RelayWatch

TARGET = [7, 9, 14, 32, 37]  # case33bw's optimum from its open set: two pairs, four relays moved


async def _never(kind: str, body: dict[str, Any]) -> Any:
    raise AssertionError("the watch's read records nothing")


def racing_writer(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """REST's planning, then (once) another writer taking the relays' lock first and moving the network to
    TARGET; returns the ids of the plans handed to the recorder (the DSO chain) from then on."""
    dso, console = client.app.state.dso, client.app.state.console
    recorded: list[str] = []
    recorder = dso.switching.executor.recorder
    plan_hook = recorder.plan

    def counting(plan: Any) -> None:
        recorded.append(plan.plan_id)
        plan_hook(plan)

    monkeypatch.setattr(recorder, "plan", counting)

    def racing(feeder: Any, open_set: Any, target: Any, **kw: Any) -> Any:
        plan = plan_switching(feeder, open_set, target, **kw)  # REST's plan, from the open set it read
        if "other-writer" in recorded:  # one race; later plans are REST's own
            return plan
        with console.ops.lock:  # the other writer gets the lock first and runs the same move
            other = plan_switching(feeder, dso.open_set, target, plan_id="other-writer")
            dso.switching.executor.recorder.plan(other)  # as the console's manual switching does
            result = dso.switching.executor.execute(other)
            assert result.ok, result
            dso.open_set = result.final_open
        return plan

    monkeypatch.setattr(dso_plans, "plan_switching", racing)  # where create_plan looks it up
    return recorded


@pytest.mark.parametrize("auto", [True, False], ids=["executes-at-once", "awaits-approval"])
def test_a_rest_plan_made_from_a_moved_network_is_refused_and_the_open_set_kept(
    operator_session: tuple[Any, dict[str, str]], monkeypatch: pytest.MonkeyPatch, auto: bool
) -> None:
    client, csrf = operator_session
    dso, console = client.app.state.dso, client.app.state.console
    dso.switching.auto = auto
    recorded = racing_writer(client, monkeypatch)
    r = client.post("/api/dso/plans", json={"target_open": TARGET}, headers=csrf)
    assert r.status_code == 409 and "changed" in r.json()["detail"], r.text
    assert tuple(sorted(dso.open_set)) == tuple(TARGET)  # before: the stale plan's start written back
    finding = RelayWatch(dso.switching.executor.driver, console.ops.lock, _never).read(dso)
    assert finding is not None and not finding.standing, finding and finding.alarm()
    assert recorded == ["other-writer"]  # REST's plan reached neither the chain nor the pending list
    assert not dso.switching.pending and not dso.switching.results
    again = client.post("/api/dso/plans", json={"target_open": [33, 34, 35, 36, 37]}, headers=csrf)
    assert again.status_code == 201, again.text  # the DSO plans on from where the relays are
    if auto:
        assert again.json()["status"] == "done" and tuple(sorted(dso.open_set)) == (33, 34, 35, 36, 37)


def test_a_plan_refused_before_any_step_leaves_the_open_set_alone(
    operator_session: tuple[Any, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal with no step read the relays off the plan's start: its final_open (that start) says nothing of
    where they are, so it is not written into the DSO's open set; a plan that ran, even rolled back, is."""
    client, csrf = operator_session
    dso = client.app.state.dso
    dso.switching.auto = True
    held = tuple(sorted(dso.open_set))
    service = dso.switching

    def refused_elsewhere(plan: Any) -> ExecutionResult:
        return ExecutionResult(plan.plan_id, False, (1, 2, 3, 4, 5), (), "plan refused, no relay operated")

    monkeypatch.setattr(service, "submit", refused_elsewhere)
    r = client.post("/api/dso/plans", json={"target_open": TARGET}, headers=csrf)
    assert r.status_code == 201 and r.json()["status"] == "failed", r.text
    assert tuple(sorted(dso.open_set)) == held

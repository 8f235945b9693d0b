"""review25 F2: before a switching plan the executor reads the relays and refuses the plan (no relay operated,
recorded on the DSO chain, alarmed, shown on the console) when one reports a position other than the plan's
starting topology says - the DSO's whole open set, not only the plan's relays. Against firmware-sim relays over
real Modbus TCP, driven by the driver the DSO node builds from its relays file (`interval_node.relay_driver`).

Before (5ed2237, /work/notes/r25/f_relay_status.out): `wrong_status` on s7 ended with six switches open
(a section dead) and `wrong_status` on s33 meshed, both recorded as the base radial topology; tie s37 closed
by hand let the plan run `ok` and record 37 open while the feeder was meshed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from console.helpers import PASSWORD, USERS, fast_hasher
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.app import create_app
from peergrid_dso.auth.users import UserStore
from peergrid_dso.config import DsoSettings
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.interval_node import relay_driver
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.switching import (
    RelayInventory,
    RelayStatus,
    SwitchingExecutor,
    SwitchingService,
    plan_switching,
)
from peergrid_ledger import query
from peergrid_sim.background import BackgroundSim
from peergrid_sim.scenario import Relay, Scenario

from .test_switching import BASE, OPTIMUM, Clock, FakeRelays, dso_chain

RELAY_BRANCHES = (7, 9, 14, 32, 33, 34, 35, 36, 37)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[BackgroundSim, Any]]:
    """firmware-sim relays on the plan's branches and every tie, and the DSO node's driver for them, built
    from the endpoints file as `loop.relays_file` names it."""
    scenario = Scenario(
        name="r25-relays",
        relays=[
            Relay(name=f"s{b}", branch=b, closed=b not in BASE, tie=b >= 33, operate_delay_s=0.05)
            for b in RELAY_BRANCHES
        ],
    )
    with BackgroundSim(scenario, None) as sim:
        relays_file = tmp_path / "endpoints.json"
        relays_file.write_text(json.dumps(sim.endpoints), encoding="utf-8")
        driver = relay_driver(SimpleNamespace(relays_file=relays_file, relays_tls=None), case33bw())  # type: ignore[arg-type]
        try:
            yield sim, driver
        finally:
            driver.close()


def operations(sim: BackgroundSim) -> int:
    return int(sim.call(lambda: sum(r.mechanism.operations for r in sim.app.sim.relays.values())))


def physically_open(sim: BackgroundSim) -> tuple[int, ...]:
    return tuple(
        sorted(sim.call(lambda: [r.branch for r in sim.app.sim.relays.values() if not r.mechanism.closed]))
    )


def wrong_status(sim: BackgroundSim, branch: int) -> None:
    """The contacts move, the status inputs report the opposite."""
    sim.call(lambda: setattr(sim.app.sim.relays[f"s{branch}"].faults, "relay_fail", "wrong_status"))


def close_by_hand(sim: BackgroundSim, branch: int) -> None:
    sim.call(lambda: setattr(sim.app.sim.relays[f"s{branch}"].mechanism, "closed", True))


def run_plan(driver: Any, plan_id: str) -> tuple[Any, SwitchingExecutor, Any]:
    chain, dso = dso_chain()
    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=1.0, poll_s=0.02)
    result = SwitchingService(executor, auto=True).submit(
        plan_switching(case33bw(), BASE, OPTIMUM, plan_id=plan_id)
    )
    chain.seal()
    return result, executor, chain


def test_the_node_driver_names_every_relay_of_its_file(lab) -> None:
    _, driver = lab
    assert isinstance(driver, RelayInventory) and tuple(driver.branches()) == RELAY_BRANCHES


@pytest.mark.parametrize(
    ("lie", "says"),
    [
        (("wrong_status", 7), "branch 7 reports open, the plan starts from it closed"),
        (("wrong_status", 33), "branch 33 reports closed, the plan starts from it open"),
        (("by hand", 37), "branch 37 reports closed, the plan starts from it open"),  # not in the plan
        (("by hand", 33), "branch 33 reports closed, the plan starts from it open"),
    ],
)
def test_a_relay_disagreeing_with_the_starting_topology_refuses_the_plan(lab, lie, says) -> None:
    sim, driver = lab
    how, branch = lie
    (wrong_status if how == "wrong_status" else close_by_hand)(sim, branch)
    before = physically_open(sim)
    result, executor, chain = run_plan(driver, f"r25-{how}-{branch}")
    assert result is not None and not result.ok and result.steps == ()
    assert result.alarm == f"plan refused, no relay operated: {says}"
    assert executor.alarms == [f"r25-{how}-{branch}: {result.alarm}"]
    assert operations(sim) == 0 and physically_open(sim) == before  # nothing moved
    assert result.final_open == BASE  # the DSO keeps what it knew and says it is wrong
    stored = query.switching_plan(chain.state, f"r25-{how}-{branch}")  # the plan and its refusal on chain
    assert stored is not None and not stored.get("steps")  # no step: no relay was commanded
    planned = [op.branch for op in plan_switching(case33bw(), BASE, OPTIMUM, plan_id="x").operations]
    assert stored["result"]["results"] == [
        {"switch": f"s{b}", "closed": b not in BASE, "ok": False} for b in planned
    ]


def test_a_relay_that_cannot_be_read_refuses_the_plan_even_outside_it(lab) -> None:
    """Tie 37 is in no pair of the plan; its position unknown, the end state cannot be known radial."""
    sim, driver = lab
    driver.endpoints[37] = type(driver.endpoints[37])("127.0.0.1", 9, 1)  # nothing listens on port 9
    result, _, _ = run_plan(driver, "r25-unreadable")
    assert (
        result is not None
        and not result.ok
        and "branch 37 unreachable (cannot connect" in (result.alarm or "")
    )
    assert operations(sim) == 0


def test_honest_relays_still_switch(lab) -> None:
    sim, driver = lab
    result, _, _ = run_plan(driver, "r25-control")
    assert result is not None and result.ok, result
    assert physically_open(sim) == result.final_open == OPTIMUM


def test_the_console_shows_the_refusal_and_keeps_its_topology(lab, tmp_path: Path) -> None:
    sim, driver = lab
    users = tmp_path / "users.json"
    store = UserStore(users, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    config = DsoSettings.model_validate(
        {"console": {"users_file": str(users), "lab_market": False, "lab_drift": False}}
    )
    with TestClient(create_app(config, listen=False), base_url="http://127.0.0.1:8080") as client:
        csrf = {"X-CSRF-Token": client.post(
            "/console/api/login", json={"username": "olga", "password": PASSWORD}
        ).json()["csrf"]}  # fmt: skip
        state: Any = client.app.state  # type: ignore[attr-defined]
        state.console.ops.planner = lambda feeder, p, q: OPTIMUM  # this test is about the executor
        state.dso.switching.executor.driver = driver
        close_by_hand(sim, 37)
        plan = client.post("/console/api/plans", headers=csrf).json()
        done = client.post(f"/console/api/plans/{plan['id']}/approve", headers=csrf).json()
        assert done["status"] == "failed" and not done["steps"]
        assert "branch 37 reports closed, the plan starts from it open" in done["alarm"]
        feeder = client.get("/console/api/feeder").json()
        assert any("branch 37 reports closed" in alarm for alarm in feeder["alarms"])
        assert feeder["open_branches"] == list(BASE) and operations(sim) == 0


@dataclass
class ListedRelays(FakeRelays):
    failed: set[int] = field(default_factory=set)  # the last operation failed; the contacts still report

    def branches(self) -> tuple[int, ...]:
        return tuple(sorted(self.closed))

    def status(self, branch: int) -> RelayStatus:
        return replace(super().status(branch), failed=branch in self.failed)

    def command(self, branch: int, close: bool) -> None:  # a new operation clears the flag (firmware-sim too)
        self.failed.discard(branch)
        super().command(branch, close)


def fake_switch(relays: FakeRelays, plan_id: str) -> Any:
    chain, dso = dso_chain()
    clock = Clock()
    executor = SwitchingExecutor(
        relays, ChainRecorder(chain, dso), timeout_s=1.0, sleep=clock.sleep, clock=clock
    )
    return SwitchingService(executor, auto=True).submit(
        plan_switching(case33bw(), BASE, OPTIMUM, plan_id=plan_id)
    )


PLAN_RELAYS = (7, 9, 14, 32, 33, 34, 35, 36)  # what plan_switching(BASE -> OPTIMUM) operates; 37 stays open


@settings(max_examples=40, deadline=None)
@given(st.sampled_from((*PLAN_RELAYS, 37, 1, 20)), st.booleans())
def test_any_one_relay_off_the_starting_topology_refuses_with_nothing_commanded(
    branch: int, listed: bool
) -> None:
    """In memory, every branch with a relay: one of them flipped (plan relay or not) refuses the plan when the
    executor can read it - always for the plan's own relays, for the others when the driver lists its relays."""
    closed = {b: b not in BASE for b in range(1, 38)}
    closed[branch] = not closed[branch]
    relays = ListedRelays(closed) if listed else FakeRelays(closed)
    result = fake_switch(relays, "flip")
    read = listed or branch in PLAN_RELAYS
    assert result.ok is not read
    if read:
        assert relays.operated == [] and f"branch {branch} reports " in (result.alarm or "")


def test_a_relay_whose_last_operation_failed_but_reports_its_place_does_not_refuse() -> None:
    """The failed flag clears only with a command: refusing on it would bar that relay for good, while its
    contacts - what the topology depends on - still say where it is; a repeat failure is caught by read-back."""
    relays = ListedRelays({b: b not in BASE for b in range(1, 38)}, failed={7, 37})
    result = fake_switch(relays, "failed-flag")
    assert result.ok and result.final_open == OPTIMUM

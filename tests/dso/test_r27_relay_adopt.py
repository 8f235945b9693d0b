"""review27 R27-1: a restarted DSO adopts the positions its relays report; an operator can adopt them too.

Since d075b05 the executor refuses a plan when a relay reports a position other than the plan's starting
topology. A node started from the feeder's open set and never read its relays, so after a reconfiguration and
a restart every plan was refused for good, the console's manual switching too (/work/notes/r27/
relay_restart_refusal_modbus.out). Here, against firmware-sim relays over Modbus TCP with the driver the node
builds from its relays file: the restarted node adopts what the relays report and plans again; relays that
cannot be adopted (a mesh, one unreadable, one moving) leave it on the feeder's open set with an alarm naming
them; an operator adopts from the console (recorded on the DSO chain with who did it) or is refused, recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from console.helpers import PASSWORD, USERS, fast_hasher
from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.auth.users import UserStore
from peergrid_dso.config import DsoSettings
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.interval_node import relay_driver
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.switching import (
    RelayStatus,
    SwitchingExecutor,
    SwitchingService,
    plan_switching,
)
from peergrid_dso.services.switching_adopt import (
    AdoptRefused,
    adopt,
    adoption_id,
    adoption_records,
    read_relays,
    record_adoption,
    start_topology,
)
from peergrid_ledger import query
from peergrid_sim.background import BackgroundSim
from peergrid_sim.scenario import Relay, Scenario

from .test_r25_relay_positions import close_by_hand, operations, physically_open
from .test_switching import BASE, OPTIMUM, dso_chain

RELAY_BRANCHES = (7, 9, 14, 32, 33, 34, 35, 36, 37)
MOVED = (7, 9, 14, 32, 33, 34, 35, 36)  # BASE -> OPTIMUM: the relays whose position changes


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[BackgroundSim, Path]]:
    """firmware-sim relays on the plan's branches and every tie, and the relays file the node reads."""
    scenario = Scenario(
        name="r27-relays",
        relays=[
            Relay(name=f"s{b}", branch=b, closed=b not in BASE, tie=b >= 33, operate_delay_s=0.05)
            for b in RELAY_BRANCHES
        ],
    )
    with BackgroundSim(scenario, None) as sim:
        relays_file = tmp_path / "endpoints.json"
        relays_file.write_text(json.dumps(sim.endpoints), encoding="utf-8")
        yield sim, relays_file


def node_driver(relays_file: Path) -> Any:
    return relay_driver(SimpleNamespace(relays_file=relays_file, relays_tls=None), case33bw())  # type: ignore[arg-type]


def switch(driver: Any, start: tuple[int, ...], target: tuple[int, ...], plan_id: str) -> Any:
    chain, dso = dso_chain()
    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=2.0, poll_s=0.02)
    executor.recorder.plan(plan := plan_switching(case33bw(), start, target, plan_id=plan_id))
    return executor.execute(plan)


def first_life(relays_file: Path) -> None:
    """The node before its restart: a reconfiguration that succeeded (BASE -> OPTIMUM)."""
    driver = node_driver(relays_file)
    try:
        assert switch(driver, BASE, OPTIMUM, "first-life").ok
    finally:
        driver.close()


def test_a_restarted_node_adopts_the_relays_positions_and_plans_again(lab) -> None:
    sim, relays_file = lab
    first_life(relays_file)
    driver = node_driver(relays_file)  # the restart: a new driver, a new executor
    try:
        old = switch(driver, case33bw().initially_open(), OPTIMUM, "as-before")  # what the node did before
        assert not old.ok and "branch 7 reports open, the plan starts from it closed" in (old.alarm or "")
        start = start_topology(case33bw(), driver)
        assert start.alarm is None and start.open_set == OPTIMUM
        assert start.adoption is not None and start.adoption.changed == MOVED
        back = switch(driver, start.open_set, BASE, "after-restart")
        assert back.ok, back.alarm
        assert physically_open(sim) == BASE  # the relays of the file: every tie open again
    finally:
        driver.close()


def test_the_start_adoption_lands_on_the_dso_chain_as_a_switching_plan_and_result(lab) -> None:
    _, relays_file = lab
    first_life(relays_file)
    driver = node_driver(relays_file)
    try:
        start = start_topology(case33bw(), driver)
    finally:
        driver.close()
    assert start.adoption is not None
    chain, dso = dso_chain()
    plan_id = adoption_id(1_765_000_000.25, "at start")
    assert plan_id == "adopt-1765000000250 at start"
    recorder = ChainRecorder(chain, dso)
    for kind, body in adoption_records(start.adoption, plan_id, 3):
        recorder.submit(kind, body)
    chain.seal()
    stored = query.switching_plan(chain.state, plan_id)
    assert stored is not None and stored["interval"] == 3 and not stored.get("steps")  # no relay commanded
    read = {r["switch"]: r["closed"] for r in stored["result"]["results"]}
    assert read == {f"s{b}": b not in OPTIMUM for b in RELAY_BRANCHES}
    assert all(r["ok"] for r in stored["result"]["results"])


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("tie 37 closed by hand", "open [7, 9, 14, 32] is not radial"),
        ("relay 33 unreachable", "branch 33 unreachable (cannot connect"),
    ],
)
def test_relays_that_cannot_be_adopted_leave_the_feeders_open_set_an_alarm_and_plans_refused(
    lab, fault: str, named: str
) -> None:
    sim, relays_file = lab
    first_life(relays_file)
    driver = node_driver(relays_file)
    try:
        if fault.startswith("tie 37"):
            close_by_hand(sim, 37)  # OPTIMUM with 37 closed: a loop
        else:
            driver.endpoints[33] = type(driver.endpoints[33])("127.0.0.1", 9, 1)  # nothing listens on port 9
        start = start_topology(case33bw(), driver)
        assert start.adoption is None and start.open_set == case33bw().initially_open()
        assert start.alarm is not None and named in start.alarm
        assert "branch 7 reports open" in start.alarm  # a relay off the open set the node holds, named
        assert start.alarm.endswith("until an operator adopts")
        before = operations(sim)
        refused = switch(driver, start.open_set, OPTIMUM, "refused")
        assert (
            not refused.ok and refused.alarm and refused.alarm.startswith("plan refused, no relay operated")
        )
        assert operations(sim) == before
    finally:
        driver.close()


@dataclass
class Listed:
    """In-memory relays that name themselves; `moving` ones read "operating"."""

    closed: dict[int, bool]
    moving: frozenset[int] = frozenset()

    def branches(self) -> tuple[int, ...]:
        return tuple(sorted(self.closed))

    def status(self, branch: int) -> RelayStatus:
        return RelayStatus(None if branch in self.moving else self.closed[branch], False, False)

    def command(self, branch: int, close: bool) -> None:
        raise AssertionError("adoption never commands a relay")


def test_a_moving_relay_is_not_adopted_and_the_branches_without_a_relay_keep_their_place() -> None:
    feeder = case33bw()
    moving = Listed({b: b not in OPTIMUM for b in RELAY_BRANCHES}, frozenset({9}))
    with pytest.raises(AdoptRefused, match=r"^relay positions not adopted: branch 9 operating$"):
        adopt(feeder, BASE, read_relays(moving))  # type: ignore[arg-type]
    still = Listed({b: b not in OPTIMUM for b in RELAY_BRANCHES})
    adoption = adopt(feeder, BASE, read_relays(still))  # type: ignore[arg-type]
    assert adoption.open_set == OPTIMUM and adoption.changed == MOVED
    # relays on tie 37 and branch 28 only: the other ties have none and stay where the DSO holds them
    only_two = adopt(feeder, BASE, read_relays(Listed({37: True, 28: False})))  # type: ignore[arg-type]
    assert only_two.open_set == (28, 33, 34, 35, 36) and only_two.changed == (28, 37)
    assert start_topology(feeder, object()).open_set == BASE  # a driver that names no relay: as before


class Adapter:
    """A ChainAdapter over a LocalChain whose first submit gives up waiting although it lands (late)."""

    def __init__(self) -> None:
        self.chain, self.dso = dso_chain()
        self.asked: list[str] = []

    async def submit(self, key: Any, kind: str, body: dict[str, Any]) -> Any:
        self.asked.append(kind)
        result = self.chain.sign_and_submit(key, kind, body)
        self.chain.seal()
        if len(self.asked) == 1:
            return SimpleNamespace(ok=False, reason="timeout", detail="not final in 8 s")
        if not result.ok:  # as ChainAdapter says a refusal
            return SimpleNamespace(ok=False, reason="refused", detail=result.detail)
        return result


class Changed:
    async def wait(self, timeout: float) -> None:
        pass


def test_recording_the_start_adoption_counts_a_late_landing_and_stops_on_a_refusal() -> None:
    adapter = Adapter()
    adoption = adopt(case33bw(), BASE, read_relays(Listed({b: b not in OPTIMUM for b in RELAY_BRANCHES})))  # type: ignore[arg-type]
    records = adoption_records(adoption, "adopt-1 at start", 0)
    state = lambda: adapter.chain.state  # noqa: E731
    assert asyncio.run(asyncio.wait_for(record_adoption(adapter, adapter.dso, records, state, Changed()), 10))
    assert adapter.asked == ["switching_plan", "switching_result"]  # the plan that landed late: not again
    assert query.switching_plan(adapter.chain.state, "adopt-1 at start")["result"] is not None  # type: ignore[index]
    from peergrid_dso.interval_node import DsoLoop

    loop = DsoLoop(SimpleNamespace(tariff_file=None), SimpleNamespace(app=adapter.chain), adapter, Changed(),  # type: ignore[arg-type]
                   None, None, None, None, adapter.dso, None, None,
                   start_records=adoption_records(adoption, "adopt-3 at start", 0))  # fmt: skip
    asyncio.run(asyncio.wait_for(loop.record_start(), 10))  # the node's own path, before its first interval
    assert query.switching_plan(adapter.chain.state, "adopt-3 at start")["result"] is not None  # type: ignore[index]

    async def broken(*_: Any) -> Any:
        raise RuntimeError("the adapter broke")

    loop.adapter = SimpleNamespace(submit=broken)  # type: ignore[assignment]
    loop.start_records = adoption_records(adoption, "adopt-4 at start", 0)
    asyncio.run(asyncio.wait_for(loop.record_start(), 10))  # logged; the node goes on to its intervals
    other = adoption_records(adoption, "adopt-2 at start", 0)
    other[0][1]["actions"] = []  # a plan the chain refuses
    adapter.asked.append("-")
    assert not asyncio.run(
        asyncio.wait_for(record_adoption(adapter, adapter.dso, other, state, Changed()), 10)
    )
    assert adapter.asked[-2:] == ["-", "switching_plan"]  # refused once: not tried again


# ------------------------------------------------------------------------------------------ the console


@pytest.fixture
def console(lab, tmp_path: Path) -> Iterator[tuple[Any, BackgroundSim, Any]]:
    """The console in lab mode on the firmware-sim relays, after a reconfiguration it did not see (the DSO
    holds BASE, the relays report OPTIMUM: every plan refused, as after a restart before this change)."""
    sim, relays_file = lab
    first_life(relays_file)
    driver = node_driver(relays_file)
    users = tmp_path / "users.json"
    store = UserStore(users, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    config = DsoSettings.model_validate(
        {"console": {"users_file": str(users), "lab_market": False, "lab_drift": False}}
    )
    try:
        with TestClient(create_app(config, listen=False), base_url="http://127.0.0.1:8080") as client:
            client.app.state.dso.switching.executor.driver = driver  # type: ignore[attr-defined]
            yield client, sim, driver
    finally:
        driver.close()


def login(client: Any, user: str) -> dict[str, str]:
    answer = client.post("/console/api/login", json={"username": user, "password": PASSWORD})
    return {"X-CSRF-Token": answer.json()["csrf"]}


def test_an_operator_adopts_the_relays_positions_and_switches_again(console) -> None:
    client, sim, _ = console
    csrf = login(client, "olga")
    preview = client.post("/console/api/switches/37/preview", headers=csrf, json={"close": True}).json()
    refused = client.post("/console/api/switches/37/operate", headers=csrf,
                          json={"close": True, "confirm": preview["confirm"]}).json()  # fmt: skip
    assert not refused["ok"] and refused["steps"] == []  # refused: the DSO holds BASE, the relays OPTIMUM
    assert any("branch 7 reports open" in a for a in client.get("/console/api/feeder").json()["alarms"])
    read = client.get("/console/api/relays").json()
    assert read["adoptable"] and read["open_branches"] == list(BASE) and read["adopt_open"] == list(OPTIMUM)
    assert read["changed"] == list(MOVED) and read["relays"]["33"] == "closed" and not read["unreadable"]
    done = client.post("/console/api/relays/adopt", headers=csrf, json={"open_branches": list(OPTIMUM)})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["open_branches"] == list(OPTIMUM) and body["changed"] == list(MOVED)
    assert body["plan"].startswith("adopt-") and body["plan"].endswith(" by olga")
    assert client.get("/console/api/feeder").json()["open_branches"] == list(OPTIMUM)
    state: Any = client.app.state  # type: ignore[attr-defined]
    chain = state.dso.chain
    stored = query.switching_plan(chain.state, body["plan"])
    assert stored is not None and stored["result"] is not None and not stored.get("steps")
    audit = client.get("/console/api/operations").json()["audit"][0]
    assert audit["user"] == "olga" and audit["action"] == f"adopt relay positions: open {list(OPTIMUM)}"
    assert len(audit["txids"]) == 2  # the adoption's plan and result, named by the operator_action
    # the way out: manual switching goes again (close branch 7, then open tie 33: radial again)
    for branch, close in ((7, True), (33, False)):
        preview = client.post(
            f"/console/api/switches/{branch}/preview", headers=csrf, json={"close": close}
        ).json()
        assert preview["confirm"], preview
        done = client.post(f"/console/api/switches/{branch}/operate", headers=csrf,
                           json={"close": close, "confirm": preview["confirm"]}).json()  # fmt: skip
        assert done["ok"], done
    assert physically_open(sim) == (9, 14, 32, 33, 37)


def test_adoption_refusals_are_clear_and_recorded(console) -> None:
    client, sim, driver = console
    csrf = login(client, "olga")
    state: Any = client.app.state  # type: ignore[attr-defined]

    def adopt_now(open_branches: list[int]) -> Any:
        return client.post("/console/api/relays/adopt", headers=csrf, json={"open_branches": open_branches})

    stale = adopt_now(list(BASE))  # not what the relays report
    assert stale.status_code == 409
    assert "the relays now report open [7, 9, 14, 32, 37], not the [33, 34, 35, 36, 37] given" in stale.text
    close_by_hand(sim, 37)
    meshed = adopt_now([7, 9, 14, 32])
    assert meshed.status_code == 409 and "open [7, 9, 14, 32] is not radial" in meshed.json()["detail"]
    assert "branch 37 reports closed" in meshed.json()["detail"]
    driver.endpoints[33] = type(driver.endpoints[33])("127.0.0.1", 9, 1)
    unreadable = adopt_now(list(OPTIMUM))
    assert unreadable.status_code == 409 and "branch 33 unreachable" in unreadable.json()["detail"]
    assert not client.get("/console/api/relays").json()["adoptable"]
    assert state.dso.open_set == BASE  # nothing adopted
    audit = client.get("/console/api/operations").json()["audit"]
    said = ("branch 33 unreachable", "open [7, 9, 14, 32] is not radial", "the relays now report open")
    for entry, what in zip(audit[:3], said, strict=True):  # newest first
        assert entry["action"].startswith(f"refused: relay positions not adopted: {what}"), entry
    assert all(a["user"] == "olga" and a["txids"] == [] for a in audit[:3])  # on chain, naming nothing
    refusals = state.console.security.snapshot()
    assert refusals["counts"]["conflict"] == 3 and "branch 33 unreachable" in refusals["recent"][-1]["detail"]
    viewer = login(client, "vera")
    assert client.post("/console/api/relays/adopt", headers=viewer,
                       json={"open_branches": list(OPTIMUM)}).status_code == 403  # fmt: skip
    assert client.get("/console/api/relays").status_code == 403


# ------------------------------------------------------------------------------------------ the node itself


def lab_config(tmp_path: Path, relays_file: Path) -> Any:
    """The lab's DSO node config with this relays file; `data_dir` -> the config with its stores there."""
    import time

    from peergrid_sim.closedloop import LabChains, LoopTiming, dso_node_config
    from peergrid_sim.scenario import load_scenario

    ieee33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
    chains = LabChains.create(tmp_path / "keys", "ieee33", ieee33)
    timing = LoopTiming(time.time(), 6.0, 36, 1, 200)
    return lambda data_dir: dso_node_config(chains, "lab", ("127.0.0.1", 1), data_dir, load_scenario(ieee33),
                                            relays_file, timing, tmp_path / "records")  # fmt: skip


def assembled(cfg: dict[str, Any]) -> Any:
    """What `DsoNode.assemble` makes of `cfg` (not run: no broker)."""
    from peergrid_dso.dso_node import DsoNode
    from peergrid_dso.loop_settings import IntervalNodeSettings

    Path(cfg["dso_chain"]["data_dir"]).parent.mkdir(exist_ok=True)

    async def build() -> Any:
        node = DsoNode.assemble(IntervalNodeSettings.model_validate(cfg))
        for store in node.stores:
            store.close()
        getattr(node.switching.executor.driver, "close", lambda: None)()
        return node

    return asyncio.run(build())


def test_the_node_starts_from_what_its_relays_report_or_says_why_not(lab, tmp_path: Path) -> None:
    from peergrid_dso.services.container import live_services

    sim, relays_file = lab
    first_life(relays_file)
    config = lab_config(tmp_path, relays_file)
    node = assembled(config(tmp_path / "one"))
    assert node.loop.live.open_set == OPTIMUM and node.loop.planner.open_set == OPTIMUM
    # every plan and adoption is recorded through the recorder that tells the relay watch (W1)
    assert node.switching.executor.recorder is node.recorder and node.recorder.watch is node.loop.watch
    assert node.switching.executor.alarms == [] and node.start.alarm is None
    (plan, body), (result, _) = node.loop.start_records
    assert plan == "switching_plan" and result == "switching_result"
    assert body["plan"].startswith("adopt-") and body["plan"].endswith(" at start")
    close_by_hand(sim, 37)  # a mesh in the field: not adopted
    node = assembled(config(tmp_path / "two"))
    assert node.loop.live.open_set == BASE and node.loop.start_records == []
    assert node.switching.executor.alarms == [node.start.alarm] and "is not radial" in node.start.alarm
    node.loop.live = SimpleNamespace(open_set=node.loop.live.open_set, injections={})
    assert live_services(node).alarms == [node.start.alarm]  # the console shows it (console.state)
    in_memory = config(tmp_path / "three") | {"relays_file": None}
    node = assembled(in_memory)  # relays in memory start where the feeder says: nothing to record
    assert node.loop.live.open_set == BASE and node.start.alarm is None and node.loop.start_records == []


# ------------------------------------------------------------------------------------------ R27-4


def test_the_rest_plan_adopts_where_a_rolled_back_plan_left_the_relays() -> None:
    """review27 R27-4: with auto-switching, POST /plans adopted the plan's end only when it succeeded; a
    plan rolled back after its first pair left the relays there while the DSO kept its old open set, and
    every later plan was refused. Now it adopts the result's topology whenever there is one."""
    from fastapi import FastAPI

    from peergrid_dso.routes.dso import install_dso_api
    from peergrid_dso.services.container import build_dso_services
    from peergrid_dso.services.switching import RelayError

    from .test_switching import FakeRelays

    pairs = plan_switching(case33bw(), BASE, OPTIMUM, plan_id="x").operations
    busy = pairs[2].branch  # the second pair's close

    class Busy(FakeRelays):
        def command(self, branch: int, close: bool) -> None:
            if branch == busy:
                raise RelayError("Modbus exception 6 (busy)")
            super().command(branch, close)

    relays = Busy({b: b not in BASE for b in range(1, 38)})
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services({"mg1": 18}, driver=relays, auto_switch=True)
    client = TestClient(app)
    answer = client.post("/api/dso/plans", json={"target_open": list(OPTIMUM)}).json()
    assert answer["status"] == "failed"
    first_pair = tuple(sorted((set(BASE) - {pairs[0].branch}) | {pairs[1].branch}))
    assert relays.open_set() == first_pair == app.state.dso.open_set  # the DSO holds where the relays are
    back = client.post("/api/dso/plans", json={"target_open": list(BASE)}).json()
    assert back["status"] == "done" and relays.open_set() == BASE  # before: refused, "branch ... reports"


def test_adopting_is_the_way_out_of_a_rollback_failed() -> None:
    """The first pair's open reports a failure although the relay moved; its undo goes, then the undo of the
    pair's close fails although that relay moved too: ROLLBACK FAILED, the DSO holding a meshed open set that
    no plan can start from ("the current topology is not radial") while the relays are radial again."""
    from peergrid_dso.services.switching import RelayError, SwitchingPlanError

    from .test_switching import Clock, FakeRelays

    pairs = plan_switching(case33bw(), BASE, OPTIMUM, plan_id="x").operations
    tie, branch = pairs[0].branch, pairs[1].branch
    lying = {(branch, False), (tie, False)}

    class Moves(FakeRelays):
        def branches(self) -> tuple[int, ...]:
            return tuple(sorted(self.closed))

        def command(self, b: int, close: bool) -> None:
            super().command(b, close)  # it moves, and may say it did not
            if (b, close) in lying:
                raise RelayError("no reply")

    relays = Moves({b: b not in BASE for b in range(1, 38)})
    chain, dso = dso_chain()
    clock = Clock()
    executor = SwitchingExecutor(
        relays, ChainRecorder(chain, dso), timeout_s=1.0, sleep=clock.sleep, clock=clock
    )
    service = SwitchingService(executor, auto=True)  # records each plan before it runs
    result = service.submit(plan_switching(case33bw(), BASE, OPTIMUM, plan_id="p"))
    assert result is not None
    assert "ROLLBACK FAILED" in (result.alarm or "") and result.final_open == tuple(sorted(set(BASE) - {tie}))
    assert relays.open_set() == BASE  # the field is radial again; the DSO's record is meshed
    with pytest.raises(SwitchingPlanError, match=r"the current topology .* is not radial"):
        plan_switching(case33bw(), result.final_open, OPTIMUM, plan_id="stuck")
    adoption = adopt(case33bw(), result.final_open, read_relays(relays))  # type: ignore[arg-type]
    assert adoption.open_set == BASE and adoption.changed == (tie,)
    lying.clear()
    again = service.submit(plan_switching(case33bw(), adoption.open_set, OPTIMUM, plan_id="again"))
    assert again is not None and again.ok and relays.open_set() == OPTIMUM

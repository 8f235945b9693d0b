"""The switching executor against firmware-sim relays over real Modbus TCP sockets (loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.switching import SwitchingExecutor, SwitchingService, plan_switching
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_sim.background import BackgroundSim
from peergrid_sim.scenario import Relay, Scenario

from .test_switching import BASE, OPTIMUM, dso_chain

RELAY_BRANCHES = (7, 9, 14, 32, 33, 34, 35, 36, 37)


class RunningSim(BackgroundSim):
    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, None)


@pytest.fixture
def relays() -> Iterator[tuple[RunningSim, ModbusRelayDriver]]:
    scenario = Scenario(
        name="dso-switching",
        relays=[
            Relay(name=f"s{b}", branch=b, closed=b not in BASE, tie=b >= 33, operate_delay_s=0.05)
            for b in RELAY_BRANCHES
        ],
    )
    with RunningSim(scenario) as sim:
        endpoints = {
            e["branch"]: RelayEndpoint(e["host"], e["port"], e["unit_id"])
            for e in sim.endpoints
            if e["kind"] == "relay"
        }
        driver = ModbusRelayDriver(endpoints, timeout_s=1.0)
        yield sim, driver
        driver.close()


def chain_steps(chain: LocalChain, plan_id: str) -> list[dict[str, Any]]:
    chain.seal()
    stored = query.switching_plan(chain.state, plan_id)
    assert stored is not None and stored["result"] is not None
    steps: list[dict[str, Any]] = stored["steps"]
    return steps


def relay_positions(sim: RunningSim) -> dict[int, bool]:
    return sim.call(lambda: {r.branch: r.mechanism.closed for r in sim.app.sim.relays.values()})


def test_plan_executed_on_relays_ends_in_planned_state(relays) -> None:
    sim, driver = relays
    chain, dso = dso_chain()
    service = SwitchingService(
        SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=3.0, poll_s=0.02), auto=True
    )
    plan = plan_switching(case33bw(), BASE, OPTIMUM, plan_id="lab-1")
    result = service.submit(plan)
    assert result is not None and result.ok, result
    positions = relay_positions(sim)
    assert {b for b, closed in positions.items() if not closed} == set(OPTIMUM)
    steps = chain_steps(chain, "lab-1")
    assert [(s["switch"], s["close"], s["ok"], s["rollback"]) for s in steps] == [
        (f"s{op.branch}", op.close, True, False) for op in plan.operations
    ]
    assert [s["status"] for s in steps] == ["closed" if op.close else "open" for op in plan.operations]
    assert all(s["at_ms"] > 0 for s in steps) and [s["step"] for s in steps] == list(range(len(steps)))


def test_relay_failing_mid_plan_rolls_back_and_raises_alarm(relays) -> None:
    sim, driver = relays
    plan = plan_switching(case33bw(), BASE, OPTIMUM, plan_id="lab-2")
    failing = plan.operations[3].branch
    sim.call(lambda: setattr(sim.app.sim.relays[f"s{failing}"].faults, "relay_fail", "no_operation"))
    chain, dso = dso_chain()
    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=2.0, poll_s=0.02)
    result = SwitchingService(executor, auto=True).submit(plan)
    assert result is not None and not result.ok
    assert executor.alarms and f"branch {failing}" in executor.alarms[0]
    positions = relay_positions(sim)
    assert tuple(sorted(b for b, closed in positions.items() if not closed)) == result.final_open
    assert len(result.final_open) == 5  # radial again: one pair done, the unfinished one undone
    # Every executed step is its own DSO-chain record: the failed one with what the relay read back,
    # then the rollback of the unfinished pair.
    steps = chain_steps(chain, "lab-2")
    done = [(f"s{op.branch}", op.close) for op in plan.operations[:4]]
    assert [(s["switch"], s["close"]) for s in steps[:4]] == done
    assert [s["ok"] for s in steps[:4]] == [True, True, True, False]
    assert steps[3]["status"] == ("open" if plan.operations[3].close else "closed")  # stuck where it was
    assert steps[3]["detail"] == "relay reports the operation failed"
    undo = plan.operations[2]
    assert [(s["switch"], s["close"], s["ok"], s["rollback"]) for s in steps[4:]] == [
        (f"s{undo.branch}", not undo.close, True, True)
    ]


def test_interlocked_relay_refuses_the_plan(relays) -> None:
    sim, driver = relays
    sim.call(lambda: setattr(sim.app.sim.relays["s9"].mechanism, "interlock", True))
    chain, dso = dso_chain()
    executor = SwitchingExecutor(driver, ChainRecorder(chain, dso), timeout_s=2.0, poll_s=0.02)
    result = SwitchingService(executor, auto=True).submit(
        plan_switching(case33bw(), BASE, OPTIMUM, plan_id="lab-3")
    )
    assert result is not None and not result.ok and "branch 9 interlocked" in (result.alarm or "")
    assert sim.call(lambda: sum(r.mechanism.operations for r in sim.app.sim.relays.values())) == 0

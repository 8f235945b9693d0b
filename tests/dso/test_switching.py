"""Switching plans (make-before-break, checked states) and the executor's read-back, refusal and rollback."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.powerflow import closed_mask, energised_buses, is_radial
from peergrid_dso.services.switching import (
    RelayError,
    RelayStatus,
    SwitchingExecutor,
    SwitchingPlanError,
    SwitchingService,
    plan_switching,
)
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

BASE = (33, 34, 35, 36, 37)
OPTIMUM = (7, 9, 14, 32, 37)


@dataclass
class FakeRelays:
    closed: dict[int, bool]
    locked: set[int] = field(default_factory=set)
    interlocked: set[int] = field(default_factory=set)
    stuck: set[int] = field(default_factory=set)  # accept the command, never move
    slow: set[int] = field(default_factory=set)  # the first command leaves them "operating" until the next
    operated: list[tuple[int, bool]] = field(default_factory=list)

    def status(self, branch: int) -> RelayStatus:
        moving = branch in self.slow and sum(b == branch for b, _ in self.operated) == 1
        return RelayStatus(
            None if moving else self.closed[branch], branch in self.locked, branch in self.interlocked
        )

    def command(self, branch: int, close: bool) -> None:
        if branch in self.locked or branch in self.interlocked:
            raise RelayError("Modbus exception 4 (device refused)")
        self.operated.append((branch, close))
        if branch not in self.stuck:
            self.closed[branch] = close

    def open_set(self) -> tuple[int, ...]:
        return tuple(sorted(b for b, c in self.closed.items() if not c))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def dso_chain() -> tuple[LocalChain, Keypair]:
    authority, dso = Keypair.generate(), Keypair.generate()
    genesis = Genesis(
        chain="dso-test", time=0, authorities=(authority.public,), accounts=(Account(dso.public, ("dso",), "dso"),),
        params=Params(),
    )  # fmt: skip
    return LocalChain(genesis, sealer=authority), dso


def executor(relays: FakeRelays) -> tuple[SwitchingExecutor, LocalChain]:
    chain, dso = dso_chain()
    clock = Clock()
    return SwitchingExecutor(
        relays, ChainRecorder(chain, dso), timeout_s=1.0, sleep=clock.sleep, clock=clock
    ), chain


def relays_for(feeder, open_set) -> FakeRelays:
    return FakeRelays({b.number: b.number not in open_set for b in feeder.branches})


def test_plan_is_make_before_break_and_ends_radial() -> None:
    feeder = case33bw()
    plan = plan_switching(feeder, BASE, OPTIMUM, plan_id="p1")
    state = set(BASE)
    for k, op in enumerate(plan.operations):
        assert op.close == (k % 2 == 0)  # close first, then open
        state = state - {op.branch} if op.close else state | {op.branch}
        assert energised_buses(feeder, closed_mask(feeder, state)).all()  # no bus ever de-energised
        if not op.close:
            assert is_radial(feeder, closed_mask(feeder, state))
    assert tuple(sorted(state)) == OPTIMUM


def test_plan_refuses_unsafe_or_meshed_targets() -> None:
    feeder = case33bw()
    with pytest.raises(SwitchingPlanError, match="not radial"):
        plan_switching(feeder, BASE, (7, 9, 14, 32), plan_id="p")
    with pytest.raises(SwitchingPlanError, match="no safe"):
        plan_switching(feeder, BASE, OPTIMUM, plan_id="p", vmin_pu=0.95)


def test_executor_reaches_plan_and_records_it_on_the_dso_chain() -> None:
    feeder = case33bw()
    relays = relays_for(feeder, BASE)
    ex, chain = executor(relays)
    service = SwitchingService(ex, auto=False)
    plan = plan_switching(feeder, BASE, OPTIMUM, plan_id="p1", interval=3)
    assert service.submit(plan) is None  # waits for the operator
    assert relays.operated == []
    result = service.approve("p1")
    assert result.ok and result.final_open == OPTIMUM == relays.open_set()
    recorded = query.switching_plan(chain.view, "p1")
    assert recorded is not None and recorded["result"] is not None
    assert all(r["ok"] for r in recorded["result"]["results"])
    with pytest.raises(KeyError):
        service.approve("p1")


def test_locked_out_or_interlocked_relays_are_never_operated() -> None:
    feeder = case33bw()
    relays = relays_for(feeder, BASE)
    relays.locked.add(7)
    relays.interlocked.add(35)
    ex, _ = executor(relays)
    result = SwitchingService(ex, auto=True).submit(plan_switching(feeder, BASE, OPTIMUM, plan_id="p2"))
    assert result is not None and not result.ok
    assert "branch 7 locked out" in (result.alarm or "") and "branch 35 interlocked" in (result.alarm or "")
    assert relays.operated == []
    assert ex.alarms


def test_stuck_relay_times_out_and_rolls_back_to_last_safe_topology() -> None:
    feeder = case33bw()
    plan = plan_switching(feeder, BASE, OPTIMUM, plan_id="p3")
    second_open = plan.operations[3].branch  # the opening of the second pair
    relays = relays_for(feeder, BASE)
    relays.stuck.add(second_open)
    ex, chain = executor(relays)
    result = SwitchingService(ex, auto=True).submit(plan)
    assert result is not None and not result.ok and "timeout" in (result.alarm or "")
    first_pair = {plan.operations[0].branch, plan.operations[1].branch}
    expected = tuple(sorted((set(BASE) - first_pair) | (first_pair & set(OPTIMUM))))
    assert relays.open_set() == result.final_open == expected
    assert is_radial(feeder, closed_mask(feeder, relays.open_set()))
    assert result.steps[-1].rollback
    recorded = query.switching_plan(chain.view, "p3")
    assert recorded is not None and not all(r["ok"] for r in recorded["result"]["results"])


def test_a_relay_still_moving_at_the_timeout_is_commanded_back() -> None:
    feeder = case33bw()
    plan = plan_switching(feeder, BASE, OPTIMUM, plan_id="p5")
    first = plan.operations[0]  # closing a tie: if it closed late, the network would stay meshed
    relays = relays_for(feeder, BASE)
    relays.slow.add(first.branch)
    ex, chain = executor(relays)
    result = SwitchingService(ex, auto=True).submit(plan)
    assert result is not None and not result.ok and "rolled back" in (result.alarm or "")
    assert [(s.branch, s.close, s.ok, s.rollback, s.status) for s in result.steps] == [
        (first.branch, True, False, False, "operating"),
        (first.branch, False, True, True, "open"),
    ]
    assert relays.open_set() == result.final_open == BASE
    recorded = query.switching_plan(chain.view, "p5")
    assert recorded is not None and [s["status"] for s in recorded["steps"]] == ["operating", "open"]


def test_modbus_driver_reports_unreachable_relay_as_relay_error() -> None:
    import socket

    from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint

    # a port nobody listens on by construction: bound here and held without listen(), so no other process
    # can take it while the driver tries (a port closed again before the attempt could be)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        driver = ModbusRelayDriver({7: RelayEndpoint("127.0.0.1", port)}, timeout_s=0.2)
        with pytest.raises(RelayError, match="cannot connect"):
            driver.status(7)
    with pytest.raises(RelayError, match="no relay configured for branch 9"):
        driver.command(9, True)


def test_pre_step_check_stops_a_plan_whose_network_changed() -> None:
    from peergrid_dso.services.powerflow import net_injection_mw
    from peergrid_dso.services.switching import check_state

    feeder = case33bw()
    plan = plan_switching(feeder, BASE, OPTIMUM, plan_id="p4")
    relays = relays_for(feeder, BASE)
    ex, _ = executor(relays)
    p, q = net_injection_mw(feeder)
    heavier = p * 1.6, q * 1.6  # load grew since the plan was made
    ex.step_check = lambda open_after: check_state(feeder, open_after, *heavier, 0.90)
    result = SwitchingService(ex, auto=True).submit(plan)
    assert result is not None and not result.ok and "pre-step check refused" in (result.alarm or "")
    assert relays.open_set() == result.final_open
    assert is_radial(feeder, closed_mask(feeder, relays.open_set()))

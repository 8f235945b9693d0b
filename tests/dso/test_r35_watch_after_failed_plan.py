"""R35: against an open set a plan set, the relay watch takes every relay to agree (41d3243). A plan whose
rollback failed leaves the DSO holding an open set its relays do not report, and its own records on the DSO
chain say so (a failed step, a failed rollback): the watch then records 'every relay reads as the DSO holds it'
at once, from a check whose two reads both found a relay off."""

from __future__ import annotations

from peergrid_dso.services.switching import (
    RelayError,
    RelayOperation,
    SwitchingExecutor,
    SwitchingPlan,
)

from .test_h5_relay_watch import check
from .test_h9_relay_watch_unsettled import watched
from .test_switching import BASE, Clock


class NoRecorder:
    def plan(self, plan: object) -> None: ...

    def step(self, plan: object, index: int, step: object) -> None: ...

    def result(self, plan: object, steps: object) -> None: ...


def test_a_plan_whose_rollback_failed_is_not_followed_by_a_record_that_every_relay_agrees() -> None:
    relays, topology, chain, watch = watched()
    relays.silent.add(5)  # relay 5 silent in both reads: recorded against BASE
    check(watch, topology)
    assert chain.actions == ["relay watch, not adopted: s5 unreadable"]
    relays.silent.clear()  # relay 5 answers again; the next interval's plan reads every relay: all agree

    # the plan BASE -> (7, 33, 34, 35, 36): close tie 37, then open 7. Relay 7 takes the open command, is
    # still moving at the timeout, and refuses the rollback's close: ROLLBACK FAILED, the DSO holds 7 closed
    stuck = relays.relays
    real_command = relays.command

    def command(branch: int, close: bool) -> None:
        if branch == 7 and not close:
            relays.commands += 1
            stuck.closed[7] = None  # type: ignore[assignment]  # operating: the contacts in travel
            return
        if branch == 7:
            raise RelayError("Modbus exception 6 (device busy)")
        real_command(branch, close)

    relays.command = command  # type: ignore[method-assign]
    clock = Clock()
    executor = SwitchingExecutor(
        relays, NoRecorder(), timeout_s=1.0, poll_s=0.5, sleep=clock.sleep, clock=clock
    )
    plan = SwitchingPlan(
        "p1", 1, BASE, (7, 33, 34, 35, 36), (RelayOperation(37, True), RelayOperation(7, False))
    )
    result = executor.execute(plan)
    assert not result.ok and "ROLLBACK FAILED at branch 7" in (result.alarm or "")
    topology.open_set = result.final_open  # as interval_node.switch and the console do
    assert result.final_open == (33, 34, 35, 36)  # 7 held closed; it reads operating

    # the check after the interval: 7 reads operating, then (its travel ended) open - off in both reads
    relays.hands = [lambda: None, lambda: stuck.closed.__setitem__(7, False)]
    check(watch, topology)
    assert watch.alarm is not None and "branch 7 reports open" in watch.alarm
    # the chain must not say every relay agrees (41d3243 records it at once; before it: nothing recorded)
    assert not any(a.startswith("relay watch: every relay reads as") for a in chain.actions), chain.actions
    # the next check reads 7 open again: read twice running, it is recorded
    check(watch, topology)
    assert chain.actions[1:] == ["relay watch, not adopted: s7 open (held closed)"]

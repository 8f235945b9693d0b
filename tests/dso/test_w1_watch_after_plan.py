"""W1 (session 21): after a plan, a relay that goes off again the way the relay watch's last record said is
recorded again.

The watch records a change once: a finding whose relays and reports equal its last record's is not recorded.
But a plan that ran since (it reads every relay first and refuses on any disagreement) or an adoption left
the DSO chain's last word on the relays its own: every relay where it started or took them. Before, `check`
compared the finding with the watch's own record alone, so tie 36 recorded closed, put right, a plan, then 36
stuck closed again: the alarm named 36 while the chain's last word (the plan's) said every relay agreed, and
nothing reached the chain. Against the plan's new open set (BASE -> OTHER) and back where the record was
judged (BASE -> OTHER -> BASE, two plans between checks: an operator's and the loop's). Real
`SwitchingExecutor` and `ChainRecorder` over one `LocalChain` with the watch's records; relays in memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.switching import RelayError, RelayOperation, SwitchingExecutor, SwitchingPlan
from peergrid_dso.services.switching_adopt import adopt, adoption_id, adoption_records, read_relays
from peergrid_dso.services.switching_watch import RecorderTellingWatch, RelayWatch

from .test_h5_relay_watch import check
from .test_h9_relay_watch_unsettled import Moving
from .test_switching import BASE, Clock, dso_chain

OTHER = (7, 33, 34, 35, 36)  # tie 37 closed, 7 open: 36 is held open here too
CLOSED_36 = "relay watch, not adopted: s36 closed (held open)"


@dataclass
class Words:
    """The DSO chain, each record sealed into its block, and what it was told in order: the watch's actions
    and each switching record's kind and plan."""

    said: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.chain, self.dso = dso_chain()

    def sign_and_submit(self, key: Any, kind: str, body: dict[str, Any]) -> Any:
        result = self.chain.sign_and_submit(key, kind, body)
        self.chain.seal()
        assert result.ok, result
        self.said.append(body["action"] if kind == "operator_action" else f"{kind} {body['plan']}")
        return result

    async def submit(self, kind: str, body: dict[str, Any]) -> Any:  # the watch's (ChainAdapter.submit)
        return self.sign_and_submit(self.dso, kind, body)

    def last_word(self) -> str:
        """The chain's last record about the relays: a watch action, or a plan's result."""
        return next(w for w in reversed(self.said) if not w.startswith(("switching_plan", "switching_step")))


def node(told: bool = True) -> tuple[Moving, SimpleNamespace, Words, RelayWatch, SwitchingExecutor]:
    """Relays in memory at BASE, the watch and the executor on one DSO chain; `told`: the executor's
    recorder tells the watch of each plan, as the DSO node wires it (`RecorderTellingWatch`)."""
    relays = Moving(InMemoryRelays({b: b not in BASE for b in range(1, 38)}))
    topology, words = SimpleNamespace(open_set=BASE), Words()
    watch = RelayWatch(relays, threading.RLock(), words.submit)
    recorder: Any = ChainRecorder(words, words.dso)
    if told:
        recorder = RecorderTellingWatch(recorder, watch)
    clock = Clock()
    executor = SwitchingExecutor(relays, recorder, timeout_s=1.0, poll_s=0.5, sleep=clock.sleep, clock=clock)
    return relays, topology, words, watch, executor


def switch(executor: SwitchingExecutor, topology: Any, plan_id: str, to_open: tuple[int, ...]) -> bool:
    """A plan from the DSO's open set to `to_open` (one tie closed, then a branch opened), recorded and run
    as the interval loop and the console do; the DSO then holds where it ended."""
    start = tuple(sorted(topology.open_set))
    close, opened = set(start) - set(to_open), set(to_open) - set(start)
    ops = (RelayOperation(close.pop(), True), RelayOperation(opened.pop(), False))
    plan = SwitchingPlan(plan_id, 1, start, to_open, ops)
    executor.recorder.plan(plan)
    result = executor.execute(plan)
    topology.open_set = result.final_open
    return result.ok


def tie_36_recorded_closed_then_put_right(
    relays: Moving, topology: Any, words: Words, watch: RelayWatch
) -> None:
    relays.relays.closed[36] = True  # closed by hand between plans
    check(watch, topology)
    assert words.said == [CLOSED_36]
    relays.relays.closed[36] = False  # put right; the next plan runs before the watch reads again


def test_after_a_plan_to_another_open_set_a_tie_closed_again_is_recorded_again() -> None:
    relays, topology, words, watch, executor = node(told=False)  # (as the R35 test: no word from the plan)
    tie_36_recorded_closed_then_put_right(relays, topology, words, watch)
    assert switch(executor, topology, "p1", OTHER)  # read every relay first: all agree
    assert words.last_word() == "switching_result p1"
    relays.relays.closed[36] = True  # sticks closed again
    check(watch, topology)
    assert watch.alarm is not None and "branch 36 reports closed, the DSO holds it open" in watch.alarm
    # before: nothing recorded, the chain's last word the plan's (every relay agreed) while 36 was closed
    assert words.last_word() == CLOSED_36, words.said
    check(watch, topology)
    assert words.said.count(CLOSED_36) == 2  # once per change, not per interval


def test_after_two_plans_back_to_the_open_set_the_record_was_judged_on_it_is_recorded_again() -> None:
    relays, topology, words, watch, executor = node()
    tie_36_recorded_closed_then_put_right(relays, topology, words, watch)
    assert switch(executor, topology, "p1", OTHER)  # an operator's plan, then the loop's back, one interval
    assert switch(executor, topology, "p2", BASE)
    relays.relays.closed[36] = True
    check(watch, topology)
    assert watch.alarm is not None and "branch 36 reports closed" in watch.alarm
    assert words.last_word() == CLOSED_36, words.said  # before: still "switching_result p2"
    check(watch, topology)
    assert words.said.count(CLOSED_36) == 2 and relays.commands == 4  # the plans' commands only


def test_a_read_from_before_the_plans_does_not_count_as_read_twice_with_one_after_them() -> None:
    relays, topology, words, watch, executor = node()
    tie_36_recorded_closed_then_put_right(relays, topology, words, watch)  # (read closed twice)
    assert switch(executor, topology, "p1", OTHER) and switch(executor, topology, "p2", BASE)
    relays.hands = [relays.put((), (5,)), relays.put((36,))]  # 36 closed at the later read only
    check(watch, topology)
    assert watch.alarm is not None and "branch 36 reports closed" in watch.alarm
    # the plans read 36 open between the last check's reads and this one: not read twice running
    assert words.last_word() == "switching_result p2", words.said
    check(watch, topology)
    assert words.last_word() == CLOSED_36, words.said


def test_a_refused_plan_does_not_make_the_watch_record_its_finding_again() -> None:
    relays, topology, words, watch, executor = node()
    relays.relays.closed[36] = True
    check(watch, topology)
    for plan_id in ("p1", "p2", "p3"):  # the loop's plan each interval, refused: 36 reports closed
        assert not switch(executor, topology, plan_id, OTHER)
        assert topology.open_set == BASE
        check(watch, topology)
    assert words.said.count(CLOSED_36) == 1  # its records say why it was refused: the watch's record stands


def test_after_an_adoption_of_the_same_open_set_a_tie_closed_again_is_recorded_again() -> None:
    relays, topology, words, watch, executor = node()
    tie_36_recorded_closed_then_put_right(relays, topology, words, watch)
    reading = read_relays(relays)  # an operator reads the relays and adopts them (the console's path)
    assert reading is not None
    adoption = adopt(case33bw({}), BASE, reading)
    assert adoption.open_set == BASE
    for kind, body in adoption_records(adoption, adoption_id(0.0, "by op"), 1):
        executor.recorder.submit(kind, body)
    relays.relays.closed[36] = True
    check(watch, topology)
    assert words.last_word() == CLOSED_36, words.said


def test_told_of_a_plan_whose_rollback_failed_the_watch_records_no_agreement_from_one_read() -> None:
    # R35's case (tests/dso/test_r35_watch_after_failed_plan.py) with the plan telling the watch: relay 7
    # takes the open command, is still moving at the timeout and refuses the rollback's close
    relays, topology, words, watch, executor = node()
    relays.silent.add(5)
    check(watch, topology)
    assert words.said == ["relay watch, not adopted: s5 unreadable"]
    relays.silent.clear()
    real_command = relays.command

    def command(branch: int, close: bool) -> None:
        if branch == 7 and not close:
            relays.relays.closed[7] = None  # type: ignore[assignment]  # operating: the contacts in travel
            return
        if branch == 7:
            raise RelayError("Modbus exception 6 (device busy)")
        real_command(branch, close)

    relays.command = command  # type: ignore[method-assign]
    assert not switch(executor, topology, "p1", OTHER)
    assert topology.open_set == (33, 34, 35, 36)  # 7 held closed; it reads operating
    relays.hands = [lambda: None, lambda: relays.relays.closed.__setitem__(7, False)]
    check(watch, topology)
    assert watch.alarm is not None and "branch 7 reports open" in watch.alarm
    assert words.last_word() == "switching_result p1", words.said  # read open once: nothing recorded
    check(watch, topology)
    assert words.last_word() == "relay watch, not adopted: s7 open (held closed)"


def test_the_telling_recorder_copies_without_recursing_and_passes_the_rest_on() -> None:
    # R36-4: copy and pickle ask a new instance, whose fields are not set, for dunders: without the guard its
    # __getattr__ asked the recorder it did not have yet, without end
    import copy

    inner = SimpleNamespace(plan=lambda plan: ("planned", plan))
    telling = RecorderTellingWatch(inner, SimpleNamespace())  # type: ignore[arg-type]
    assert copy.copy(telling).recorder is inner
    assert telling.plan("p1") == ("planned", "p1")  # anything not its own: the recorder's

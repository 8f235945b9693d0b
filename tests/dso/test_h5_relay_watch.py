"""H5 (session 18): the DSO node reads every relay after each interval, a plan or none (`RelayWatch`).

Before, between plans the DSO read no relay: a tie closed by hand or a relay that dropped out was found only
when the next plan was refused. Now each interval's read is judged against the open set the DSO holds: a
relay that reports another position or cannot be read raises an alarm naming it and what it reports
(`EmbeddedLoop.relay_alarm`, for `/api/health`), recorded on the DSO chain once per change (an
`operator_action` by the node), never every interval, and never adopted (the open set stays the DSO's; no
relay is commanded). Against relays in memory, the interval loop itself (`DsoLoop.run`), and firmware-sim
relays over Modbus TCP (a tie closed by hand, a relay that stops answering).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.live import EmbeddedLoop
from peergrid_dso.services.switching import RelayError, RelayStatus
from peergrid_dso.services.switching_watch import ACTION_CHARS, RelayWatch, WatchFinding

from .test_r25_relay_positions import RELAY_BRANCHES, close_by_hand, operations
from .test_r25_relay_positions import lab as lab  # a fixture: firmware-sim relays and the node's driver
from .test_switching import BASE, dso_chain


@dataclass
class Field:
    """Relays in memory with a hand on them: a relay that stops answering; commands counted (none expected)."""

    relays: InMemoryRelays
    silent: set[int] = field(default_factory=set)
    commands: int = 0

    def branches(self) -> tuple[int, ...]:
        return self.relays.branches()

    def status(self, branch: int) -> RelayStatus:
        if branch in self.silent:
            raise RelayError(f"read_discrete_inputs to 10.0.0.{branch}:502: no response")
        return self.relays.status(branch)

    def command(self, branch: int, close: bool) -> None:
        self.commands += 1
        self.relays.command(branch, close)


class Chain:
    """The DSO chain behind `ChainAdapter.submit`: a LocalChain, each record sealed into its block."""

    def __init__(self) -> None:
        self.chain, self.dso = dso_chain()
        self.actions: list[str] = []

    async def submit(self, kind: str, body: dict[str, Any]) -> Any:
        assert kind == "operator_action" and body["operator"] == "dso-node" and body["txs"] == []
        result = self.chain.sign_and_submit(self.dso, kind, body)
        self.chain.seal()
        assert result.ok, result
        self.actions.append(body["action"])
        return result


def watched() -> tuple[Field, SimpleNamespace, Chain, RelayWatch]:
    relays = Field(InMemoryRelays({b: b not in BASE for b in range(1, 38)}))
    topology, chain = SimpleNamespace(open_set=BASE), Chain()
    return relays, topology, chain, RelayWatch(relays, threading.RLock(), chain.submit)


def check(watch: RelayWatch, topology: Any) -> WatchFinding | None:
    return asyncio.run(asyncio.wait_for(watch.check(topology), 10))


def test_a_tie_closed_by_hand_and_a_silent_relay_alarm_and_are_recorded_once_per_change() -> None:
    relays, topology, chain, watch = watched()
    assert not check(watch, topology).standing  # type: ignore[union-attr]
    assert watch.alarm is None and chain.actions == []  # every relay agrees: nothing to record
    relays.relays.closed[37] = True  # a tie closed by hand between plans
    for _ in range(3):
        check(watch, topology)
    assert watch.alarm is not None and watch.alarm.startswith(
        "relays read between plans: branch 37 reports closed, the DSO holds it open; the DSO holds open "
        "[33, 34, 35, 36, 37] and adopts nothing"
    )
    assert chain.actions == ["relay watch, not adopted: s37 closed (held open)"]  # once, not per interval
    relays.silent.add(5)  # a relay that dropped out
    check(watch, topology)
    check(watch, topology)
    assert "branch 5 unreachable (read_discrete_inputs to 10.0.0.5:502: no response)" in watch.alarm
    assert chain.actions[1:] == ["relay watch, not adopted: s37 closed (held open), s5 unreadable"]
    relays.relays.closed[37] = False  # the field put right
    relays.silent.clear()
    check(watch, topology)
    check(watch, topology)
    assert watch.alarm is None
    assert chain.actions[2:] == [
        "relay watch: every relay reads as the DSO holds it (open [33, 34, 35, 36, 37])"
    ]
    assert topology.open_set == BASE and relays.commands == 0  # never adopted, nothing commanded


def test_the_finding_follows_the_open_set_the_dso_holds() -> None:
    relays, topology, chain, watch = watched()
    relays.relays.closed.update({37: True, 7: False})  # a plan's end the DSO has not taken (yet)
    check(watch, topology)
    assert watch.finding is not None and watch.finding.off == ((7, "open"), (37, "closed"))
    assert watch.alarm is not None
    topology.open_set = (7, 33, 34, 35, 36)  # an operator adopts what the relays report
    assert watch.alarm is None  # at once: /api/health need not wait for the next interval's read
    assert len(chain.actions) == 1
    check(watch, topology)
    assert watch.alarm is None and len(chain.actions) == 2
    assert chain.actions[-1].startswith("relay watch: every relay reads as the DSO holds it (open [7, 33")


def test_a_change_seen_once_is_read_again_before_it_counts() -> None:
    # a writer that moved the relays (a plan: close 37, open 7) and sets the DSO's open set after it, outside
    # the lock (routes/dso.py's REST approve), is seen between its two steps once: the read again finds the
    # relays where the DSO now holds them, and nothing is recorded or alarmed
    relays, _, chain, watch = watched()
    relays.relays.closed.update({37: True, 7: False})

    class Racing:
        reads = 0

        @property
        def open_set(self) -> tuple[int, ...]:
            self.reads += 1
            return BASE if self.reads == 1 else (7, 33, 34, 35, 36)

    topology = Racing()
    check(watch, topology)
    assert topology.reads == 2 and chain.actions == [] and watch.alarm is None


def test_a_long_finding_is_recorded_within_the_chains_128_characters() -> None:
    finding = WatchFinding(BASE, tuple((b, "open") for b in range(1, 33)), ((33, "x"), (34, "y")))
    action = finding.action()
    assert len(action) <= ACTION_CHARS and action.startswith(
        "relay watch, not adopted: s1 open (held closed)"
    )
    assert action.endswith(" more")


def test_a_record_whose_submit_raised_is_sent_at_the_next_check() -> None:
    relays, topology, chain, watch = watched()
    submit = watch.submit

    async def broken(kind: str, body: dict[str, Any]) -> Any:
        raise RuntimeError("the adapter broke")

    watch.submit = broken
    relays.relays.closed[37] = True
    check(watch, topology)
    assert watch.alarm is not None and chain.actions == []  # the alarm stands all the same
    watch.submit = submit
    check(watch, topology)
    check(watch, topology)
    assert chain.actions == ["relay watch, not adopted: s37 closed (held open)"]


def test_the_interval_loop_reads_every_relay_after_each_interval_a_plan_or_none() -> None:
    relays, topology, chain, watch = watched()
    settings = SimpleNamespace(tariff_file=None, mgs={}, first_interval=10, intervals=3)
    loop = DsoLoop(settings, None, None, None, None, None, None, None, chain.dso, topology, watch.lock,  # type: ignore[arg-type]
                   watch=watch)  # fmt: skip
    seen: list[tuple[int, Any]] = []

    async def no_plan(t: int) -> None:  # an interval that needs no switching (as most do)
        seen.append((t, watch.alarm))
        if t == 11:
            relays.relays.closed[36] = True

    loop.interval = no_plan  # type: ignore[method-assign]
    asyncio.run(asyncio.wait_for(loop.run(asyncio.Event()), 20))
    assert [t for t, _ in seen] == [10, 11, 12]
    assert seen[2][1] is not None and "branch 36 reports closed" in seen[2][1]  # found after interval 11
    assert chain.actions == ["relay watch, not adopted: s36 closed (held open)"]
    embedded = object.__new__(EmbeddedLoop)
    embedded.node = SimpleNamespace(loop=loop)
    assert embedded.relay_alarm == watch.alarm  # what /api/health's loop section carries
    embedded.node = None
    assert embedded.relay_alarm is None


def test_firmware_sim_relays_a_tie_closed_by_hand_and_a_relay_that_stops_answering(lab) -> None:
    sim, driver = lab
    driver.timeout_s = 0.3  # (the node's is 1 s) a relay that stops answering costs it, twice: read again
    topology, chain = SimpleNamespace(open_set=BASE), Chain()
    watch = RelayWatch(driver, threading.RLock(), chain.submit)
    check(watch, topology)
    assert watch.alarm is None and watch.finding is not None
    assert sorted(b for b, _ in watch.finding.off) == [] and chain.actions == []
    close_by_hand(sim, 37)
    sim.call(lambda: setattr(sim.app.sim.relays["s9"].faults, "no_response", True))
    check(watch, topology)
    assert watch.finding is not None and watch.finding.off == ((37, "closed"),)
    assert [b for b, _ in watch.finding.unreadable] == [9]
    assert chain.actions == ["relay watch, not adopted: s37 closed (held open), s9 unreadable"]
    assert operations(sim) == 0 and topology.open_set == BASE
    assert tuple(driver.branches()) == RELAY_BRANCHES

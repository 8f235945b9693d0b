"""D8: a DSO node back after an outage records the intervals already over as missed and acts on none of them.

D7 made a restarted node resume after its last recorded interval, but an interval that ended while it was down
was still analysed on its return, and could get contracts and switching for a time already past (a pilot's node
down an hour: four intervals). Here D7's loop on a LevelDB DSO chain (its `Lab`) runs with an injected wall
clock and market clock (interval t ends at 10 t + 10 s): stopped after 12, started again when 13 and 14 are
over and 15 running. No timing thresholds: the clock only moves when the test moves it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso import interval_missed
from peergrid_dso.interval_node import DsoLoop
from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts.market_clock import CLOCK_KEY
from peergrid_ledger.state import read_obj

from .test_d7_resume import Lab, run


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """D7's lab: a DSO chain in a LevelDB store, two MGMCs' injections for 10-15, relays in memory."""
    bed = Lab(tmp_path)
    yield bed
    bed.store.close()


def ends_at(t: int) -> float:
    return 10.0 * t + 10.0


def clocked(loop: DsoLoop, now: list[float], verdicts: list[dict[str, Any]] | None = None) -> list[int]:
    """`loop` on the test's clocks; the intervals it works on (analyses), in order; `verdicts`: what it
    publishes."""
    loop.clock, loop.ends_at = (lambda: now[0]), ends_at
    if verdicts is not None:
        loop.publish = verdicts.append  # type: ignore[method-assign]
    worked: list[int] = []
    work = loop.interval

    async def interval(t: int) -> None:
        worked.append(t)
        await work(t)

    loop.interval = interval  # type: ignore[method-assign]
    return worked


def test_intervals_over_while_the_node_was_down_are_recorded_missed_and_not_acted_on(
    lab: Lab, caplog: Any
) -> None:
    now = [105.0]  # interval 10 running
    first = lab.node()
    worked = clocked(first, now)
    assert run(first, stop_after=12) == [10, 11, 12] == worked  # on time: none missed
    lab.restart()
    now[0] = 153.0  # 13 and 14 over, 15 running since 150
    again = lab.node()
    verdicts: list[dict[str, Any]] = []
    worked = clocked(again, now, verdicts)
    switched: list[int] = []
    switch = again.switch

    def switching(t: int, *args: Any) -> Any:
        switched.append(t)
        return switch(t, *args)

    again.switch = switching  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert run(again) == [13, 14, 15]  # every interval recorded once: resume reads missed as finished
    assert worked == [15] == switched  # 13 and 14 never analysed nor switched
    records = [json.loads(line) for line in lab.records.read_text().splitlines()]
    assert [r["interval"] for r in records] == [10, 11, 12, 13, 14, 15]
    for r, ended in zip(records[3:5], (140.0, 150.0), strict=True):
        assert r == {"interval": r["interval"], "missed": interval_missed.DOWN, "ended": ended, "noticed": 153.0,
                     "adjustments": [], "plan": None}  # fmt: skip
    assert "missed" not in records[5] and records[5]["secure"] and records[5]["plan"] is None  # none needed
    final = [v for v in verdicts if v["final"]]  # the MGMCs start 15 once 14's final verdict is out
    assert [(v["interval"], v.get("missed"), v["secure"]) for v in final] == [
        (13, interval_missed.DOWN, None), (14, interval_missed.DOWN, None), (15, None, True)
    ]  # fmt: skip
    for t in (13, 14):  # nothing of the DSO's for them on the chain
        for node, _ in lab.mgs.values():
            assert read_obj(lab.chain.state, ks.adjustment_index(node.public, t)) is None
        assert query.switching_plan(lab.chain.state, f"interval-{t}") is None
    said = [m for m in caplog.messages if "missed" in m]
    assert said == [
        f"intervals 13-14 missed, over before the DSO worked on them ({interval_missed.DOWN}): no contract, "
        "no switching; going on with interval 15"
    ]


def test_an_interval_over_while_the_node_worked_on_the_one_before_is_caught_up_not_missed(lab: Lab) -> None:
    """A node that fell behind while running acts on every interval, late, as the MGMCs do (they wait for its
    verdict on the interval before theirs, so they trade in step with it): only an outage's intervals are missed.
    Before the lead's change a loaded node skipped 12 as 'late'."""
    now = [105.0]
    loop = lab.node()
    worked = clocked(loop, now)
    work = loop.interval

    async def slow(t: int) -> None:
        await work(t)
        if t == 11:
            now[0] = 131.0  # 11 took until 12 was over and 13 running

    loop.interval = slow  # type: ignore[method-assign]
    assert run(loop) == [10, 11, 12, 13, 14, 15]
    assert worked == [10, 11, 12, 13, 14, 15]
    records = {r["interval"]: r for r in map(json.loads, lab.records.read_text().splitlines())}
    assert not any("missed" in r for r in records.values())


def test_without_a_market_clock_every_interval_is_acted_on_as_before(lab: Lab) -> None:
    assert run(lab.node(), stop_after=12) == [10, 11, 12]
    lab.restart()
    again = lab.node()
    assert again.ends_at is None  # the test's settings: no disputes, no MGMC chain
    again.clock = lambda: 1e12  # long after every interval: no clock to say so
    assert run(again) == [13, 14, 15]
    assert not any("missed" in json.loads(line) for line in lab.records.read_text().splitlines())


def test_the_loops_market_clock_is_the_mgmc_chains_posted_one() -> None:
    assert (
        interval_missed.loop_clock(None) is None
    )  # no MGMC chain followed: no clock, every interval acted on
    state: dict[bytes, bytes] = {}
    params = SimpleNamespace(
        settle_interval_ms=8000, settle_epoch_ms=0
    )  # a genesis' provisional epoch: not read
    replica = SimpleNamespace(
        app=SimpleNamespace(state=state), store=SimpleNamespace(genesis=SimpleNamespace(params=params))
    )
    clock = interval_missed.loop_clock(
        SimpleNamespace(node=SimpleNamespace(replicas={"mgmc": replica}), chain="mgmc")
    )
    assert clock is not None and clock(43) is None  # none posted yet (the lab posts it after the node starts)
    assert interval_missed.overdue(clock, 40, 52, 1e12) == []
    state[CLOCK_KEY] = encode({"epoch_ms": 1_000_000 - 40 * 8000})  # interval 40 starts at 1000 s
    assert clock(40) == 1008.0 and clock(43) == 1032.0
    assert interval_missed.overdue(clock, 40, 52, 1032.0) == [
        (40, 1008.0),
        (41, 1016.0),
        (42, 1024.0),
        (43, 1032.0),
    ]
    assert interval_missed.overdue(clock, 40, 52, 1007.9) == []  # 40 running: acted on
    assert [t for t, _ in interval_missed.overdue(clock, 50, 52, 1e12)] == [50, 51]
    assert interval_missed.overdue(None, 40, 52, 1e12) == []
    params.settle_interval_ms = 0  # a chain without an interval clock
    assert clock(43) is None


class MarketBehind(Lab):
    """D7's lab whose MGMCs had waited for the DSO while it was down (its verdict on their interval, then on the one
    before their next), so at its return they are on interval `on` though the clock is past it: none has sent an
    injection for a later one, and they go on to the next once the DSO's final verdict on theirs is out."""

    def __init__(self, tmp_path: Path, on: int) -> None:
        self.on = on
        super().__init__(tmp_path)

    def inject(self, mg: str, t: int, revision: int, watts: int = 100_000) -> None:
        if t <= self.on:  # (the lab injects every interval at once: here only up to the one they are on)
            super().inject(mg, t, revision, watts)

    def verdict(self, doc: dict[str, Any]) -> None:
        if doc["final"] and doc["interval"] == self.on:
            self.on += 1
            for mg in self.mgs:
                self.inject(mg, self.on, 0)


@pytest.mark.parametrize(("on", "missed"), [(13, []), (14, [13])], ids=["on 13", "past 13, on 14"])
def test_an_interval_over_on_the_clock_that_the_mgmcs_have_not_gone_past_is_acted_on(
    tmp_path: Path, on: int, missed: list[int]
) -> None:
    """R45: the node came back when the clock said 13 and 14 were over, but the MGMCs, waiting for it, were on
    `on`: only what they had gone past is missed. Before, 13 and 14 were both recorded missed and their final
    verdicts published before any MGMC had sent an injection for 14, so the MGMCs traded 14 (and 13, on 13)
    with no network check at all."""
    lab = MarketBehind(tmp_path, on)
    try:
        now = [105.0]
        first = lab.node()
        clocked(first, now)
        assert run(first, stop_after=12) == [10, 11, 12]
        lab.restart()
        now[0] = 153.0  # 13 and 14 over on the clock, 15 running
        again = lab.node()
        verdicts: list[dict[str, Any]] = []
        worked = clocked(again, now, verdicts)
        again.publish = lambda doc: (verdicts.append(doc), lab.verdict(doc))  # type: ignore[method-assign]
        assert run(again) == [13, 14, 15]
        assert worked == [t for t in (13, 14, 15) if t not in missed]
        records = [json.loads(line) for line in lab.records.read_text().splitlines()]
        assert [r["interval"] for r in records if "missed" in r] == missed
        final = [(v["interval"], v.get("missed") is not None) for v in verdicts if v["final"]]
        assert final == [(t, t in missed) for t in (13, 14, 15)]
    finally:
        lab.store.close()


def test_a_missed_verdict_outranks_an_iteration_published_before_the_stop() -> None:
    """R45: an MGMC keeps the verdict of the highest iteration per interval; the missed one went out as iteration
    0, so an MGMC holding iteration 1 of the interval (half done at the stop) dropped it and waited out its
    dso_timeout_s (113 s in U6's lab) for a final verdict that had come."""
    import asyncio

    from peergrid_edge.verdict_inbox import file_verdict

    agent = SimpleNamespace(verdicts={}, _verdict_event=asyncio.Event())
    file_verdict(agent, json.dumps({"interval": 13, "iteration": 1, "final": False, "adjust": []}).encode())
    doc = interval_missed.missed_verdict(interval_missed.missed_record(13, 140.0, 153.0), [33, 34], 3 + 1)
    file_verdict(agent, json.dumps(doc).encode())
    assert agent.verdicts[13]["final"] and agent.verdicts[13]["missed"] == interval_missed.DOWN

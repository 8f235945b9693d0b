"""D11: a pilot's DSO node knows the market's clock and never waits an hour for an interval the MGMCs left behind.

Drill U7 (finding 6): a pilot's node had no market clock (nothing posts `market.clock` on a pilot's MGMC chain), so
when the MGMCs were past its next interval (all restarted and joined at a later one, or a DSO outage longer than
their three intervals' wait) it waited up to 3600 s per interval for injections nobody sent: it sat at 2 while
they traded 24. Now the loop reads the MGMCs' clock from its config (`loop.market_clock`, which the dso_server role
renders from the edges' epoch), and an interval over on it that no MGMC sent an injection for, once they went on,
is recorded missed with its own reason and its final verdict published, at start or while running; one an MGMC
sent one for is acted on, late (325075d). D7's loop on a LevelDB DSO chain (its `Lab`), an injected wall clock
(interval t ends at 10 t + 10 s); no timing thresholds.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_dso import interval_missed
from peergrid_dso.config import DsoSettings
from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.loop_settings import LoopSettings, MarketClock
from peergrid_dso.node_chains import Changed
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts.market_clock import CLOCK_KEY
from peergrid_ledger.settings import ConfigError, load_settings

from .test_d7_resume import Lab
from .test_d7_resume import run as d7_run

CLOCK = MarketClock(t0=0.0, interval_s=10.0)  # interval t ends at 10 t + 10 s, as D8's tests
LOOP = {
    "key_file": "/k",
    "dso_chain": {"genesis": "/g", "data_dir": "/d"},
    "mgs": {"mg1": {"node": "11", "anonym": "22", "bus": 18}},
}


class Joined(Lab):
    """D7's lab whose MGMCs sent injections only for the intervals `traded` names (each: the MGs that did; the
    lab's others nobody traded); `trade` sends one more."""

    def __init__(self, tmp_path: Path, traded: dict[int, set[str]]) -> None:
        self.traded = traded
        super().__init__(tmp_path)

    def inject(self, mg: str, t: int, revision: int, watts: int = 100_000) -> None:
        if mg in self.traded.get(t, ()):
            super().inject(mg, t, revision, watts)

    def trade(self, t: int, *mgs: str) -> None:
        self.traded.setdefault(t, set()).update(mgs)
        for mg in mgs:
            self.inject(mg, t, 0)


def every(*intervals: int) -> dict[int, set[str]]:
    return {t: {"mg1", "mg2"} for t in intervals}


def clocked(loop: DsoLoop, now: list[float], verdicts: list[dict[str, Any]]) -> list[int]:
    """`loop` on the test's wall clock and the configured market clock (`loop.market_clock`, as the role renders
    it); the intervals it analyses, in order; its verdicts into `verdicts`."""
    loop.settings.market_clock = CLOCK
    loop.ends_at = None
    loop.__post_init__()  # builds the clock from its settings, as at the node's start
    loop.clock = lambda: now[0]
    loop.publish = verdicts.append  # type: ignore[method-assign]
    worked: list[int] = []
    work = loop.interval

    async def interval(t: int) -> None:
        worked.append(t)
        await work(t)

    loop.interval = interval  # type: ignore[method-assign]
    return worked


def run(loop: DsoLoop, stop_after: int | None = None) -> list[int]:
    """D7's `run`, bounded at 20 s: before D11 the loop waited 3600 s for the first injection of a left interval."""
    return d7_run(loop, stop_after, within_s=20)


def records(lab: Lab) -> dict[int, dict[str, Any]]:
    return {r["interval"]: r for r in map(json.loads, lab.records.read_text().splitlines())}


def test_the_loop_takes_the_mgmcs_clock_from_its_config_and_refuses_a_bad_one(tmp_path: Path) -> None:
    clock = LoopSettings.model_validate(
        LOOP | {"market_clock": {"t0": 1_798_761_600, "interval_s": 20}}
    ).market_clock
    assert clock == MarketClock(t0=1_798_761_600, interval_s=20)
    assert LoopSettings.model_validate(LOOP).market_clock is None  # absent: the chain's posted one, as before
    ends_at = interval_missed.loop_clock(None, clock)  # no MGMC chain followed: the config's clock still
    assert ends_at is not None and ends_at(0) == 1_798_761_620 and ends_at(24) == 1_798_761_600 + 25 * 20
    config = tmp_path / "loop.yaml"
    for bad, named in (({"t0": 0, "interval_s": 0}, "interval_s"), ({"t0": -1, "interval_s": 20}, "t0"),
                       ({"t0": 0}, "interval_s"), ({"t0": 0, "interval_s": 20, "epoch": 1}, "epoch")):  # fmt: skip
        config.write_text(json.dumps(LOOP | {"market_clock": bad}))
        with pytest.raises(ConfigError, match=f"market_clock.{named}"):
            load_settings(config, LoopSettings)


def test_the_configured_clock_stands_over_a_posted_one() -> None:
    """The MGMCs trade by their own t0 (the role renders the DSO's from the same epoch); the chain's posted clock
    is the node's only where none is configured (the lab's)."""
    state: dict[bytes, bytes] = {CLOCK_KEY: encode({"epoch_ms": 5_000_000})}
    params = SimpleNamespace(settle_interval_ms=8000, settle_epoch_ms=0)
    replica = SimpleNamespace(
        app=SimpleNamespace(state=state), store=SimpleNamespace(genesis=SimpleNamespace(params=params))
    )
    mgmc = SimpleNamespace(node=SimpleNamespace(replicas={"mgmc": replica}), chain="mgmc")
    posted = interval_missed.loop_clock(mgmc)
    configured = interval_missed.loop_clock(mgmc, CLOCK)
    assert posted is not None and posted(0) == 5008.0
    assert configured is not None and configured(0) == 10.0


def test_the_pure_walk_of_intervals_left_behind() -> None:
    def ends_at(t: int) -> float:
        return 10.0 * t + 10.0

    sent = {11: {"mg1", "mg2"}, 14: {"mg1", "mg2"}}
    walk = lambda start, now, end=None: interval_missed.left_behind(  # noqa: E731
        ends_at, start, end, now, lambda u: sent.get(u, set())
    )
    assert walk(12, 145.0) == ([(12, 130.0), (13, 140.0)], 14)  # 12 and 13 over, nobody sent them, all on 14
    assert walk(12, 145.0, 13) == ([(12, 130.0)], 14)  # the loop's last interval bounds the run, not the walk
    assert walk(11, 145.0) is None  # sent for: acted on, late
    assert walk(12, 135.0) is None  # 13 not over: the MGMCs may yet trade it
    assert walk(12, 1e9) is not None
    assert interval_missed.left_behind(None, 12, None, 1e9, lambda u: sent.get(u, set())) is None  # no clock
    sent[14] = {"mg2"}  # mg1, in step at 11, has not gone on: it may be bargaining 12 now, late (325075d)
    assert walk(12, 145.0) is None
    sent[15] = {"mg1"}  # (one interval past the running one: a host's clock a little ahead)
    assert walk(12, 145.0) == ([(12, 130.0), (13, 140.0)], 14)
    assert interval_missed.gone_on(14) == "no MGMC traded it: they went on to 14"


def test_a_restarted_node_records_what_the_mgmcs_left_behind_and_goes_on_with_theirs(
    tmp_path: Path, caplog: Any
) -> None:
    """U7: the node's records held up to 11; all MGMCs restarted and joined at 14. Before, it waited 3600 s for
    12 (the run's bound fails it here), and 13, and never reached theirs."""
    lab = Joined(tmp_path, every(10, 11, 14, 15))
    try:
        now: list[float] = [105.0]
        verdicts: list[dict[str, Any]] = []
        first = lab.node()
        clocked(first, now, verdicts)
        assert run(first, stop_after=11) == [10, 11]
        lab.restart()
        now[0] = 145.0  # 12 and 13 over, 14 running
        again = lab.node()
        verdicts = []
        worked = clocked(again, now, verdicts)
        with caplog.at_level("WARNING", "peergrid_dso.interval_node"):
            assert run(again, stop_after=14) == [12, 13, 14]
        assert worked == [14]  # 12 and 13 never analysed, no contract, no switching
        why = "no MGMC traded it: they went on to 14"
        got = records(lab)
        assert [got[t]["missed"] for t in (12, 13)] == [why, why] and "missed" not in got[14]
        assert got[12] == {"interval": 12, "missed": why, "ended": 130.0, "noticed": 145.0, "adjustments": [],
                           "plan": None}  # fmt: skip
        final = [(v["interval"], v.get("missed"), v["secure"]) for v in verdicts if v["final"]]
        assert final == [(12, why, None), (13, why, None), (14, None, True)]  # 14 starts once 13's is out
        assert (
            f"intervals 12-13 missed, over before the DSO worked on them ({why}): no contract, no switching; "
            "going on with interval 14"
        ) in caplog.messages
    finally:
        lab.store.close()


class Moving(Changed):
    """The DSO chain's final blocks once the node finished 11 and waits for 12's first injection: the clock moves
    on (12 and 13 over, 14 running), then the injections of `who` for `then` land."""

    def __init__(self, lab: Joined, now: list[float], then: int, who: tuple[str, ...]) -> None:
        super().__init__()
        self.lab, self.now, self.then, self.who, self.waits = lab, now, then, who, 0

    async def wait(self, timeout: float) -> None:
        if self.lab.records.exists() and 11 in self.lab.recorded():
            self.waits += 1
            if self.waits == 3:
                self.now[0] = 145.0
            if self.waits == 5:
                self.lab.trade(self.then, *self.who)
        await asyncio.sleep(0.01)


def test_while_running_an_interval_nobody_traded_is_missed_once_they_went_on(tmp_path: Path) -> None:
    """Not only at start: the node waits on 12 as the clock runs past it, and once the MGMCs send their injections
    for 14 (none for 12 or 13), 12 and 13 are recorded missed and 14 acted on. Before: waited 3600 s on 12."""
    lab = Joined(tmp_path, every(10, 11, 15))  # (15: so the loop has a next interval to end on)
    try:
        now: list[float] = [105.0]
        verdicts: list[dict[str, Any]] = []
        loop = lab.node(Moving(lab, now, 14, ("mg1", "mg2")))
        worked = clocked(loop, now, verdicts)
        assert run(loop) == [10, 11, 12, 13, 14, 15]
        assert worked == [10, 11, 12, 14, 15]  # 12's wait ended when they went on: not analysed
        got = records(lab)
        assert [t for t, r in got.items() if "missed" in r] == [12, 13]
        assert got[12]["missed"] == interval_missed.gone_on(14)
        final = [(v["interval"], v["secure"]) for v in verdicts if v["final"]]
        assert final == [(10, True), (11, True), (12, None), (13, None), (14, True), (15, True)]
    finally:
        lab.store.close()


def test_an_interval_an_mgmc_in_step_may_still_trade_is_waited_for_and_acted_on(tmp_path: Path) -> None:
    """325075d: mg1, in step with the node (it sent 11), bargains 12 late, after the node's verdict on 11; mg2
    restarted meanwhile and joined at 13. 12 is over and nobody sent it yet, but mg1 has not gone on: the node
    waits, and acts on 12 once mg1's injection lands (late), never recording it missed."""
    lab = Joined(tmp_path, every(10, 11) | {t: {"mg2"} for t in (13, 14, 15)})
    try:
        now: list[float] = [105.0]
        verdicts: list[dict[str, Any]] = []
        loop = lab.node(Moving(lab, now, 12, ("mg1",)))
        worked = clocked(loop, now, verdicts)
        assert run(loop) == [10, 11, 12, 13, 14, 15]
        assert worked == [10, 11, 12, 13, 14, 15]
        assert not any("missed" in r for r in records(lab).values())
    finally:
        lab.store.close()


def test_the_role_renders_the_edges_clock_for_the_dso(tmp_path: Path, monkeypatch: Any) -> None:
    """The dso_server role renders `loop.market_clock` from the pilot's step-6 inventory (ansible/README.md) as the
    edge role renders that MGMC's `market.t0` and `market.interval_s` (`peergrid_market_epoch`, and
    `peergrid_market_interval_s`, default 900), and as its own `disputes`; none without an epoch. Real Ansible
    templating (the edge role's trading tasks as test_a3_pilot_trading runs them) with the pilot inventory; the
    server's strict model."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "ansible"))  # the harness's home
    from peergrid_ansible_harness import ANSIBLE_DIR, HERE, needs_root, render_dso, run_tool

    needs_root()  # the edge role installs the geneses owned by root
    step6 = (
        (ANSIBLE_DIR / "README.md")
        .read_text(encoding="utf-8")
        .split("## Step 6: start trading (pilot)", 1)[1]
    )
    epoch = int(step6.split("peergrid_market_epoch: ", 1)[1].split()[0])  # the inventory block's
    pilot = ANSIBLE_DIR / "inventories" / "pilot-example" / "group_vars"
    for name in ("mgmc.json", "dso.json"):
        (tmp_path / name).write_text("{}")
    base = {"dso_server_mgs": {"mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18}},
            "peergrid_dso_genesis": str(tmp_path / "dso.json"), "peergrid_mgmc_genesis": str(tmp_path / "mgmc.json")}  # fmt: skip
    for extra, interval_s in (({"peergrid_market_epoch": epoch}, 900),
                              ({"peergrid_market_epoch": epoch, "peergrid_market_interval_s": 20}, 20),
                              ({}, None)):  # fmt: skip
        here = tmp_path / str(len(extra))
        here.mkdir()
        out = render_dso(here, base | extra)
        assert "market_clock" in yaml.safe_load(out.read_text())["loop"]
        settings = load_settings(out, DsoSettings)
        assert settings.loop is not None
        clock = settings.loop.market_clock
        if interval_s is None:
            assert clock is None  # no epoch: no clock (and no disputes), as before
            continue
        assert clock == MarketClock(t0=epoch, interval_s=interval_s)
        disputes = settings.loop.disputes
        assert disputes is not None and (disputes.t0, disputes.interval_s) == (clock.t0, clock.interval_s)
        edge = {"inventory_vars": [str(pilot / "all.yml"), str(pilot / "edge.yml")], "inventory_dir": str(pilot.parent),
                "edge_mgmc_genesis_src": "{{ peergrid_mgmc_genesis }}", "edge_dso_genesis_src": "{{ peergrid_dso_genesis }}",
                "edge_market_scenario_src": str(HERE / "test_a3_pilot_scenario.yaml"), "peergrid_mg_id": "mg-school",
                "edge_config_dir": str(here / "etc"), "edge_group": grp.getgrgid(os.getgid()).gr_name, **base, **extra}  # fmt: skip
        (here / "edge.json").write_text(json.dumps(edge))
        played = run_tool(["ansible-playbook", str(HERE / "test_a3_pilot_trading.yml"), "-e",
                           f"out_file={here / 'edge.yaml'}", "-e", f"@{here / 'edge.json'}"], here)  # fmt: skip
        assert played.returncode == 0, played.stdout + played.stderr
        market = yaml.safe_load((here / "edge.yaml").read_text())["market"]
        assert (market["t0"], market["interval_s"]) == (clock.t0, clock.interval_s)  # the MGMC's own clock

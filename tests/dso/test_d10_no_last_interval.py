"""D10: the DSO loop may have no last interval (`loop.intervals: null`), as the edges' `market.days: null`.

Review R45 (finding 6): the Ansible role rendered `intervals: 35040` (a year), and since D7 a restarted node resumes
after its last recorded interval, so a node restarted after a year logged 'every interval of 0-35039 is finished;
nothing to run' and never checked another interval while the MGMCs traded on day after day. Here: the settings
take null (and keep 96 where the key is absent, a count where one is given); D7's interval loop on a LevelDB DSO
chain, restarted on a record file whose last finished interval is 35039, runs 35040 and 35041; the loop's clock of
missed intervals and its words need no last interval; the cover prices go out a day ahead past a year as they do
within one (`tariff.pricing_window`, `CoverPricer`, `start_postings.tariffs_through`).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dso.test_d7_resume import Replica, Sealing, run
from dso.test_tariff_pricer import DAY
from dso.test_tariff_pricer import Lab as PricingLab
from peergrid_dso import interval_missed, interval_resume
from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.dso_node import LiveTopology, LockedExecutor
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.loop_settings import LoopSettings, loop_end
from peergrid_dso.node_chains import Changed
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.interval import IntervalPlanner
from peergrid_dso.services.switching import SwitchingExecutor, SwitchingService
from peergrid_dso.start_postings import tariffs_through
from peergrid_dso.tariff import pricing_window
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError, load_settings
from peergrid_ledger.store import BlockStore

YEAR = 35040  # 15-minute intervals: what the role rendered as the loop's count
BUSES = {"mg1": 18, "mg2": 25}
LOOP = {
    "key_file": "/k",
    "dso_chain": {"genesis": "/g", "data_dir": "/d"},
    "mgs": {"mg1": {"node": "11", "anonym": "22", "bus": 18}},
}


def test_the_settings_take_null_for_no_last_interval_and_keep_a_count(tmp_path: Path) -> None:
    assert LoopSettings.model_validate(LOOP | {"intervals": None}).intervals is None
    assert (
        LoopSettings.model_validate(LOOP).intervals == 96
    )  # absent: a day, the lab's and the tests' as before
    assert LoopSettings.model_validate(LOOP | {"intervals": 12}).intervals == 12
    config = tmp_path / "loop.yaml"
    config.write_text(json.dumps(LOOP | {"intervals": None}))  # JSON is YAML: `intervals: null`
    assert load_settings(config, LoopSettings).intervals is None  # YAML's null, as the role renders it
    config.write_text(json.dumps(LOOP | {"intervals": 0}))
    with pytest.raises(ConfigError, match="intervals"):
        load_settings(config, LoopSettings)
    assert loop_end(40, 12) == 52 and loop_end(40, None) is None


class Lab:
    """D7's lab (a DSO chain in a LevelDB store, two MGMCs' injections, relays in memory) a year on: the MGMCs
    sent their injections for 35040 and 35041, and the record file holds the year 0-35039 finished."""

    def __init__(self, tmp_path: Path) -> None:
        self.authority, self.dso = Keypair.generate(), Keypair.generate()
        self.mgs = {mg: (Keypair.generate(), Keypair.generate()) for mg in BUSES}
        accounts = [Account(self.dso.public, ("dso",), "dso")]
        for mg, (node, anonym) in self.mgs.items():
            accounts += [Account(node.public, ("mgmc",), mg), Account(anonym.public, ("anonym",), mg)]
        genesis = Genesis(chain="d10-dso", time=0, authorities=(self.authority.public,), accounts=tuple(accounts),
                          params=Params())  # fmt: skip
        self.store = BlockStore.create(tmp_path / "dso.db", genesis)
        self.chain = LocalChain.open(self.store, self.authority)
        self.records = tmp_path / "dso.jsonl"
        self.records.write_text(
            "".join(json.dumps({"interval": t, "secure": True}) + "\n" for t in (YEAR - 2, YEAR - 1))
        )
        self.feeder = case33bw(BUSES)
        self.relays = InMemoryRelays({b.number: b.closed for b in self.feeder.branches})
        for t in (YEAR, YEAR + 1):
            for node, _ in self.mgs.values():
                body = {"interval": t, "injection": 100_000, "revision": 0}
                assert self.chain.sign_and_submit(node, "equivalent_injection", body, 1).ok
                self.chain.seal(1)

    def node(self, intervals: int | None) -> DsoLoop:
        mgs = {mg: SimpleNamespace(node=node.public.hex(), anonym=anonym.public.hex(), bus=BUSES[mg])
               for mg, (node, anonym) in self.mgs.items()}  # fmt: skip
        s = SimpleNamespace(feeder="d10", mgs=mgs, first_interval=0, intervals=intervals, wait_s=0.2,
                            max_iterations=3, rebargain_wait_s=0.2, record_file=self.records, tariff_file=None)  # fmt: skip
        recorder = ChainRecorder(Sealing(self.chain), self.dso)
        lock = threading.RLock()
        executor = LockedExecutor(SwitchingExecutor(self.relays, recorder), lock)
        switching = SwitchingService(executor, auto=True)  # type: ignore[arg-type]
        opened = tuple(sorted(b for b, closed in self.relays.closed.items() if not closed))
        publish = SimpleNamespace(publish=lambda *args, **kwargs: None)
        return DsoLoop(s, Replica(self.chain), None, Changed(), SimpleNamespace(client=publish), recorder,  # type: ignore[arg-type]
                       switching, IntervalPlanner(self.feeder, opened, 0), self.dso, LiveTopology(opened), lock)  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path) -> Any:
    bed = Lab(tmp_path)
    yield bed
    bed.store.close()


def test_a_node_with_no_last_interval_resumes_past_a_year(lab: Lab, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert run(lab.node(None), stop_after=YEAR + 1) == [YEAR, YEAR + 1]  # before: null refused, no count
    said = f"restarted: resuming at interval {YEAR} of 0- (no last interval): {lab.records} holds 0-{YEAR - 1} finished"
    assert said in caplog.messages
    records = [json.loads(line) for line in lab.records.read_text().splitlines()]
    assert [r["interval"] for r in records] == [YEAR - 2, YEAR - 1, YEAR, YEAR + 1]
    assert records[-1]["secure"] and records[-1]["injections_kw"] == {"mg1": 100.0, "mg2": 100.0}


def test_a_count_still_ends_the_loop(lab: Lab, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert run(lab.node(YEAR)) == []  # the year's count: what R45 found, still what a count means
    assert (
        f"restarted: every interval of 0-{YEAR - 1} is finished ({lab.records}); nothing to run"
        in caplog.messages
    )


def test_where_a_loop_with_no_last_interval_starts(tmp_path: Path) -> None:
    records = tmp_path / "dso.jsonl"
    assert interval_resume.resume_at(None, 40, None) == (
        40, "the loop starts at interval 40 of 40- (no last interval) (no record_file: it cannot know what an "
            "earlier run finished)",
    )  # fmt: skip
    records.write_text("".join(json.dumps({"interval": t}) + "\n" for t in (39, 40, 10**9)))
    assert interval_resume.resume_at(records, 40, None).interval == 10**9 + 1
    assert interval_resume.resume_at(records, 10**9 + 5, None).interval == 10**9 + 5  # none of it recorded


def test_missed_intervals_need_no_last_one() -> None:
    def ends_at(t: int) -> float:  # 15-minute intervals from 0
        return (t + 1) * 900.0

    now = (YEAR + 3) * 900.0 + 10  # a year on: 35040-35042 over, 35043 running
    run_ = interval_missed.overdue(ends_at, YEAR, None, now)
    assert [t for t, _ in run_] == [YEAR, YEAR + 1, YEAR + 2]
    assert interval_missed.said([YEAR, YEAR + 1], YEAR + 2, None).endswith(
        f"going on with interval {YEAR + 2}"
    )
    assert interval_missed.said([50], 51, 51).endswith("no interval left to run")


def test_the_cover_prices_go_out_a_day_ahead_past_a_year() -> None:
    """No last interval: the window is the day's, as within a count (a year's count priced nothing past it)."""
    for current in (None, 0, 47, 48, YEAR + 47, YEAR + 48, 10**7 + 3):
        assert pricing_window(0, None, current, DAY) == pricing_window(0, 10**9, current, DAY)
    assert pricing_window(0, None, YEAR + 48, DAY) == range(YEAR + 48, YEAR + 2 * DAY)  # the next day too
    assert pricing_window(0, YEAR, YEAR + 48, DAY) == range(0)  # the year's count: nothing

    lab = PricingLab()
    pricer = lab.pricer(first=0, end=None)  # type: ignore[arg-type]
    assert lab.price(pricer, current=YEAR + 48) == 2  # one run per MG: the rest of the day and the next
    retail = lab.tariff.prices["mg1"][0]
    for key in lab.anonyms.values():
        assert market.tariff(lab.state, key.public, YEAR + 48) == (retail[48], 50)
        assert market.tariff(lab.state, key.public, YEAR + 2 * DAY - 1) == (retail[DAY - 1], 50)
        assert market.tariff(lab.state, key.public, YEAR + 2 * DAY) is None  # the day after next: not yet
    accounts = [k.public for k in lab.anonyms.values()]
    assert tariffs_through(lab.state, accounts, YEAR + 48, None) == YEAR + 2 * DAY - 1  # health's figure

"""The lab's settlement clock is its real intervals (review10 F2): `peergrid-testbed` fixes the loop's t0
(`ClosedLoop.fix_t0`: now + the warm-up, + the day-ahead lead with --dayahead) before it writes the MGMC
genesis, and gives the same t0 to the genesis' interval clock (`SettleByBoth.for_lab`) and to the MGMCs' and
the DSO's timing (`loop_timing`, what `start` hands out), also when the devices' scenario is written later.
Before, the clock was set from the moment the genesis was written and the loop's t0 from its start plus the
lead: every chain interval ended 45 s before the real one with --dayahead, and a seller could state a
forward trade 45 s before it was delivered while the honest buyer's later statement was refused `closed`."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains, edge_config
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser, lab_loop

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


@pytest.mark.parametrize("dayahead", [False, True])
def test_the_chains_interval_ends_are_the_loops(tmp_path: Path, dayahead: bool) -> None:
    argv = ["--scenario", str(SCENARIO), "--intervals", "4", "--settle-by-both"] + (["--dayahead"] * dayahead)
    args = build_parser().parse_args(argv)
    written_at = time.time()
    loop = lab_loop(args, tmp_path, load_scenario(SCENARIO))
    assert loop is not None and loop.t0 is not None
    assert written_at + loop.lead_s <= loop.t0 <= time.time() + loop.lead_s  # the lead counts from now
    params = Genesis.from_json(json.loads((tmp_path / "keys" / "mgmc-genesis.json").read_text())).params
    time.sleep(0.05)  # the testbed writes the devices' scenario and starts the loop later, after the broker
    bed = SimpleNamespace(scenario_path=SCENARIO, workdir=tmp_path, speed=1.0)
    loop.sim_scenario(bed)
    timing = loop.loop_timing()
    assert timing.t0 == loop.t0 and timing.dayahead is dayahead
    for k in range(timing.first_interval, timing.first_interval + timing.intervals):
        real_end_ms = (timing.t0 + (k - timing.first_interval + 1) * timing.interval_s) * 1000
        chain_end_ms = params.interval_end(k)
        assert chain_end_ms is not None
        # the same end (the chain's at most a millisecond before, never after), far within a block
        assert 0 <= real_end_ms - chain_end_ms < 1 < timing.block_period_ms, (k, real_end_ms, chain_end_ms)
    # and what the MGMCs are told is that t0 too
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)  # reads the lab's keys and geneses
    edge = edge_config(chains, "mg1", "ieee33", ("127.0.0.1", 1), tmp_path / "n", [],
                       SCENARIO, timing, tmp_path / "records")  # fmt: skip
    assert edge["market"]["t0"] == loop.t0


def test_the_devices_first_interval_is_the_loops(tmp_path: Path) -> None:
    """The devices' scenario, written a moment after t0 was fixed, starts its clock so that the first interval
    begins at t0 on the accelerated clock (not a whole lead after the writing)."""
    args = build_parser().parse_args(["--scenario", str(SCENARIO), "--intervals", "2", "--dayahead"])
    loop = lab_loop(args, tmp_path, load_scenario(SCENARIO))
    assert loop is not None and loop.t0 is not None
    time.sleep(0.2)
    bed = SimpleNamespace(scenario_path=SCENARIO, workdir=tmp_path, speed=1.0)
    before = time.time()
    path = loop.sim_scenario(bed)
    after = time.time()
    raw = yaml.safe_load(path.read_text())
    start = raw["start"]
    if isinstance(start, str):
        start = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    day_start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    first = (
        day_start.timestamp() + loop.first_interval * loop.interval_min * 60 - start.timestamp()
    ) / bed.speed
    # wall s from the writing (some instant between before and after) to the first interval; bracketed, not a
    # tolerance, so a loaded machine cannot fail it (CI: 0.057 s between the test's clock and the writer's)
    assert loop.t0 - after - 0.002 <= first <= loop.t0 - before + 0.002
    assert loop.t0 - before < loop.lead_s - 0.15  # the lead counts from t0's fixing, not from here


def test_every_member_has_an_accept_window_that_never_moves_an_honest_deadline(tmp_path: Path) -> None:
    """review9 F4 in the lab: the close raises a deadline less than `accept_window_ms` after it, and the edge's
    own close comes ACCEPTS_BEFORE phase timeouts before its clear deadline, so only a dishonest one moves."""
    from peergrid_edge.day_stages import ACCEPTS_BEFORE
    from peergrid_sim.closedloop import phase_timeout_s

    args = build_parser().parse_args(["--scenario", str(SCENARIO), "--intervals", "4", "--dayahead"])
    loop = lab_loop(args, tmp_path, load_scenario(SCENARIO))
    assert loop is not None
    params = Genesis.from_json(json.loads((tmp_path / "keys" / "mgmc-genesis.json").read_text())).params
    assert params.accept_rounds == 2 and params.accept_window_ms > 0
    honest_gap_ms = ACCEPTS_BEFORE * phase_timeout_s(loop.loop_timing().interval_s) * 1000
    assert params.accept_window_ms <= honest_gap_ms

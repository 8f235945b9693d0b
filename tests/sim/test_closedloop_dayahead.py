"""The lab's day-ahead option: the MGMC genesis carries the exchange contract, the option (off by default)
turns on `market.dayahead` in every MGMC's edge config, which the edge daemon accepts, and a lab directory
made before the exchange contract keeps its genesis (no processes); and, with real processes, the lab with
`--dayahead` runs the session and trades its intervals by the forward trades end to end (the day-ahead lab
run of tests/conftest.py, `dayahead_lab`, which the restart test of tests/edge reads too: two daemons are
killed and restarted in its stage, four never are)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from peergrid_edge.config import EdgeSettings
from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.testbed import build_parser

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _config(chains: LabChains, tmp_path: Path, timing: LoopTiming) -> EdgeSettings:
    doc = edge_config(
        chains, chains.mgs[0], "ieee33", ("127.0.0.1", 1883), tmp_path / "node", [], SCENARIO, timing,
        tmp_path / "records",
    )  # fmt: skip
    return EdgeSettings.model_validate(doc)


def test_the_mgmc_genesis_carries_the_exchange_and_the_option_turns_on_the_session(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    genesis = Genesis.from_json(json.loads(chains.mgmc_genesis.read_text()))
    assert set(genesis.contracts) == {"market", "exchange"}
    off = _config(chains, tmp_path, LoopTiming(1000.0, 6.0, 36, 4))
    assert off.market is not None and off.market.dayahead is False  # the default lab trades intraday
    on = _config(chains, tmp_path, LoopTiming(1000.0, 6.0, 36, 4, dayahead=True))
    # ieee33's mg3 has a genset: every MGMC runs the session's commitment phases
    assert on.market is not None and on.market.dayahead is True and on.market.dayahead_gensets is True
    assert build_parser().parse_args([]).dayahead is False
    assert build_parser().parse_args(["--dayahead"]).dayahead is True


def test_the_lead_to_the_first_interval_is_an_option_and_bad_leads_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the default is today's: the warm-up (the DSO started first), and with --dayahead the stage's 30 s more
    assert ClosedLoop(2).lead_s == 25.0 and ClosedLoop(2, dayahead=True).lead_s == 55.0
    args = build_parser().parse_args(["--dayahead", "--lead-s", "38.5"])
    loop = ClosedLoop(2, dayahead=args.dayahead, lead=args.lead_s)
    assert loop.lead_s == 38.5 and loop.fix_t0(now=1000.0) == 1038.5 and loop.loop_timing().t0 == 1038.5
    for bad in ("0", "-3", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--lead-s", bad])
        assert "--lead-s: not a positive number of seconds" in capsys.readouterr().err
    for lead in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive number of seconds"):
            ClosedLoop(2, lead=lead)


def test_a_lab_directory_made_before_the_exchange_keeps_its_genesis(tmp_path: Path) -> None:
    first = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    doc = json.loads(first.mgmc_genesis.read_text())
    doc["contracts"] = ["market"]  # as an older lab wrote it
    first.mgmc_genesis.write_text(json.dumps(doc))
    again = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    assert json.loads(again.mgmc_genesis.read_text()) == doc  # reused as it is: its chain id and history hold
    assert again.anonyms[again.mgs[0]].public == first.anonyms[first.mgs[0]].public


@pytest.mark.system
@pytest.mark.xdist_group("system")
def test_the_lab_with_dayahead_trades_its_intervals_forward_end_to_end(dayahead_lab: Any) -> None:
    # real processes (broker, devices, six MGMC daemons, the DSO): the session, the accepts and the clear,
    # then two intervals traded by their forward trades without bargaining, settled, and the run's checks; on
    # the lab run whose stage also takes the restart test's two kills (tests/conftest.py, a 65-s lead)
    workdir, out = dayahead_lab.workdir, dayahead_lab.report
    print(f"\nlab with --dayahead, 2 intervals: {dayahead_lab.cpu_s:.1f} s CPU (the testbed and its processes,"
          " two MGMC restarts included)")  # fmt: skip
    for mg in ("mg1", "mg2", "mg3", "mg4", "mg5", "mg6"):
        lines = [
            json.loads(line) for line in (workdir / "records" / f"mgmc-{mg}.jsonl").read_text().splitlines()
        ]
        session = [doc["dayahead"] for doc in lines if "dayahead" in doc][-1]  # a restarted MGMC's last
        forward = next(doc["forward"] for doc in lines if isinstance(doc.get("forward"), dict))
        assert session["completed"], session["reason"]
        assert forward["cleared"] and forward["reason"] == "" and forward["members_accepted"] == 6
        assert forward["intervals"] == [36, 37]  # the intervals the lab trades; the rest declined
        traded = [doc for doc in lines if "rounds" in doc]
        assert [doc["interval"] for doc in traded] == [36, 37]
        assert all(doc["forward"] == session["session"] and doc["rounds"] == [] for doc in traded)
        bought = [tr for doc in traded for tr in doc["trades"] if tr["buyer"] == traded[0]["anonym"]]
        assert sum(doc["settled"] for doc in traded) == len(bought)  # every forward purchase settled
    checks = json.loads((out / "report.json").read_text())["checks"]
    assert checks["intervals_done"] == 2 and checks["replicas_agree"] and checks["settled_trades_proven"]
    assert checks["topology_secure"] and checks["p2p_not_dearer"]

"""The lab's day-ahead option: the MGMC genesis carries the exchange and uplift contracts, the option (off by default)
turns on `market.dayahead` in every MGMC's edge config, which the edge daemon accepts, and a lab directory
made before the exchange contract keeps its genesis (no processes); and, with real processes, the lab with
`--dayahead` runs the session and trades its intervals by the forward trades end to end (the day-ahead lab
run of tests/conftest.py, `dayahead_lab`, which the restart test of tests/edge reads too: two daemons are
killed and restarted in its stage, four never are), and pays the day's make-whole on the chain: the DSO's
posted connection capacities bound each claim, every MGMC's claim after the clear is its true gain, the
chain's settle after the day pays it, and the balances it moved are as the outcome records them, over the
whole chain too (each MG's balance change = its settled trades - its charge + its credit). That lab runs
without an exchange fee: the payer path. The fee path (`--exchange-fee`) is tests/sim/test_lab_fee.py's,
on a real chain without processes, and tests/sim/test_m3_lab_fee_day.py's, the lab's own day with a fee at the
100-s lead (39 iterations since M3: docs/closed-loop.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from peergrid_controller.scenario import load_scenario
from peergrid_controller.uplift import MICRO, earns, widest_spread
from peergrid_dso.tariff import capacity_wh
from peergrid_edge.config import EdgeSettings
from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains, LoopTiming, edge_config
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.lab_chains import connection_kw
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
    assert set(genesis.contracts) == {"market", "exchange", "uplift"}  # the session's make-whole too
    assert genesis.params.uplift_claim_ms == 0  # no claim window: the settle waits for the trades only
    assert genesis.params.anonyms_only == 1  # only the named anonyms trade (review17 K-B)
    # the make-whole bound where the DSO prices no cover (review18 U-1): the scenario's widest spread
    assert genesis.params.uplift_max_spread == widest_spread(load_scenario(SCENARIO).microgrids) > 0
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
    # the lab run whose stage also takes the restart test's two kills (tests/conftest.py, DAYAHEAD_LAB_LEAD_S)
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


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.system
@pytest.mark.xdist_group("system")
def test_the_lab_with_dayahead_settles_its_make_whole_on_the_chain(dayahead_lab: Any) -> None:
    # the same lab run: the DSO posted each MG's connection capacity (from its devices: lab_chains.connection_kw)
    # before the session, so each MGMC claimed its own deviation gain (capped only at the chain's bound, which
    # now exists) and surplus after the clear (a restarted one found its claim on the chain), one settled the
    # session's uplift after the day's trades settled, every MGMC recorded its part, and the report's replay of
    # the chain shows the settle moved exactly what the outcome records (the lab's credit limit leaves nothing
    # owed as a debt). Before the capacity every lab claim was 0 (review18 U-1: no bound) and nothing was paid;
    # this day owes nobody (L12): mg5's 0.114 was its battery, filled at 36-37 for its sales at 0.30 in 68-72,
    # valued against a day that trades nothing outside its window; both days now hold the positions it
    # answered there (edge dayahead_uplift_claim) and its gain is 0.000. The paid path on a real chain:
    # tests/edge/test_edge_uplift.py and test_edge_fee_claim.py (rationed inside its window)
    workdir = dayahead_lab.workdir
    report = json.loads((dayahead_lab.report / "report.json").read_text())
    section = report["uplift"]
    assert "error" not in section, section
    [paid] = section["sessions"]
    mgs = ["mg1", "mg2", "mg3", "mg4", "mg5", "mg6"]
    assert paid["settled"] and sorted(paid["claims"]) == mgs, paid  # every member claimed before the settle
    # each stated the chain intervals it trades with its first accept: the chain bounds its gain over them (U4)
    assert paid["windows"] == {mg: [36, 37] for mg in mgs}, paid
    # the chain holds each MG's connection capacity from the lab's first interval (posted before any accept:
    # a capacity changes only after the account's last position), as the DSO config names it
    scenario = load_scenario(SCENARIO)
    capacity = {mg.name: capacity_wh(kw, scenario.interval_hours * 60, mg.name)
                for mg in scenario.microgrids if (kw := connection_kw(mg)) is not None}  # fmt: skip
    assert sorted(capacity) == mgs
    assert section["capacities"] == {mg: [[36, wh]] for mg, wh in capacity.items()}
    # no rule, no cover prices (no settle-by-both): each bound is capacity x the genesis spread per interval
    spread = widest_spread(scenario.microgrids)
    assert paid["bounds"] == {mg: 2 * capacity[mg] * spread for mg in mgs}, paid
    claim_s, settle_s = [], []
    for mg in mgs:
        lines = _lines(workdir / "records" / f"mgmc-{mg}.jsonl")
        forward = next(doc["forward"] for doc in lines if isinstance(doc.get("forward"), dict))
        assert paid["session"] == forward["session"]
        claims = [doc for doc in lines if "uplift_claim" in doc]
        assert claims, f"{mg} recorded no uplift_claim stage"
        claim = claims[-1]["uplift_claim"]  # a restarted MGMC's last: it found its claim on the chain
        assert claim["posted"] or claim["reason"] == "", claim
        assert (claim["gain"], claim["surplus"]) == tuple(paid["claims"][mg].values()), (mg, claim)
        # the MG's true gain (the edge's rule: rounded up to a micro-unit above its tolerance), cut only where
        # the chain's bound binds; the edge read the same bound the report replays
        assert claim["bound"] == paid["bounds"][mg], (mg, claim)
        true_gain = math.ceil(round(claim["deviation_gain"] * MICRO, 3))
        owed = true_gain if earns(claim["deviation_gain"], claim["tolerance"]) else 0
        assert claim["gain"] == min(owed, claim["bound"]), (mg, claim)
        claim_s.append(claims[-1]["stage_times"]["end"] - claims[-1]["stage_times"]["start"])
        [done] = [doc for doc in lines if "uplift" in doc]
        outcome = done["uplift"]
        assert outcome["settled"] and outcome["reason"] == "", outcome
        assert outcome["funded"] == paid["funded"]
        assert (outcome["credit"], outcome["charge"], outcome["withheld"], outcome["owed"]) == (
            paid["credits"].get(mg, 0),
            paid["charges"].get(mg, 0),
            paid["withheld"].get(mg, 0),
            0,
        ), (mg, outcome, paid)
        assert paid["moved"].get(mg, 0) == outcome["credit"] - outcome["charge"]  # its balance, by the settle
        settle_s.append(done["stage_times"]["end"] - done["stage_times"]["start"])
    settlers = [mg for mg in mgs for doc in _lines(workdir / "records" / f"mgmc-{mg}.jsonl")
                if doc.get("uplift", {}).get("by_us")]  # fmt: skip
    assert len(settlers) <= 1, settlers  # one settle lands; a backup's is refused as already settled
    assert paid["balances_match"], paid
    # nobody owed: the settle pays nobody, charges nobody and moves nothing; the payers' surplus is every claim's
    gains = {mg: c["gain"] for mg, c in paid["claims"].items() if c["gain"] > 0}
    assert gains == {} and paid["credits"] == {} and paid["charges"] == {} and paid["withheld"] == {}, paid
    assert paid["funded"] and paid["owed"] == 0 and paid["payments"] == [] and paid["moved"] == {}, paid
    assert paid["surplus"] == sum(c["surplus"] for c in paid["claims"].values()) > 0, paid
    # the payer path: the lab's genesis names no exchange fee, so the session carries none and no fund pays
    assert paid["fee"] == 0 and "fee_path" not in paid and isinstance(paid["surplus"], int), paid
    assert "fund" not in paid["moved"]
    # the whole chain replayed: each MG's balance change is its settled trades, less its charge, plus its credit
    day = section["day"]
    assert day["match"], day
    assert sorted(day["accounts"]) == mgs, day  # only the MGs' anonyms moved money (no fund, no node key)
    for mg, account in day["accounts"].items():
        assert account.get("credit", 0) == paid["credits"].get(mg, 0), (mg, account)
        assert account.get("charge", 0) == paid["charges"].get(mg, 0), (mg, account)
        assert account["change"] == account["trades"] - account.get("charge", 0) + account.get("credit", 0)
    print(f"\nuplift: claims {gains} (bounds {paid['bounds']}), owed {paid['owed']}, surplus {paid['surplus']}, "
          f"funded {paid['funded']}, credits {paid['credits']}, charges {paid['charges']}; claim stage "
          f"{min(claim_s):.2f}-{max(claim_s):.2f} s before t0, settle stage {min(settle_s):.2f}-"
          f"{max(settle_s):.2f} s after the day, the end's quiesce {report['quiesce']['waited_s']} s")  # fmt: skip

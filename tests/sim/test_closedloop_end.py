"""The closed loop's end and pacing, without processes: `quiesced` halts the chains a few blocks above the
highest head once nothing is pending and finishes when every replica reports that head; `pacing` places an
interval against its slot on the accelerated clock."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

from peergrid_sim.closedloop import HALT_FILE, LoopTiming, pacing, pacing_text, quiesced


def _status(workdir: Path, node: str, chains: dict[str, tuple[int, str, int]]) -> None:
    path = workdir / "nodes" / node / "ledger-status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"chains": {c: {"height": h, "head": head, "mempool": m} for c, (h, head, m) in chains.items()}}
    path.write_text(json.dumps(doc))


def test_quiesce_waits_for_the_mempools_halts_then_finishes_on_one_head(tmp_path: Path) -> None:
    loop = types.SimpleNamespace(block_period_ms=1000, interval_s=5.0)
    bed = types.SimpleNamespace(workdir=tmp_path)
    (tmp_path / "records").mkdir()
    _status(tmp_path, "mgmc-mg1", {"mgmc-x": (10, "aa", 1), "dso-x": (7, "bb", 0)})
    _status(tmp_path, "mgmc-mg2", {"mgmc-x": (9, "a9", 0), "dso-x": (7, "bb", 0)})
    assert not quiesced(loop, bed)  # a tx still in flight: no halt yet
    assert not (tmp_path / "control" / HALT_FILE).exists()
    _status(tmp_path, "mgmc-mg1", {"mgmc-x": (11, "ab", 0), "dso-x": (7, "bb", 0)})
    assert not quiesced(loop, bed)
    halt = json.loads((tmp_path / "control" / HALT_FILE).read_text())
    assert halt == {"mgmc-x": 11 + 3, "dso-x": 7 + 3}  # a few seconds of blocks above the highest head
    _status(tmp_path, "mgmc-mg1", {"mgmc-x": (14, "cc", 0), "dso-x": (10, "dd", 0)})
    _status(tmp_path, "mgmc-mg2", {"mgmc-x": (13, "c9", 0), "dso-x": (10, "dd", 0)})
    assert not quiesced(loop, bed)  # mg2 is not on the halt height yet
    _status(tmp_path, "mgmc-mg2", {"mgmc-x": (14, "cc", 0), "dso-x": (10, "dd", 0)})
    assert quiesced(loop, bed)
    result = json.loads((tmp_path / "records" / "quiesce.json").read_text())
    assert (
        result["ok"]
        and result["pending_at_halt"] == 0
        and result["heads"]["mgmc-x"]["mgmc-mg2"] == [14, "cc"]
    )
    assert 0 <= result["halt_s"] <= result["waited_s"]  # the halt's part of the whole wait
    assert quiesced(loop, bed)  # done stays done


def test_quiesce_gives_up_after_its_bound_and_says_so(tmp_path: Path) -> None:
    loop = types.SimpleNamespace(block_period_ms=200, interval_s=5.0)
    bed = types.SimpleNamespace(workdir=tmp_path)
    (tmp_path / "records").mkdir()
    _status(tmp_path, "mgmc-mg1", {"mgmc-x": (5, "aa", 0)})
    _status(tmp_path, "mgmc-mg2", {"mgmc-x": (5, "aa", 0)})
    assert not quiesced(loop, bed, bound_s=0.0)  # writes the halt file
    (tmp_path / "nodes" / "mgmc-mg2" / "ledger-status.json").write_text(
        "{not json"
    )  # being replaced: skipped
    assert quiesced(loop, bed, bound_s=0.0)  # mg1 never reached the halt height: the bound ends it
    assert json.loads((tmp_path / "records" / "quiesce.json").read_text())["ok"] is False


def test_pacing_against_the_slot() -> None:
    timing = LoopTiming(t0=1000.0, interval_s=5.0, first_interval=36, intervals=24)
    on_time = pacing(timing, 37, [1005.0, 1005.3], 1008.0)
    assert on_time["started_late_s"] == 0.0 and on_time["overrun_s"] == 0.0
    assert pacing_text(on_time) == "on time, switched at +3.0 s"
    late = pacing(timing, 38, [1012.5], 1019.0)
    assert late["started_late_s"] == 2.5 and late["overrun_s"] == 4.0
    assert pacing_text(late) == "late +2.5 s, switched at +9.0 s, OVERRAN +4.0 s"
    assert pacing(timing, 39, [], None)["overrun_s"] is None  # nothing recorded: nothing claimed


def test_quiesce_waits_for_the_make_whole_each_mgmc_claimed_then_its_bound(tmp_path: Path) -> None:
    from peergrid_sim.quiesce import unpaid_uplift

    genesis = tmp_path / "mgmc-genesis.json"
    genesis.write_text(json.dumps({"contracts": ["exchange", "market", "uplift"], "params": {}}))
    chains = types.SimpleNamespace(mgmc_genesis=genesis)
    loop = types.SimpleNamespace(block_period_ms=1000, interval_s=6.0, chains=chains, dayahead=True)
    bed = types.SimpleNamespace(workdir=tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    (records / "mgmc-mg1.jsonl").write_text('{"uplift_claim": {"posted": true}}\n{"interval": 36}\n')
    (records / "mgmc-mg2.jsonl").write_text('{"forward": {"cleared": false}}\n{"interval": 36}\n')  # no clear
    _status(tmp_path, "mgmc-mg1", {"mgmc-x": (10, "aa", 0)})
    assert unpaid_uplift(records) == ["mgmc-mg1"]
    assert not quiesced(loop, bed) and not (tmp_path / "control" / HALT_FILE).exists()  # its settle is due
    with (records / "mgmc-mg1.jsonl").open("a") as f:
        f.write('{"uplift": {"settled": true}}\n')
    assert unpaid_uplift(records) == []
    assert not quiesced(loop, bed) and (tmp_path / "control" / HALT_FILE).exists()  # paid: the halt
    # a chain without the contract, or a lab without the session, waits for no record; one that never comes
    # is waited for two intervals and six phases (12 + 12 s here) from the end's start, then the halt
    for contracts, dayahead in ((["exchange", "market"], True), (["exchange", "market", "uplift"], False)):
        genesis.write_text(json.dumps({"contracts": contracts, "params": {}}))
        (tmp_path / "control" / HALT_FILE).unlink()
        (records / "mgmc-mg1.jsonl").write_text('{"uplift_claim": {"posted": true}}\n')
        fresh = types.SimpleNamespace(block_period_ms=1000, interval_s=6.0, chains=chains, dayahead=dayahead)
        assert not quiesced(fresh, bed) and (tmp_path / "control" / HALT_FILE).exists()
    genesis.write_text(json.dumps({"contracts": ["exchange", "market", "uplift"], "params": {}}))
    (tmp_path / "control" / HALT_FILE).unlink()
    late = types.SimpleNamespace(block_period_ms=1000, interval_s=6.0, chains=chains, dayahead=True)
    late._quiesce_from = time.time() - 12.0  # half the bound
    assert not quiesced(late, bed) and not (tmp_path / "control" / HALT_FILE).exists()
    late._quiesce_from = time.time() - 36.0  # half as much again past it
    assert not quiesced(late, bed) and (tmp_path / "control" / HALT_FILE).exists()
    # on a settle_by_both chain the make-whole waits for the trades' settling first: its bound comes after that
    # one's (an interval, a poll, the 18-s window and three phases: 31.5 s here), 55.5 s in all
    genesis.write_text(json.dumps({"contracts": ["exchange", "market", "uplift"],
                                   "params": {"settle_by_both": 1, "settle_wait_ms": 18_000}}))  # fmt: skip
    (tmp_path / "control" / HALT_FILE).unlink()
    both = types.SimpleNamespace(block_period_ms=1000, interval_s=6.0, chains=chains, dayahead=True)
    both._quiesce_from = time.time() - 40.0  # past the 24 s alone
    assert not quiesced(both, bed) and not (tmp_path / "control" / HALT_FILE).exists()
    both._quiesce_from = time.time() - 70.0
    assert not quiesced(both, bed) and (tmp_path / "control" / HALT_FILE).exists()

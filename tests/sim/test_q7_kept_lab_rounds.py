"""A kept lab directory whose MGMC genesis caps a bargaining at other rounds than the lab now plays is refused at
the start (R38-3), as one with another exchange fee is: the genesis is never rewritten and every edge plays
min(its own rounds, the cap), so a directory made at 6-s intervals (cap 2) and started again with --interval-s 30
played 2 rounds, not 14, and said nothing. A genesis without a cap (written before the lab named one) is kept as
documented, and the same rounds from another interval are no mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peergrid_ledger.genesis import Genesis
from peergrid_sim.closedloop import LabChains
from peergrid_sim.lab_chains import LabGenesisMismatch, bargaining_rounds, same_rounds
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser, lab_loop

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _start(workdir: Path, *argv: str) -> object:
    """`peergrid-testbed`'s set-up of the lab's chains (`lab_loop`) in `workdir`, as a start with `argv` does it."""
    args = build_parser().parse_args(["--scenario", str(SCENARIO), "--intervals", "3", *argv])
    return lab_loop(args, workdir, load_scenario(SCENARIO))


def _max_rounds(workdir: Path) -> int:
    doc = json.loads((workdir / "keys" / "mgmc-genesis.json").read_text(encoding="utf-8"))
    return int(Genesis.from_json(doc).params.max_rounds)


def test_a_kept_lab_started_at_another_interval_is_refused_naming_both_caps(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    assert _start(workdir) is not None  # the default 6-s lab: cap 2
    written = (workdir / "keys" / "mgmc-genesis.json").read_bytes()
    with pytest.raises(SystemExit) as refused:
        _start(workdir, "--interval-s", "30")
    said = str(refused.value)
    assert said.startswith("peergrid-testbed: ") and "mgmc-genesis.json caps a bargaining at 2 rounds" in said
    assert "--interval-s 30 with --block-period-ms 200 plays 14: its MGMCs would play 2" in said
    assert "use a new --workdir, or an --interval-s and --block-period-ms that play 2 rounds" in said
    assert (workdir / "keys" / "mgmc-genesis.json").read_bytes() == written  # never rewritten
    # a block period that changes the rounds is refused alike; the interval it was made with is taken again
    with pytest.raises(SystemExit, match="--block-period-ms 50 plays 11"):
        _start(workdir, "--block-period-ms", "50")
    assert _start(workdir) is not None
    assert _max_rounds(workdir) == 2


def test_the_same_rounds_from_another_interval_are_no_mismatch(tmp_path: Path) -> None:
    assert bargaining_rounds(6.0, 200) == bargaining_rounds(5.0, 200) == 2
    assert _start(tmp_path / "lab") is not None
    assert _start(tmp_path / "lab", "--interval-s", "5") is not None


def test_a_kept_genesis_without_a_cap_and_a_new_directory_are_not_refused(tmp_path: Path) -> None:
    # written before the lab named its rounds: kept, and its MGMCs play their own (docs/ledger-format.md)
    LabChains.create(tmp_path / "old" / "keys", "ieee33", SCENARIO)
    assert _max_rounds(tmp_path / "old") == 0
    assert _start(tmp_path / "old", "--interval-s", "30") is not None
    assert _max_rounds(tmp_path / "old") == 0
    same_rounds(
        tmp_path / "none" / "keys" / "mgmc-genesis.json", 30.0, 200
    )  # nothing there yet: nothing refused


def test_the_check_itself_raises_the_lab_genesis_mismatch(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, rounds=bargaining_rounds(30.0, 200))
    same_rounds(chains.mgmc_genesis, 30.0, 200)
    with pytest.raises(LabGenesisMismatch, match=r"caps a bargaining at 14 rounds.*--interval-s 6 with"):
        same_rounds(chains.mgmc_genesis, 6.0, 200)
    chains.mgmc_genesis.write_text("{}", encoding="utf-8")  # not a genesis: named, not a traceback
    with pytest.raises(LabGenesisMismatch, match="a genesis this lab can no longer run"):
        same_rounds(chains.mgmc_genesis, 6.0, 200)
    # cut short (a lab stopped while `create` wrote it): named too, at every start of the kept directory (R40-2)
    chains.mgmc_genesis.write_text('{"chain": "mgmc", "auth', encoding="utf-8")
    with pytest.raises(
        LabGenesisMismatch, match=r"mgmc-genesis.json is no genesis \(it does not read as JSON"
    ):
        same_rounds(chains.mgmc_genesis, 6.0, 200)

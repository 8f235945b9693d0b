"""`peergrid-dso reconfigure --verify S`: the independent SCIP check through the CLI, and its bad inputs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from peergrid_dso.commands import reconfigure as command


def test_without_verify_the_check_fields_are_null(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--case", "case33bw", "--json", "--no-validate"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["verify_bound_kw"] is None and answer["verify_gap"] is None
    assert answer["verify_proven"] is False


def test_verify_proves_the_33_bus_optimum(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyscipopt")
    assert command.main(["--case", "case33bw", "--json", "--verify", "300"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["open_branches"] == [7, 9, 14, 32, 37]
    assert answer["verify_proven"] is True
    assert answer["verify_bound_kw"] <= answer["losses_kw"]
    assert answer["verify_gap"] <= 1e-3 + 1e-9


def test_verify_out_of_range_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--case", "case33bw", "--verify", "-1"]) == 2
    assert "--verify" in capsys.readouterr().err


def test_verify_without_scip_exits_2_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyscipopt" else real(name, *a)
    )
    assert command.main(["--case", "case33bw", "--verify", "10"]) == 2
    assert "peergrid-dso[verify]" in capsys.readouterr().err


def test_the_verifier_without_scip_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from peergrid_dso.feeder.cases import case33bw
    from peergrid_dso.services.loss_verify import ScipUnavailable, verify_with_scip
    from peergrid_dso.services.powerflow import net_injection_mw

    monkeypatch.setitem(sys.modules, "pyscipopt", None)  # `import pyscipopt` now fails as if not installed
    feeder = case33bw()
    p, q = net_injection_mw(feeder)
    with pytest.raises(ScipUnavailable, match=r"peergrid-dso\[verify\]"):
        verify_with_scip(feeder, (33, 34, 35, 36, 37), 202.68, p, q, 0.90, time_limit_s=1.0)

"""The lab's owner-guard option (`--rationality`, `--risk-allowance`; off by default): it turns on every MGMC's
intraday individual-rationality guard on the market's price forecast in its edge config, which the edge daemon
accepts; the default config is the edge's default (off, no forecast); an allowance without strict, or one that
is not an amount, is refused with one line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from peergrid_edge.config import EdgeSettings
from peergrid_sim.closedloop import LabChains, LoopTiming, OwnerGuard, edge_config
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser, lab_loop, owner_guard

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def _settings(chains: LabChains, tmp_path: Path, guard: OwnerGuard | None) -> EdgeSettings:
    timing = LoopTiming(1000.0, 6.0, 36, 4, guard=guard)
    doc = edge_config(
        chains, chains.mgs[0], "ieee33", ("127.0.0.1", 1883), tmp_path / "node", [], SCENARIO, timing,
        tmp_path / "records",
    )  # fmt: skip
    return EdgeSettings.model_validate(doc)


def test_the_option_turns_on_every_mgmcs_guard_and_the_default_leaves_it_off(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    off = _settings(chains, tmp_path, None).market
    assert off is not None and (off.rationality, off.forecast, off.risk_allowance) == ("off", "none", 0.0)
    strict = _settings(chains, tmp_path, OwnerGuard("strict", 2.5)).market
    assert strict is not None and (strict.rationality, strict.forecast, strict.risk_allowance) == (
        "strict", "market", 2.5,
    )  # fmt: skip
    trades = _settings(chains, tmp_path, OwnerGuard("trades")).market
    assert trades is not None and (trades.rationality, trades.forecast) == ("trades", "market")
    with pytest.raises(ValueError, match=r"risk_allowance 1 needs market\.rationality strict"):
        _settings(chains, tmp_path, OwnerGuard("trades", 1.0))  # the edge refuses it: so does the testbed


def test_the_testbed_passes_the_guard_to_its_loop_and_refuses_bad_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parse = build_parser().parse_args
    assert owner_guard(parse([])) is None
    assert owner_guard(parse(["--rationality", "strict"])) == OwnerGuard("strict", 0.0)
    assert owner_guard(parse(["--rationality", "strict", "--risk-allowance", "3"])) == OwnerGuard(
        "strict", 3.0
    )
    with pytest.raises(SystemExit, match="--risk-allowance needs --rationality strict"):
        owner_guard(parse(["--rationality", "trades", "--risk-allowance", "3"]))
    with pytest.raises(SystemExit, match="--risk-allowance needs --rationality strict"):
        owner_guard(parse(["--risk-allowance", "3"]))
    for bad in ("-1", "nan", "inf", "lots"):
        with pytest.raises(SystemExit):
            parse(["--rationality", "strict", "--risk-allowance", bad])
        assert "--risk-allowance: not a currency amount >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--rationality", "loose"])
    assert "invalid choice: 'loose'" in capsys.readouterr().err
    args = parse(
        [
            "--scenario",
            str(SCENARIO),
            "--intervals",
            "2",
            "--rationality",
            "strict",
            "--risk-allowance",
            "1.5",
        ]
    )
    with tempfile.TemporaryDirectory() as workdir:
        loop = lab_loop(args, Path(workdir), load_scenario(SCENARIO))
        assert loop is not None and loop.loop_timing().guard == OwnerGuard("strict", 1.5)

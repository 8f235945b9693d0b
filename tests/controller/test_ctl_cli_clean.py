"""peergrid-market simulate --clean-book: the day-ahead clean book from the command line (cleanbook.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from peergrid_controller.cli import main

ROOT = Path(__file__).resolve().parents[2]
IEEE33 = ROOT / "firmware-sim/scenarios/ieee33.yaml"


def clean_only_day(tmp_path: Path) -> Path:
    """The lab's feeder with mg4 (the load-heavy district) buying only renewable-backed energy."""
    doc = yaml.safe_load(IEEE33.read_text())
    doc.setdefault("market", {})["mg_rules"] = {"mg4": {"clean_only": True, "clean_premium": 0.02}}
    path = tmp_path / "clean.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def day(capsys: pytest.CaptureFixture[str], scenario: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    args = ["simulate", "--scenario", str(scenario), "--intervals", "60", "--market", "dayahead"]
    assert main([*args, "--venue", "memory", "--no-central", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_with_the_clean_book_a_clean_only_buyer_gets_day_ahead_trades(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = clean_only_day(tmp_path)
    off, on = day(capsys, scenario), day(capsys, scenario, "--clean-book")

    def bought(result: dict) -> float:  # type: ignore[type-arg]
        trades = [t for i in result["intervals"] for t in i["trades"]]
        return sum(t["quantity_kwh"] for t in trades if t["buyer"] == "mg4")

    assert bought(off) == 0.0  # the general book has nothing a clean-only buyer may take
    assert bought(on) > 0.0
    assert on["total"]["p2p_welfare"] > off["total"]["p2p_welfare"]


def test_clean_book_is_only_for_the_day_ahead_market(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--synthetic", "3", "--intervals", "2", "--clean-book"]) == 2
    assert "--clean-book needs --market dayahead" in capsys.readouterr().err

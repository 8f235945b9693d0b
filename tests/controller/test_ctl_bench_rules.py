"""The market bench's rules-day re-run (`python -m bench.bench_market --rules`): only the owner-rules rows of
bench/results/market.md change, in both tables, and a section without them is refused, never half-written."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, where bench/ lives

from bench import bench_market

SECTION = """## P2P market (controller)

| MGs | intervals | P2P gain / central gain | rest |
|---|---|---|---|
| 6 | 96 | 0.701 | old free row |
| 20 + owner rules | 96 | 0.499 | old intraday rules row |
| 20 + owner rules, day-ahead | 96 | 0.983 | old day-ahead rules row |

| MGs | ADMM iterations (stop) | rest |
|---|---|---|
| 6, day-ahead | 21 (value) | old free row |
| 20 + owner rules, day-ahead | 81 (value) | old day-ahead rules row |

How to read it: unchanged.

_Run 2026-12-05 09:35 UTC on x86_64, 3.11.7, took 2546 s._
"""


def fake_rows(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Two rows as `rules_rows` gives them, formatted by stand-ins that say which row and table they are."""
    monkeypatch.setattr(bench_market, "_row", lambda r: f"| {r['n']} | fresh |")
    monkeypatch.setattr(bench_market, "dayahead_row", lambda r: f"| {r['n']} | fresh day-ahead |")
    return [
        {"n": "20 + owner rules", "dayahead": None},
        {"n": "20 + owner rules, day-ahead", "dayahead": SimpleNamespace()},
    ]


def test_only_the_rules_rows_change_in_both_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = fake_rows(monkeypatch)
    out = bench_market.rerun_rules(SECTION, rows, "_Rules-day rows re-run alone NOW._")
    lines = out.splitlines()
    assert (
        "| 6 | 96 | 0.701 | old free row |" in lines
        and "| 6, day-ahead | 21 (value) | old free row |" in lines
    )
    assert not any("old intraday rules row" in line or "old day-ahead rules row" in line for line in lines)
    first = lines.index("| 20 + owner rules | fresh |")
    assert lines[first + 1] == "| 20 + owner rules, day-ahead | fresh |"
    assert lines[first + 2] == ""  # in place: the table ends where it did
    assert lines.count("| 20 + owner rules, day-ahead | fresh day-ahead |") == 1
    assert lines[-1] == "_Rules-day rows re-run alone NOW._"
    assert (
        "_Run 2026-12-05 09:35 UTC on x86_64, 3.11.7, took 2546 s._" in lines
    )  # the full run's footer stays
    # a second re-run replaces the first one's note instead of adding another
    again = bench_market.rerun_rules(out, rows, "_Rules-day rows re-run alone LATER._")
    assert "NOW" not in again and again.splitlines()[-1] == "_Rules-day rows re-run alone LATER._"


def test_a_section_without_rules_rows_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = fake_rows(monkeypatch)
    free_only = "\n".join(line for line in SECTION.splitlines() if "owner rules" not in line)
    with pytest.raises(ValueError, match="no rules-day row to replace in the market and dayahead table"):
        bench_market.rerun_rules(free_only, rows, "note")
    no_dayahead_table = "\n".join(line for line in SECTION.splitlines() if "old day-ahead rules row" not in line
                                  or "0.983" in line)  # fmt: skip
    with pytest.raises(ValueError, match="in the dayahead table"):
        bench_market.rerun_rules(no_dayahead_table, rows, "note")

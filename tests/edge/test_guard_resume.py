"""A restarted agent's guard budget from its records (`resume_spend.recorded_spend`, `RecordedSpend.resumed`): the
day's budget and the sum of the recorded `cost_p2p` before the interval it resumes at, read best effort line by
line (review15 M3), and the record readers' one shared parse (`record_object`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.resume import record_object
from peergrid_edge.resume_spend import recorded_spend, spend_of


def resumed_budget(records: Path | None, t: int) -> tuple[float, float] | None:
    return recorded_spend(records, t).resumed


def budget_of(lines: list[str], t: int) -> tuple[tuple[float, float] | None, list[str]]:
    """The budget one pass over the lines finds (`spend_of`) and why it skipped a line."""
    spend, errors = spend_of(lines, t)
    return spend.resumed, errors


def line(t: int, cost: object = 1.0, day: object = 50.0, **more: object) -> str:
    return json.dumps({"interval": t, "cost_p2p": cost, "budget_day": day, **more})


def test_the_budget_is_the_days_and_the_costs_before_the_interval_summed(tmp_path: Path) -> None:
    records = tmp_path / "market.jsonl"
    records.write_text("\n".join([line(3, 2.5), line(4, -1.0), line(5, 4.0), line(6, 9.0)]) + "\n")
    assert resumed_budget(records, 6) == (50.0, 5.5)  # 2.5 - 1.0 + 4.0: interval 6 is not yet spent
    assert resumed_budget(records, 3) is None  # nothing before the first: a fresh budget
    assert resumed_budget(tmp_path / "none.jsonl", 6) is None
    assert resumed_budget(None, 6) is None


def test_the_last_record_of_an_interval_counts_once_and_lines_without_a_cost_add_nothing() -> None:
    lines = [line(3, 2.0), line(3, 3.0), json.dumps({"interval": 4, "error": "failed; see the log"}),
             json.dumps({"dayahead": {"completed": True}}), ""]  # fmt: skip
    assert budget_of(lines, 9) == ((50.0, 3.0), [])


@pytest.mark.parametrize(
    ("damaged", "why"),
    [
        (line(4, 2.0)[:-9], "is not JSON"),  # torn by a crash mid-write
        ("[4, 2.0]", "is not a JSON object"),
        (line(4, "2.0"), "not a number"),
        (line(4, float("nan")), "not a number"),
        (line(4, True), "not a number"),
        (line(4, 2.0, day=None).replace('"interval": 4', '"interval": "4"'), "not an interval number"),
    ],
)
def test_a_damaged_line_is_logged_and_skipped_and_every_good_line_kept(
    tmp_path: Path, damaged: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    records = tmp_path / "market.jsonl"
    records.write_text("\n".join([line(3, 2.0), damaged, line(5, 1.5)]) + "\n")
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        assert resumed_budget(records, 6) == (50.0, 3.5)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "peergrid.edge.trader"]
    assert f"record {records}: line 2" in warning and why in warning


def test_a_byte_that_is_not_utf8_is_named_and_the_line_read_as_it_stands(tmp_path: Path) -> None:
    records = tmp_path / "market.jsonl"
    records.write_bytes(line(3, 2.0, note="\u00e9").encode().replace(b"\\u00e9", b"\xff") + b"\n")
    found, errors = budget_of(records.read_bytes().decode("utf-8", "replace").splitlines(), 9)
    assert found == (50.0, 2.0) and len(errors) == 1 and "not UTF-8" in errors[0]


def test_the_shared_parse_refuses_what_is_not_a_json_object() -> None:
    assert record_object('{"interval": 1}') == ({"interval": 1}, "")
    assert record_object("[1]") == (None, "it is not a JSON object")
    doc, why = record_object("{")
    assert doc is None and why.startswith("it is not JSON (")
    doc, why = record_object("[" * 100_000)  # nested past the parser's depth
    assert doc is None and why.startswith("it is not JSON (")


@given(st.lists(st.one_of(
    st.builds(line, st.integers(0, 12), st.floats(-50, 50), st.floats(0, 100)),
    st.sampled_from(["", "{", "null", "[]", '{"interval": 3}', '{"interval": 3, "cost_p2p": null}',
                     '{"interval": 3, "cost_p2p": "x"}']),
), max_size=20), st.integers(0, 13))  # fmt: skip
def test_any_record_is_read_without_raising_and_counts_only_good_costs_before_t(
    lines: list[str], t: int
) -> None:
    found, errors = budget_of(lines, t)
    good = {}
    day = None
    for text in lines:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("cost_p2p"), float) and doc["interval"] < t:
            good[doc["interval"]] = doc["cost_p2p"]
            day = doc["budget_day"]
    if day is None:
        assert found is None
    else:
        assert found is not None and found[0] == day and found[1] == pytest.approx(sum(good.values()))
    assert all(e.startswith("line ") for e in errors)

"""The lab's one reader of appended JSON lines (`report.json_lines`): the progress lines, the end's settling
wait and the report all read the nodes' record files through it. A line that is not one whole JSON object is
skipped wherever it is (a torn last line being written; a record its writer was killed in the middle of, with
the restarted writer's records after it), and every whole record is read, in order."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from peergrid_sim.closedloop import unsettled_in_records
from peergrid_sim.closedloop_run import ClosedLoop
from peergrid_sim.report import json_lines


def test_a_file_not_written_yet_has_no_records(tmp_path: Path) -> None:
    assert json_lines(tmp_path / "mgmc-mg1.jsonl") == []


def test_a_truncated_last_line_is_left_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "mgmc-mg1.jsonl"
    first = {"interval": 36, "trades": [{"id": "t1"}]}
    path.write_text(json.dumps(first) + '\n{"interval": 37, "trad', encoding="utf-8")
    assert json_lines(path) == [first]
    with path.open("a", encoding="utf-8") as out:  # the writer finishes the line
        out.write('es": []}\n')
    assert json_lines(path) == [first, {"interval": 37, "trades": []}]


def test_a_corrupt_middle_line_does_not_hide_the_records_after_it(tmp_path: Path) -> None:
    # an MGMC SIGKILLed while writing a record, then restarted: its next record lands on the torn line's end
    path = tmp_path / "mgmc-mg1.jsonl"
    before, after = {"interval": 36, "trades": []}, {"interval": 38, "trades": [{"id": "t3"}]}
    torn = '{"interval": 37, "trades": [{"id"' + json.dumps({"interval": 37, "restarted": True})
    path.write_text("\n".join([json.dumps(before), torn, "[1, 2]", "", json.dumps(after)]) + "\n")
    assert json_lines(path) == [before, after]  # a line that is no object (or empty) is no record either


def test_the_settling_wait_sees_a_settlement_written_after_a_torn_line(tmp_path: Path) -> None:
    # stopping at the torn line, the end saw t1 traded but never its settlement, and waited out its bound
    records = tmp_path / "records"
    records.mkdir()
    lines = [
        json.dumps({"interval": 36, "trades": [{"id": "t1"}]}),
        '{"interval": 36, "settlement": {"trade": "t0", "sett',
        json.dumps({"interval": 36, "settlement": {"trade": "t1", "settled": True}}),
    ]
    (records / "mgmc-mg1.jsonl").write_text("\n".join(lines) + "\n")
    assert unsettled_in_records(records) == []


def test_the_progress_lines_see_an_interval_recorded_after_a_torn_line(tmp_path: Path) -> None:
    # a progress line waits until every MGMC recorded the interval (or a while passed): stopping at the torn
    # line, the interval looked unrecorded
    records = tmp_path / "bed" / "records"
    records.mkdir(parents=True)
    now = time.time()
    (records / "dso.jsonl").write_text(json.dumps({"interval": 36, "times": {"end": now}}) + "\n")
    trade = {"id": "t1", "quantity_kwh": 2.0, "price": 0.2}
    torn = '{"interval": 35, "tr' + json.dumps({"interval": 36, "trades": [trade], "rounds": [1, 2]})
    (records / "mgmc-mg1.jsonl").write_text(torn + "\n")
    bed = SimpleNamespace(workdir=tmp_path / "bed")
    assert ClosedLoop(intervals=1).poll(bed) == []  # mg1's record of 36 is on the torn line: not read
    with (records / "mgmc-mg1.jsonl").open("a") as out:
        out.write(json.dumps({"interval": 36, "trades": [trade], "rounds": [1, 2]}) + "\n")
    (line,) = ClosedLoop(intervals=1).poll(bed)
    assert line.startswith("interval  36") and " 1 trades     2.0 kWh @ 0.200 | rounds 2" in line, line


records_st = st.lists(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none()),
        max_size=4,
    ),
    max_size=8,
)


@given(
    records=records_st,
    bad=st.lists(st.sampled_from(['{"interval": 3', "not json", "", "[1]", "7", '{"a": }']), max_size=4),
    where=st.lists(st.integers(min_value=0), max_size=4),
    torn=st.integers(min_value=0, max_value=200),
)
def test_every_whole_record_is_read_in_order_whatever_lines_are_not(
    tmp_path_factory: Any, records: list[dict[str, Any]], bad: list[str], where: list[int], torn: int
) -> None:
    lines = [json.dumps(r) for r in records]
    for line, at in zip(bad, where, strict=False):
        lines.insert(at % (len(lines) + 1), line)
    tail = json.dumps({"being": "written", "pad": "x" * 8})
    text = "\n".join(lines) + ("\n" if lines else "") + tail[: torn % len(tail)]
    path = tmp_path_factory.mktemp("records") / "mgmc-mg1.jsonl"
    path.write_text(text, encoding="utf-8")
    assert json_lines(path) == records

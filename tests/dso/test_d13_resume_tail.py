"""D13: a restarted DSO node reads where it resumes from the tail of its record file
(`interval_resume.last_recorded`), not the whole file, with the whole-file reading's answer.

The reference is the reading before D13 (`whole_file_resume`, copied here): every line of the file decoded. The
properties: on any file shorter than the window, and on any file whose records of the loop's range come in
order (as the node writes them) whatever the window, the two agree - torn lines (in the middle and last), lines
that are no record, records of other intervals, lines cut by a block's edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso import interval_resume
from peergrid_dso.interval_resume import Resume, last_recorded, recorded_intervals, resume_at
from peergrid_ledger.settings import ConfigError


def whole_file_resume(record_file: Path, first: int, end: int | None) -> Resume:
    """`resume_at` before D13 (0a35e9f): every line decoded, the latest of [first, end) resumed after."""
    span = f"{first}-{end - 1}" if end is not None else f"{first}- (no last interval)"
    try:
        with record_file.open("rb") as lines:
            done = [t for t in recorded_intervals(lines) if first <= t and (end is None or t < end)]
    except FileNotFoundError:
        done = []
    if not done:
        return Resume(
            first, f"the loop starts at interval {first} of {span} (no interval of it in {record_file})"
        )
    last = max(done)
    if end is not None and last + 1 >= end:
        return Resume(end, f"restarted: every interval of {span} is finished ({record_file}); nothing to run")
    return Resume(
        last + 1,
        f"restarted: resuming at interval {last + 1} of {span}: {record_file} holds {first}-{last} finished",
    )


def record(t: int, pad: int = 0, **more: object) -> bytes:
    return json.dumps({"interval": t, "verdict": "secure", "pad": "x" * pad, **more}).encode() + b"\n"


NOT_RECORDS = [
    b"not json\n",
    b"\n",
    b"\r\n",
    b'{"x": 1}\n',
    b"[1, 2]\n",
    b'{"interval": true}\n',
    b'{"interval": 7.0}\n',
    b'{"interval": "7"}\n',
    b'{"nested": {"interval": 9}}\n',
    b"\x00\x00\x00\n",
    # no line end of iterating's: glued to the next line; an interval no range holds, since glued to b"\n" or
    # b"\r\n" it is a record, which would break an in-order file's order (RR2: the in-order property failed so)
    '{"interval": -7, "note": "\u00e9\u2028"}\r'.encode(),
    b"\xff\xfe{\n",
]


@st.composite
def record_file(draw: st.DrawFn, ordered: bool) -> tuple[bytes, list[int]]:
    """A record file's bytes: records (in interval order when `ordered`), torn records in the middle (the next
    append ends them) and maybe last, lines that are no record. Returns the bytes and the intervals drawn."""
    count = draw(st.integers(0, 40))
    intervals = draw(st.lists(st.integers(-3, 60), min_size=count, max_size=count))
    if ordered:
        intervals.sort()
    body = b""
    for t in intervals:
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.integers(0, 2))
            if kind == 0:
                body += draw(st.sampled_from(NOT_RECORDS))
            elif kind == 1:  # a writer killed mid-line: `append_record` ends it before the next record
                whole = record(draw(st.integers(-3, 60)), draw(st.integers(0, 40)))
                body += whole[: draw(st.integers(1, len(whole) - 2))] + b"\n"
            else:
                body += record(t, 0, missed="the node was down")  # the same interval recorded twice
        body += record(t, draw(st.integers(0, 120)))
    if draw(st.booleans()):  # torn last line
        whole = record(draw(st.integers(-3, 60)), draw(st.integers(0, 40)))
        body += whole[: draw(st.integers(1, len(whole) - 2))]  # (cut before its "}": at -1 it is a record)
    return body, intervals


RANGES = st.tuples(st.integers(-2, 62), st.one_of(st.none(), st.integers(-2, 64)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    drawn=record_file(ordered=True), ranges=st.lists(RANGES, min_size=1, max_size=4), back=st.integers(1, 400)
)
def test_in_order_records_resume_where_the_whole_file_says_whatever_the_window(
    tmp_path: Path, drawn: tuple[bytes, list[int]], ranges: list[tuple[int, int | None]], back: int
) -> None:
    body, _ = drawn
    path = tmp_path / "records.jsonl"
    path.write_bytes(body)
    for first, end in ranges:
        if end is not None and end <= first:
            continue
        interval_resume.BACK_BYTES, saved = back, interval_resume.BACK_BYTES
        try:
            assert resume_at(path, first, end) == whole_file_resume(path, first, end)
        finally:
            interval_resume.BACK_BYTES = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=record_file(ordered=False), ranges=st.lists(RANGES, min_size=1, max_size=4))
def test_any_file_shorter_than_the_window_resumes_where_the_whole_file_says(
    tmp_path: Path, drawn: tuple[bytes, list[int]], ranges: list[tuple[int, int | None]]
) -> None:
    body, _ = drawn
    path = tmp_path / "records.jsonl"
    path.write_bytes(body)
    for first, end in ranges:
        if end is not None and end <= first:
            continue
        assert resume_at(path, first, end) == whole_file_resume(path, first, end)
        whole = _whole_last(path, first, end)
        for back in (len(body) + 1, len(body) + 2, 1 << 20):  # the window holds the whole file
            assert last_recorded(path, first, end, back) == whole


def _whole_last(path: Path, first: int, end: int | None) -> int | None:
    with path.open("rb") as lines:
        return max(
            (t for t in recorded_intervals(lines) if first <= t and (end is None or t < end)), default=None
        )


def test_the_window_reads_back_past_blocks_without_a_record_of_the_range(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(
        record(41) + record(42) + b"".join(record(1000 + k, 50) for k in range(200)) + b'{"inter'
    )
    assert resume_at(path, 40, 52).interval == 43  # 200 records of another range after them, a torn last line
    assert last_recorded(path, 40, 52, back=64) == 42
    assert last_recorded(path, 40, 41, back=64) is None


def test_what_a_tail_cannot_know_is_the_one_difference(tmp_path: Path) -> None:
    """Documented (module): a range run wholly below records the file had, then one spanning both."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(
        b"".join(record(t) for t in range(1000, 1010)) + b"".join(record(t) for t in range(0, 5))
    )
    assert whole_file_resume(path, 0, None).interval == 1010
    assert last_recorded(path, 0, None, back=10**6) == 1009  # within the window: the whole file's answer
    assert last_recorded(path, 0, None, back=200) == 4  # the later record lies before the blocks read


def test_a_record_file_that_cannot_be_read_is_still_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "records.jsonl"
    folder.mkdir()
    with pytest.raises(
        ConfigError, match=r"loop\.record_file: .*records\.jsonl: cannot read it \(Is a directory\)"
    ):
        resume_at(folder, 40, 52)
    assert resume_at(tmp_path / "none.jsonl", 40, 52).interval == 40


def year_file(path: Path, intervals: int = 35_040) -> int:
    """A pilot's year of 15-min records, ~1.7 KB each (a 33-bus feeder's), and the odd missed one."""
    pad = "v" * 1_500
    with path.open("wb") as out:
        for t in range(intervals):
            doc = (
                {"interval": t, "verdict": "secure", "missed": "node down"}
                if t % 997 == 5
                else {
                    "interval": t,
                    "verdict": "secure",
                    "iterations": 1,
                    "open": [7, 9, 14, 32, 37],
                    "bus_v": pad,
                }
            )
            out.write(json.dumps(doc).encode() + b"\n")  # fmt: skip
    return path.stat().st_size


class Counted(type(Path())):  # type: ignore[misc]
    """A path whose opened files count the bytes read from them (`read_bytes_total`, per class)."""

    read_bytes_total = 0

    def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return _Counting(super().open(*args, **kwargs))


class _Counting:
    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> _Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def __iter__(self) -> Any:
        for line in self.f:
            Counted.read_bytes_total += len(line)
            yield line

    def seek(self, *args: Any) -> int:
        return int(self.f.seek(*args))

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        Counted.read_bytes_total += len(data)
        return bytes(data)


def test_a_years_file_is_read_from_its_tail(tmp_path: Path) -> None:
    size = year_file(tmp_path / "records.jsonl")
    path = Counted(tmp_path / "records.jsonl")
    assert size > 50_000_000
    Counted.read_bytes_total = 0
    resume = resume_at(path, 0, None)
    read = Counted.read_bytes_total
    assert resume == whole_file_resume(path, 0, None) == (35_040, resume.said)
    assert (
        Counted.read_bytes_total - read == size
    )  # the counting sees a whole-file read (the reading before D13)
    print(f"a year's record file of {size:,} bytes: {read:,} read at a start")
    assert read <= interval_resume.BACK_BYTES  # before D13: the whole file

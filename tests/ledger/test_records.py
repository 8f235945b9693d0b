"""Record files: a record appended after a torn one (its writer killed mid-line) is a line of its own."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from peergrid_ledger.records import append_record

records = st.lists(
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=3), max_size=5
)


def whole(path: Path) -> list[object]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_a_record_after_a_torn_line_stays_whole(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, {"interval": 4, "plan_confirmed": True})
    with path.open("ab") as out:
        out.write(b'{"interval": 5, "pl')  # the writer was killed here
    append_record(path, {"interval": 6, "plan_confirmed": True})
    assert whole(path) == [{"interval": 4, "plan_confirmed": True}, {"interval": 6, "plan_confirmed": True}]


def test_values_json_cannot_hold_are_written_as_their_str(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, {"path": tmp_path})
    assert whole(path) == [{"path": str(tmp_path)}]


@given(
    before=records,
    torn=st.text(st.characters(codec="ascii", exclude_characters="\n\r"), max_size=20),
    after=records,
)
def test_every_whole_record_is_read_back_in_order(tmp_path_factory, before, torn, after):
    path = tmp_path_factory.mktemp("r") / "records.jsonl"
    for doc in before:
        append_record(path, doc)
    with path.open("ab") as out:
        out.write(torn.encode())
    for doc in after:
        append_record(path, doc)
    read = whole(path)
    it = iter(
        read
    )  # every record appended is read back, in order (a torn fragment that parses may sit between)
    assert all(any(doc == r for r in it) for doc in before + after)

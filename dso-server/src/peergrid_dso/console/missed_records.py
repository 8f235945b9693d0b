"""The intervals the DSO node missed, read back from its record file when the console starts (D10).

Promises: `read_back(record_file)` is the node's records of missed intervals (`interval_missed.missed_record`: an
interval that ended while the node was down; `missed` says why) among the last `READ_BACK_BYTES` of
`loop.record_file`, in file order, for the console to show again as its listener showed them (`ConsoleState.
read_back_missed`). Why: the console hears of a miss only through the node's listener (`on_interval`), so after
a server restart the Feeder view's alarm and the Market view's `missed` of the intervals missed before it were
gone, though the record file keeps them. Bounded as the node's records on the DSO chain are
(`node_records.SCAN_BACK`): a pilot's file grows by some 35,000 records a year, and the views show the recent
past (the Feeder view's last 20 alarms); older misses stay in the file. The window's first line, cut by it, a
torn line (a writer killed mid-line), a line that is no record and a record of an interval the node worked on
are passed over; no file (a first start) or none configured gives none; a file it cannot read gives none and
one WARNING (the console shows the live loop without them; the node itself refuses to start on a record file
it cannot read, `interval_resume`). Reads only; only lines naming `missed` are decoded.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("peergrid_dso.console")

# some 1,000 to 1,400 intervals of a 33-bus feeder's records (1.5-2 KB each; a missed one is some 150 bytes): ten
# days and more of 15-minute intervals, read in a few tens of ms
READ_BACK_BYTES = 2 * 1024 * 1024
MISSED_KEY = (
    b'"missed"'  # in every missed record; never in one the node worked on (its `missing` is another key)
)


def read_back(record_file: Path | None, back: int = READ_BACK_BYTES) -> list[dict[str, Any]]:
    """The missed-interval records in the last `back` bytes of `record_file`, in file order (module)."""
    if record_file is None:
        return []
    try:
        with record_file.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - back - 1)  # the byte before the window: is its first line whole?
            f.seek(start)
            tail = f.read(size - start)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning(
            "the DSO node's records (%s) could not be read (%s): the intervals it missed before this start"
            " are not shown",
            record_file,
            exc.strerror or exc,
        )
        return []
    lines = tail.split(b"\n")
    if (
        start > 0
    ):  # up to the first line end is the line the window cut (or nothing, the byte before a whole one)
        lines = lines[1:]
    return [doc for line in lines if MISSED_KEY in line and (doc := _missed(line)) is not None]


def _missed(line: bytes) -> dict[str, Any] | None:
    """The missed record on `line`, or None for a torn line or any other."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("missed"):
        return None
    interval = doc.get("interval")
    return doc if isinstance(interval, int) and not isinstance(interval, bool) else None

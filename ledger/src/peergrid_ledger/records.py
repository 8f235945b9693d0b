"""Record files: JSON objects appended one a line by a node (the edge's interval records, the DSO's interval
and dispute records), read back after a restart and by the lab.

Promises: `append_record(path, doc)` appends `doc` as one JSON line (values JSON cannot hold as their `str`).
A writer killed in the middle of a record leaves a line without its newline; the next append ends that torn
line first, so the new record is a line of its own and stays readable (without it the record would be glued
onto the torn one and both would be lost to every reader). The torn line itself stays, and readers skip it.
Does not fsync: a record is as durable as the page cache, which is what the records are for (a power cut may
lose the last ones, never corrupt an earlier one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(path: Path, doc: Any) -> None:
    line = json.dumps(doc, default=str).encode() + b"\n"
    with path.open("a+b") as out:  # a+: every write goes to the end; reading the last byte is allowed
        end = out.seek(0, 2)
        if end:
            out.seek(end - 1)
            if out.read(1) != b"\n":
                line = b"\n" + line
        out.write(line)

"""The MGMCs' interval records as the live Market view reads them (the lab's `loop.mgmc_records`; the pilot has
none: its MGs' costs stay private to their MGMCs).

Promises: `read_records(folder)` reads every `mgmc-<mg>.jsonl` there as it stands: per interval each MG's costs
(`COSTS`), which MGs wrote any record of it, each MG's last interval, the trading keys the records name and the
records whose costs cannot be read (`unreadable_cost`: why). A line being written, or not JSON, and a trade's
settlement line are passed over; of an MG's records of an interval its last interval record counts, readable or
not; an error record (no cost field) says the interval failed for that MG (see `console.live_market`'s contract,
where what these mean for the welfare is said). An unreadable file is passed over. Reads only; no clock.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_HEX = re.compile(r"[0-9a-f]{64}")
COSTS = ("cost_p2p", "cost_conventional", "p2p_money")  # what the view reads of an MGMC's interval record


@dataclass
class Records:
    """What the MGMCs' interval records say (the lab's; empty in the pilot)."""

    costs: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # interval -> MG -> its costs
    written: dict[int, set[str]] = field(default_factory=dict)  # interval -> the MGs with any record of it
    last: dict[str, int] = field(default_factory=dict)  # MG -> the last interval its records name
    keys: dict[str, str] = field(default_factory=dict)  # trading key (hex) -> the MG whose records name it
    unreadable: dict[int, dict[str, str]] = field(default_factory=dict)  # interval -> MG -> which field, why


def read_records(folder: Path | None) -> Records:
    """The MGMCs' interval records as they stand (lines being written, or not JSON, are left out)."""
    found = Records()
    if folder is None:
        return found
    for path in sorted(folder.glob("mgmc-*.jsonl")):
        mg = path.stem.removeprefix("mgmc-")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
                t = rec["interval"]
            except (ValueError, KeyError, TypeError):
                continue  # a line being written
            if type(t) is not int or "settlement" in rec:
                # a trade's settlement line (edge `Settler`) is no record of the interval: without
                # settle_by_both a refused first attempt writes it before the interval's record, and after a
                # restart it may be the interval's only line (R40-3: read as 'its record says it failed')
                continue
            found.written.setdefault(t, set()).add(mg)
            found.last[mg] = max(t, found.last.get(mg, t))
            if isinstance(key := rec.get("anonym"), str) and KEY_HEX.fullmatch(key):
                found.keys[key] = mg
            if not any(k in rec for k in COSTS):
                continue  # an error record: the interval failed for that MG
            # the last interval record counts (an MGMC may write one again), readable or not; an error
            # record above only where there is none (see the module's contract)
            if (why := unreadable_cost(rec)) is not None:
                found.unreadable.setdefault(t, {})[mg] = why
                found.costs.get(t, {}).pop(mg, None)
                continue
            found.costs.setdefault(t, {})[mg] = {k: float(rec[k]) for k in COSTS}
            found.unreadable.get(t, {}).pop(mg, None)
    return found


def unreadable_cost(rec: dict[str, Any]) -> str | None:
    """Pure: why an MGMC's interval record's costs cannot be read (the first of `COSTS` missing or not a finite
    JSON number, e.g. 'cost_p2p is NaN, not a finite number'), or None when all three can."""
    for k in COSTS:
        if k not in rec:
            return f"{k} is missing"
        value = rec[k]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{k} is {json.dumps(value)[:40]}, not a number"
        try:
            number = float(value)
        except OverflowError:  # a JSON integer past a float's range
            return f"{k} is {str(value)[:12]}..., beyond a float's range"
        if not math.isfinite(number):
            shown = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
            return f"{k} is {shown}, not a finite number"
    return None

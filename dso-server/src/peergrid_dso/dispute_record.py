"""What the DSO node decided on each disputed trade, recorded once per change.

Promises: `DisputeRecord.decide(trade, interval, doc)` keeps a decision (`dispute_node.DisputeSettler`'s:
settled, refused, failed, unresolved, no longer disputed) when it says something new about the trade - its
outcome, why, the energy, the detail, whether settled, the rule - never every retry of the same: then it is the
trade's latest (`decisions`) and the last of `HISTORY_KEPT` in order (`history`), stamped `at` (wall s), logged
in one INFO line with why where it says one, and appended as a JSON line to `record_file` where one is given.
`snapshot` and `decision` may be called from the web server's threads while the node's event loop decides
(a lock); both hand out copies. Split out of dispute_node, under whose logger it logs, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from peergrid_ledger.records import append_record

log = logging.getLogger("peergrid_dso.dispute_node")  # the name its lines had before the split
HISTORY_KEPT = 1000  # every decision in order, the last this many (the latest per trade are all kept)
# what makes a decision new: the same outcome with the same words is a retry, not a new decision
SAID = ("outcome", "why", "delivered", "detail", "settled", "rule")


class DisputeRecord:
    def __init__(self, record_file: Path | None = None) -> None:
        self.record_file = record_file
        self.decisions: dict[bytes, dict[str, Any]] = {}  # the latest decision on each trade
        self.history: list[dict[str, Any]] = []  # every decision in order (bounded)
        self._lock = threading.Lock()  # decisions/history are read by the web server's threads

    def decide(self, trade: bytes, interval: Any, doc: dict[str, Any]) -> None:
        """Record a decision when it says something new about the trade (not every retry of the same)."""
        doc = {"trade": trade.hex(), "interval": interval, **doc}
        with self._lock:
            last = self.decisions.get(trade)
            if last is not None and all(last.get(k) == doc.get(k) for k in SAID):
                return
            doc["at"] = time.time()
            self.decisions[trade] = doc
            self.history = [*self.history[-(HISTORY_KEPT - 1) :], doc]
        # with why where it says one (unresolved: what it waits for; settled with a side unmetered: why that side
        # was not, L3: a reset or a counter jump), once per decision as the record is
        said = doc.get("why") or "; ".join(
            f"the {s}'s metering: {w}" for s, w in (doc.get("unmetered") or {}).items()
        )
        log.info("dispute %s: %s%s", trade.hex()[:16], doc.get("outcome"), f" ({said})" if said else "")
        if self.record_file is not None:
            append_record(self.record_file, doc)

    def snapshot(self, pending: list[bytes]) -> dict[str, Any]:
        """The disputes the DSO knows (`pending`: those it waits on) and how each was decided, by interval."""
        with self._lock:
            decisions = [dict(d) for d in self.decisions.values()]
        return {
            "pending": sorted(t.hex() for t in pending),
            "disputes": sorted(decisions, key=lambda d: (d["interval"] or 0, d["trade"])),
        }

    def decision(self, trade: bytes) -> dict[str, Any] | None:
        with self._lock:
            found = self.decisions.get(trade)
            return None if found is None else dict(found)

"""Refusals counted and logged: every bad login, missing or wrong CSRF token, forbidden action, malformed
request and unauthenticated call increments one counter per reason and writes one WARNING line, but for a
session probe with no session (`EXPECTED_REFUSALS`), whose 401 is how a client learns its session ended: it is
counted as every refusal and logged at INFO, so a WARNING still names every other unauthenticated call (someone
probing the API). The console page's own question as it loads is `/console/api/whoami`, which refuses nothing.

Promises: `refuse(reason, detail)` never raises and never logs a password, a session id or a token; the
counters are readable at any time (`snapshot`) for the console and for metrics. With a `ConsoleDb` every
refusal is also written to the DSO's data directory before `refuse` returns, and the counters and recent
refusals are read back at start, so a restart loses none of them. Thread-safe.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from peergrid_dso.auth.store import ConsoleDb

log = logging.getLogger("peergrid_dso.security")

REASONS = (
    "bad_login",
    "login_throttled",
    "unauthenticated",
    "csrf",
    "forbidden",
    "malformed",
    "bad_origin",
    "not_found",
    "conflict",  # an operator action refused by the network's state (interlock, stale plan, reused token)
)
# (reason, detail) of refusals that are the normal end of a visit, not an attack: a console whose feed closed asks
# /console/api/session (api.js), and the 401 is that route's contract, as for any client whose session ended.
# Before C3 every page load asked it before login too (now /console/api/whoami, answered 200). A session that
# names a removed user is not among them.
EXPECTED_REFUSALS = frozenset({("unauthenticated", "GET /console/api/session: log in first")})


class SecurityLog:
    def __init__(self, keep: int = 200, db: ConsoleDb | None = None, clock: Callable[[], float] = time.time):
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        if db is not None:
            self.counts.update(db.refusal_counts())
            self.recent.extend(db.recent_refusals(keep))

    def refuse(self, reason: str, detail: str, *, user: str | None = None, client: str | None = None) -> None:
        detail = "".join(ch if ch.isprintable() else " " for ch in detail)[:300]  # no log injection
        at = self.clock()
        with self._lock:
            self.counts[reason] += 1
            self.recent.append({"reason": reason, "detail": detail, "user": user, "client": client, "at": at})
        level = logging.INFO if (reason, detail) in EXPECTED_REFUSALS else logging.WARNING
        log.log(level, "refused %s: %s (user=%s client=%s)", reason, detail, user or "-", client or "-")
        if self.db is not None:
            try:
                self.db.add_refusal(at, reason, detail, user, client)
            except sqlite3.Error as exc:  # the refusal stands and is counted; say loudly that it is not kept
                self.counts["log_write_failed"] += 1
                log.error("security log: could not write to %s: %s", self.db.path, exc)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = {r: self.counts.get(r, 0) for r in REASONS} | dict(self.counts)
            return {"counts": counts, "total": sum(counts.values()), "recent": list(self.recent)[-20:]}

"""Refusals counted and logged: every bad login, missing or wrong CSRF token, forbidden action, malformed
request and unauthenticated call increments one counter per reason and writes one WARNING line.

Promises: `refuse(reason, detail)` never raises and never logs a password, a session id or a token; the
counters are readable at any time (`snapshot`) for the console and for metrics. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Any

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


class SecurityLog:
    def __init__(self, keep: int = 200) -> None:
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def refuse(self, reason: str, detail: str, *, user: str | None = None, client: str | None = None) -> None:
        detail = "".join(ch if ch.isprintable() else " " for ch in detail)[:300]  # no log injection
        with self._lock:
            self.counts[reason] += 1
            self.recent.append({"reason": reason, "detail": detail, "user": user, "client": client})
        log.warning("refused %s: %s (user=%s client=%s)", reason, detail, user or "-", client or "-")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = {r: self.counts.get(r, 0) for r in REASONS} | dict(self.counts)
            return {"counts": counts, "total": sum(counts.values()), "recent": list(self.recent)[-20:]}

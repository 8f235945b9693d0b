"""Server-side sessions with CSRF tokens, and a login throttle; time comes from an injected clock.

Promises: a session id and its CSRF token are 256-bit random values (`secrets`); a session ends after
`idle_s` without use or `max_s` after login, whichever is first, and at logout; `check_csrf` compares in
constant time. `LoginThrottle` refuses a name or client after `max_failures` failures within `window_s`
(counted, never revealing whether the name exists). Holds everything in memory: a restart logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from peergrid_dso.auth.users import User

Clock = Callable[[], float]


@dataclass
class Session:
    sid: str
    csrf: str
    user: User
    created: float
    last_used: float


class SessionStore:
    def __init__(self, idle_s: float = 1800.0, max_s: float = 12 * 3600.0, clock: Clock = time.monotonic):
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, now, now)
        with self._lock:
            self._expire(now)
            self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.last_used > self.idle_s or now - session.created > self.max_s:
                del self._sessions[sid]
                return None
            session.last_used = now
            return session

    def end(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def end_user(self, name: str) -> None:
        with self._lock:
            for sid in [s for s, v in self._sessions.items() if v.user.name == name]:
                del self._sessions[sid]

    def _expire(self, now: float) -> None:
        dead = [
            s
            for s, v in self._sessions.items()
            if now - v.last_used > self.idle_s or now - v.created > self.max_s
        ]
        for sid in dead:
            del self._sessions[sid]


def check_csrf(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), (token or "").encode())


class LoginThrottle:
    def __init__(self, max_failures: int = 5, window_s: float = 300.0, clock: Clock = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = self.clock()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def fail(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                self._failures[k] = [*self._recent(k, now), now]

    def clear(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._failures.get(key, []) if now - t < self.window_s]

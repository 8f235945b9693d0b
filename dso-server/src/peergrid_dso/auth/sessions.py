"""Server-side sessions with CSRF tokens, and a login throttle; time comes from an injected clock.

Promises: a session id is a 256-bit random value (`secrets`) and its CSRF token an HMAC of it, so neither
needs storing; a session ends after `idle_s` without use or `max_s` after login, whichever is first, and at
logout; `check_csrf` compares in constant time. With a `ConsoleDb` the sessions live in the DSO's data
directory as hashes of their ids (with user, role and times) and survive a restart of the server; without
one they live in memory. `LoginThrottle` refuses a name or client after `max_failures` failures within
`window_s` (counted, never revealing whether the name exists); it is memory-only on purpose (a restart
forgets failed logins, never sessions). The clock is wall time, since sessions outlive the process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from peergrid_dso.auth.store import ConsoleDb, sid_hash
from peergrid_dso.auth.users import ROLES, User

Clock = Callable[[], float]
TOUCH_EVERY_S = 10.0  # how stale a stored session's last use may be (saves a disk write per request)


def csrf_for(sid: str) -> str:
    """The session's CSRF token: HMAC-SHA256 keyed by the (secret, random) session id."""
    mac = hmac.new(sid.encode(), b"peergrid/csrf/v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@dataclass
class Session:
    sid: str
    csrf: str
    user: User
    created: float
    last_used: float
    stored_use: float = 0.0  # the last use written to the database


class SessionStore:
    def __init__(
        self,
        idle_s: float = 1800.0,
        max_s: float = 12 * 3600.0,
        clock: Clock = time.time,
        db: ConsoleDb | None = None,
    ) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self.db = db
        self._sessions: dict[bytes, Session] = {}  # by hash of the id
        self._lock = threading.Lock()

    def create(self, user: User) -> Session:
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(sid, csrf_for(sid), user, now, now, now)
        with self._lock:
            self._expire(now)
            self._sessions[sid_hash(sid)] = session
            if self.db is not None:
                self.db.put_session(sid_hash(sid), user.name, user.role, now, now)
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        now = self.clock()
        key = sid_hash(sid)
        with self._lock:
            session = self._sessions.get(key) or self._load(key, sid)
            if session is None:
                return None
            if self._dead(session, now):
                self._drop(key)
                return None
            session.last_used = now
            if self.db is not None and now - session.stored_use >= TOUCH_EVERY_S:
                self.db.touch_session(key, now)
                session.stored_use = now
            return session

    def _load(self, key: bytes, sid: str) -> Session | None:
        """A session from before a restart: only its hash, user and times were stored."""
        row = self.db.session(key) if self.db is not None else None
        if row is None or row[1] not in ROLES:
            return None
        name, role, created, last_used = row
        session = Session(sid, csrf_for(sid), User(name, role), created, last_used, last_used)
        self._sessions[key] = session
        return session

    def end(self, sid: str) -> None:
        with self._lock:
            self._drop(sid_hash(sid))

    def end_user(self, name: str) -> None:
        with self._lock:
            for key in [k for k, v in self._sessions.items() if v.user.name == name]:
                del self._sessions[key]
            if self.db is not None:
                self.db.end_user(name)

    def _dead(self, session: Session, now: float) -> bool:
        return now - session.last_used > self.idle_s or now - session.created > self.max_s

    def _drop(self, key: bytes) -> None:
        self._sessions.pop(key, None)
        if self.db is not None:
            self.db.end_session(key)

    def _expire(self, now: float) -> None:
        for key in [k for k, v in self._sessions.items() if self._dead(v, now)]:
            del self._sessions[key]
        if self.db is not None:
            self.db.expire_sessions(now - self.idle_s, now - self.max_s)


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

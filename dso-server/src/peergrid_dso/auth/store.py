"""The console's durable state: sessions (hashed), the security log and the operators' audit trail, in one
SQLite file (stdlib `sqlite3`) in the DSO's data directory, so a restart logs nobody out and loses no record.

Promises: a session is stored only as SHA-256 of its id, with its user, role and times (the id itself and the
CSRF token, which derives from it, never touch the disk); every write is its own transaction, synchronous
(`synchronous=FULL`, WAL), so what a call returned survives a crash. `ConsoleDb.open` refuses a file that is
not a readable SQLite database or not ours with `ConsoleStateError` (one line naming the path and what to
do) and never modifies, truncates or replaces such a file. The security log keeps exact per-reason counters
for ever and its newest `KEEP_SECURITY_ROWS` entries; the audit trail is append-only. Thread-safe.
Must never store a password, a session id or a CSRF token.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

FILE_TYPE = "peergrid-console-state-v1"
KEEP_SECURITY_ROWS = 100_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash BLOB PRIMARY KEY, user TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL,
    last_used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS security (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    user TEXT, client TEXT);
CREATE TABLE IF NOT EXISTS security_counts (reason TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, entry TEXT NOT NULL);
"""


class ConsoleStateError(RuntimeError):
    """The console state file cannot be used; the message names it and says what to do."""


def sid_hash(sid: str) -> bytes:
    return hashlib.sha256(b"peergrid/session/v1\x00" + sid.encode()).digest()


class ConsoleDb:
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._lock = threading.Lock()
        self._inserted = 0

    @classmethod
    def open(cls, path: Path) -> ConsoleDb:
        def refuse(why: str) -> ConsoleStateError:
            return ConsoleStateError(
                f"{path}: {why}; the file was left untouched - restore it from a backup, or move it aside "
                "to start with no sessions and an empty security log"
            )

        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise refuse(f"cannot open the console state database ({exc})") from None
        try:
            if not fresh:
                # read first, write nothing, until we know the file is a sound database of ours
                check = db.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    raise refuse(f"the console state database is damaged ({check[0] if check else '?'})")
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                kind = (
                    db.execute("SELECT value FROM meta WHERE key='type'").fetchone()
                    if "meta" in tables
                    else None
                )
                if kind is None or kind[0] != FILE_TYPE:
                    raise refuse(f"not a peergrid console state file (expected {FILE_TYPE})")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('type', ?)", (FILE_TYPE,))
        except sqlite3.DatabaseError as exc:
            db.close()
            raise refuse(f"not a readable SQLite database ({exc})") from None
        except ConsoleStateError:
            db.close()
            raise
        if fresh:
            path.chmod(0o600)
        return cls(db, path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, *args: Any) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # -- sessions
    def put_session(self, key: bytes, user: str, role: str, created: float, last_used: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO sessions (sid_hash, user, role, created, last_used) VALUES (?, ?, ?, ?, ?)",
            key, user, role, created, last_used,
        )  # fmt: skip

    def session(self, key: bytes) -> tuple[str, str, float, float] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT user, role, created, last_used FROM sessions WHERE sid_hash = ?", (key,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), float(row[2]), float(row[3]))

    def touch_session(self, key: bytes, last_used: float) -> None:
        self._write("UPDATE sessions SET last_used = ? WHERE sid_hash = ?", last_used, key)

    def end_session(self, key: bytes) -> None:
        self._write("DELETE FROM sessions WHERE sid_hash = ?", key)

    def end_user(self, user: str) -> None:
        self._write("DELETE FROM sessions WHERE user = ?", user)

    def expire_sessions(self, idle_before: float, created_before: float) -> None:
        self._write("DELETE FROM sessions WHERE last_used < ? OR created < ?", idle_before, created_before)

    def session_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    # -- security log
    def add_refusal(self, at: float, reason: str, detail: str, user: str | None, client: str | None) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO security (at, reason, detail, user, client) VALUES (?, ?, ?, ?, ?)",
                    (at, reason, detail, user, client),
                )
                self._db.execute(
                    "INSERT INTO security_counts (reason, n) VALUES (?, 1) "
                    "ON CONFLICT(reason) DO UPDATE SET n = n + 1",
                    (reason,),
                )
                self._inserted += 1
                if self._inserted % 1000 == 0:  # keep the newest rows; the counters stay exact
                    self._db.execute(
                        "DELETE FROM security WHERE id <= (SELECT MAX(id) FROM security) - ?",
                        (KEEP_SECURITY_ROWS,),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def refusal_counts(self) -> dict[str, int]:
        with self._lock:
            return {str(r): int(n) for r, n in self._db.execute("SELECT reason, n FROM security_counts")}

    def recent_refusals(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, detail, user, client, at FROM security ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            {"reason": r, "detail": d, "user": u, "client": c, "at": at} for r, d, u, c, at in reversed(rows)
        ]

    # -- operators' audit trail
    def add_audit(self, at: float, entry: dict[str, Any]) -> None:
        self._write("INSERT INTO audit (at, entry) VALUES (?, ?)", at, json.dumps(entry, sort_keys=True))

    def audit(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT entry FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]


def console_db_path(users_file: Path | None) -> Path | None:
    """Where the console keeps its state: beside the user file, in the DSO's data directory (None: no user
    file, so nobody can log in and there is nothing to keep)."""
    return None if users_file is None else users_file.parent / "console-state.sqlite"

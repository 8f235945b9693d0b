"""The console's user file: names, roles and argon2id password hashes, one JSON document written atomically.

Promises: `UserStore.add` refuses bad names (the DSO node's own, `node_name.NODE_NAME`, too, also with
`replace`: no user is made or remade under it; there is no rename), unknown roles, short passwords and
duplicates with `UserError`; `authenticate` returns the `User` or None and takes the same argon2 time whether or not the name exists (no user enumeration by timing), and neither it nor `get` ever gives the
node's name (a file that holds it lists it, to be removed); the file is written 0600 by rename of a new temporary (`data_files`), so a crash
never leaves half a file and no link planted in the folder is written through; run as root (`peergrid-dso user
add` by hand), a new file takes the owner of its folder, so the server's user can still read it. `add` and
`remove` read the file, change it and write it under an exclusive `flock` of `<file>.lock` beside it (as the
enrolment token store does: `data_files.locked_beside`, never through a link), so two `peergrid-dso user
add` at once both land (before, each wrote back the users it had read, and the second lost the first's). A file
that cannot be read or is not ours raises `UserError` naming the path, in the words the enrolment and token
files use (`data_files.read_entries`), and is never written over. A running server sees users added, removed or changed
by the CLI at their next request (the file is re-read when it changes). Never stores or logs a plain password.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from peergrid_dso.data_files import locked_beside, read_entries, write_replacing
from peergrid_dso.node_name import NODE_NAME  # the Operations audit trail shows the node's lines under it

ROLES = ("viewer", "operator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
FILE_TYPE = "peergrid-console-users-v1"


class UserError(ValueError):
    """A user operation or user file that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        """True when this user holds `role` or a higher one."""
        return RANK[self.role] >= RANK[role]


def _hasher() -> PasswordHasher:
    # argon2id, RFC 9106 "low memory" profile: 64 MiB, 3 passes - about 50 ms here, fine for a login.
    return PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)


class UserStore:
    def __init__(self, path: Path | None, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self._hasher = hasher or _hasher()
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, str]] = {}
        self._dummy: str | None = None  # made at the first unknown name, so start-up stays quick
        self._mtime: int | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file when it changed on disk (`peergrid-dso user ...` while the server runs).
        A file made bad meanwhile keeps the users last read and logs nothing here: the CLI refuses bad files."""
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._users, self._mtime = {}, None
            return
        if mtime != self._mtime:
            users = _read(self.path) if self._mtime is None else _read_or(self.path, self._users)
            with self._lock:
                self._users, self._mtime = users, mtime

    def __len__(self) -> int:
        return len(self._users)

    def users(self) -> list[User]:
        return [User(n, u["role"]) for n, u in sorted(self._users.items())]

    def get(self, name: str) -> User | None:
        self.refresh()
        entry = self._acting(name)
        return None if entry is None else User(name, entry["role"])

    def _acting(self, name: str) -> dict[str, str] | None:
        """The entry a user signs in and acts by; none for the node's own name, which a file written before it
        was refused (or by hand) may still hold: listed, so that it can be removed, never acting (R42)."""
        return None if name == NODE_NAME else self._users.get(name)

    def add(self, name: str, role: str, password: str, *, replace: bool = False) -> User:
        if not NAME_RE.fullmatch(name):
            raise UserError(f"user name {name!r} must be 2-32 of a-z 0-9 _ . - starting with a letter")
        if name == NODE_NAME:
            raise UserError(f"user name {name!r} is the DSO node's own name on the DSO chain")
        if role not in ROLES:
            raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise UserError(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
        entry = {"role": role, "hash": self._hasher.hash(password)}  # argon2's time outside the lock
        with self._changing() as users:
            if name in users and not replace:
                raise UserError(f"user {name!r} already exists")
            users[name] = entry
        return User(name, role)

    def remove(self, name: str) -> None:
        with self._changing() as users:
            if users.pop(name, None) is None:
                raise UserError(f"no user {name!r}")

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, str]]]:
        """The users as the file holds them now, to change in the block; written back when it ends without an
        error. Under the file's lock (and this store's), so another process's change between our read and our
        write cannot be lost."""
        with self._lock, self._file_lock():
            users = dict(self._users)  # a store without a file keeps its users in memory
            if self.path is not None:
                users = _read(self.path)
            yield users
            self._users = users
            self._save()

    def _file_lock(self) -> contextlib.AbstractContextManager[None]:
        if self.path is None:  # users in memory only
            return contextlib.nullcontext()
        return locked_beside(self.path, "user file", "user", UserError)

    def authenticate(self, name: str, password: str) -> User | None:
        if len(password) > MAX_PASSWORD:
            return None
        self.refresh()
        entry = self._acting(name)
        if entry is None and self._dummy is None:
            self._dummy = self._hasher.hash("not a password of anyone")
        try:
            self._hasher.verify(entry["hash"] if entry else str(self._dummy), password)
        except (VerificationError, InvalidHashError):
            return None
        return User(name, entry["role"]) if entry else None

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"type": FILE_TYPE, "users": self._users}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_replacing(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())
        self._mtime = self.path.stat().st_mtime_ns


def _read_or(path: Path, last: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    try:
        return _read(path)
    except UserError:
        return last


def _read(path: Path) -> dict[str, dict[str, str]]:
    """The users the file at `path` holds; {} when there is none (gone since it was looked at)."""

    def refuse(why: str) -> UserError:
        return UserError(f"{path}: {why}")

    kept = read_entries(path, "user file", FILE_TYPE, "users", dict, refuse)
    if kept is None:
        return {}
    users: dict[str, dict[str, str]] = {}
    for name, entry in kept.items():
        ok = (
            isinstance(name, str)
            and NAME_RE.fullmatch(name)
            and isinstance(entry, dict)
            and entry.get("role") in ROLES
            and isinstance(entry.get("hash"), str)
            and entry["hash"].startswith("$argon2")
        )
        if not ok:
            raise UserError(f"{path}: malformed entry for user {name!r}")
        users[name] = {"role": entry["role"], "hash": entry["hash"]}
    return users

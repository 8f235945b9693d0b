"""The DSO's enrolment tokens on disk: issued, and used by which MGMC, kept across restarts in the data directory.

Promises: `TokenStore(path)` keeps each token only as SHA-256 of it (the token itself is printed once to whoever
issued it and never touches the disk), with the MG label it was issued for (or none), when it was issued, and
once used the MGMC key that used it and when, and once that key is revoked (`retire`) when: a retired token is
never used again, not even by its own key. Every call reads the file afresh and every change is one
read-modify-write under an exclusive `flock` of a lock file beside it, written (`data_files`) to a new temporary
that is synced and renamed over the name (then the folder synced): the server and `peergrid-dso enrolment token create` can share the
file, and a crash leaves the old file or the new one, never a part. A file that is not ours (unreadable, not JSON,
another type, a malformed entry) raises `TokenStoreError` naming the path and what to do, and is never modified,
truncated or replaced: it is never read as an empty token set. Run as root (the CLI by hand), a new file takes the
owner of its folder, so the server's user can still read and replace it; only a file made by this call is given
away, and none is opened through a symbolic link (the folder is that user's: a link or file it planted there never
hands root's files to it).
`token_store_path(users_file)`: the file beside the console's user file, in the DSO's data directory (None: no
user file, so no data directory: tokens then live in the server's memory, as in the lab).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peergrid_dso.data_files import locked_beside, read_entries, write_replacing

FILE_TYPE = "peergrid-enrolment-tokens-v1"
FILE_NAME = "enrolment-tokens.json"
LABEL_MAX = 64  # as an enrolment's label (EnrolmentService.request)


class TokenStoreError(RuntimeError):
    """The token file cannot be used; the message names it and says what to do."""


def token_hash(token: str) -> str:
    return hashlib.sha256(b"peergrid/enrolment-token/v1\x00" + token.encode()).hexdigest()


def token_store_path(users_file: Path | None) -> Path | None:
    """Where the DSO keeps its enrolment tokens: beside the console's user file (the DSO's data directory)."""
    return None if users_file is None else users_file.parent / FILE_NAME


@dataclass(frozen=True)
class TokenRecord:
    label: str | None  # the MG the token was issued for; None: any label
    issued_at: float
    used_by: bytes | None = None  # the MGMC identity key whose request used it
    used_at: float | None = None
    retired_at: float | None = None  # when the key that used it was revoked: never used again

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "issued_at": self.issued_at,
            "used_by": None if self.used_by is None else self.used_by.hex(),
            "used_at": self.used_at,
            "retired_at": self.retired_at,
        }


def check_label(label: str | None) -> str | None:
    if label is not None and not 1 <= len(label) <= LABEL_MAX:
        raise ValueError(f"label must be 1-{LABEL_MAX} characters")
    return label


class TokenStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()  # flock is per open file; threads of one process take this first

    @classmethod
    def open(cls, path: Path) -> TokenStore:
        """The store at `path`, its file read once to check it (absent: no token issued yet)."""
        store = cls(path)
        store.records()
        return store

    def _refuse(self, why: str) -> TokenStoreError:
        return TokenStoreError(
            f"{self.path}: {why}; the file was left untouched - restore it from a backup, or move it aside "
            "(every token issued and not yet used must then be issued again)"
        )

    def _read(self) -> dict[str, TokenRecord]:
        kept = read_entries(self.path, "enrolment token file", FILE_TYPE, "tokens", dict, self._refuse)
        if kept is None:
            return {}
        found = {}
        for digest, entry in kept.items():
            try:
                found[digest] = _record(digest, entry)
            except (TypeError, ValueError, KeyError):
                raise self._refuse(f"a malformed token entry ({digest[:16]})") from None
        return found

    def _write(self, records: dict[str, TokenRecord]) -> None:
        doc = {"type": FILE_TYPE, "tokens": {d: r.to_json() for d, r in sorted(records.items())}}
        body = (json.dumps(doc, indent=1) + "\n").encode()
        write_replacing(self.path, body)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, locked_beside(self.path, "enrolment token file", "token", TokenStoreError):
            yield

    def records(self) -> dict[str, TokenRecord]:
        with self._locked():
            return self._read()

    def get(self, token: str) -> TokenRecord | None:
        return self.records().get(token_hash(token))

    def issue(self, token: str, label: str | None = None) -> TokenRecord:
        check_label(label)
        with self._locked():
            records = self._read()
            digest = token_hash(token)
            if digest in records:
                raise ValueError("this token was issued before")  # (a broken random source)
            records[digest] = TokenRecord(label, self.clock())
            self._write(records)
            return records[digest]

    def use(self, token: str, mgmc: bytes) -> TokenRecord | None:
        """Mark the token used by `mgmc`; None when it is unknown or another MGMC used it (between the
        caller's check and this call), or retired. The same MGMC using it again is no change."""
        with self._locked():
            records = self._read()
            digest = token_hash(token)
            record = records.get(digest)
            if record is None or (record.used_by is not None and record.used_by != mgmc) or record.retired_at:
                return None
            if record.used_by is None:
                records[digest] = record = TokenRecord(record.label, record.issued_at, mgmc, self.clock())
                self._write(records)
            return record

    def retire(self, mgmc: bytes) -> int:
        """The tokens `mgmc` used are never used again (it was revoked): how many were retired now. Kept in the
        file, so a revoked MGMC cannot send its own token again once a restart has emptied the enrolment queue."""
        with self._locked():
            records = self._read()
            now = self.clock()
            retired = {
                d: dataclasses.replace(r, retired_at=now)
                for d, r in records.items()
                if r.used_by == mgmc and r.retired_at is None
            }
            if retired:
                self._write(records | retired)
            return len(retired)


def _record(digest: str, entry: dict[str, Any]) -> TokenRecord:
    if len(digest) != 64 or int(digest, 16) < 0:
        raise ValueError(digest)
    used_by = entry["used_by"]
    used_at = entry["used_at"]
    retired_at = entry.get("retired_at")  # (absent in a file written before tokens were retired)
    return TokenRecord(
        label=check_label(None if entry["label"] is None else str(entry["label"])),
        issued_at=float(entry["issued_at"]),
        used_by=None if used_by is None else _key(used_by),
        used_at=None if used_at is None else float(used_at),
        retired_at=None if retired_at is None else float(retired_at),
    )


def _key(hex_key: str) -> bytes:
    key = bytes.fromhex(hex_key)
    if len(key) != 32:
        raise ValueError("not a 32-byte key")
    return key

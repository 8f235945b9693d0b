"""The edge's local LevelDB: readings per interval, sealed commitments, and the outbox of ledger transactions.

Promises: `add_reading` appends a leaf under its interval; `seal` turns an interval's leaves into its Merkle root
and queues the `der_commitment` body with the next nonce in ONE synced batch, so after a crash an interval is
either sealed-and-queued or not sealed at all, and is never queued twice. The outbox is FIFO by sequence number;
entries are signed when they are submitted (so a commitment queued through hours of islanding still carries a
time the chain accepts), always with their queued nonce; `mark_submitted(seq)` moves a durable cursor, so a
restart resubmits at most the one transaction in flight, which the chain refuses as a replayed nonce.
Any stored reading can be proven included.
Assumes a single writer (the daemon). Corruption of our own store is a loud crash, never silently skipped;
`open_store` (the daemon's way in) says so in one line naming the path, never repairing or recreating it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel

from peergrid_edge import commitments
from peergrid_edge.commitments import InclusionProof
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.settings import ConfigError

READING = b"r/"
SEALED = b"c/"
OPEN = b"o/"  # intervals with readings and no commitment yet: found without scanning every reading
OUTBOX = b"q/"
META_NONCE = b"m/nonce"
META_SUBMITTED = b"m/submitted"
META_NEXT_SEQ = b"m/next_seq"


@dataclass(frozen=True)
class Queued:
    seq: int
    kind: str
    nonce: int
    body: dict[str, Any]


def _u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def _int(raw: bytes | None) -> int:
    return 0 if raw is None else struct.unpack(">Q", raw)[0]


def _words(exc: Exception) -> str:
    """LevelDB's own words (plyvel gives them as bytes)."""
    said = exc.args[0] if exc.args else exc
    return said.decode(errors="replace") if isinstance(said, bytes) else str(said)


def open_store(path: Path) -> EdgeStore:
    """The daemon's store at `path`, or a `ConfigError` naming the path where it cannot be opened, so that the
    daemon ends with one line and exit status 2 rather than LevelDB's words in a traceback (review21 F9): one
    LevelDB finds damaged (e.g. an empty CURRENT after a torn write on an SD card), one whose CURRENT is missing
    (`StoreMissing`: never recreated over its tables, review25 F1), one another process holds
    (its LOCK: a second daemon or `peergrid-edge prove` on the data_dir), a folder it cannot create. The files
    are left exactly as they are (no repair, no new store in their place): the readings and the outbox are the
    operator's to recover (edge/README.md, "A damaged store")."""
    try:
        return EdgeStore(path)
    except plyvel.IOError as exc:
        raise ConfigError(
            f"{path}: the edge store cannot be opened ({_words(exc)}): is another peergrid-edge (or its "
            "prove command) using this data_dir?"
        ) from None
    except plyvel.Error as exc:
        raise ConfigError(
            f'{path}: the edge store is damaged ({_words(exc)}); see "A damaged store" in the edge README'
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the edge store ({exc.strerror})") from None


class StoreMissing(plyvel.Error):  # type: ignore[misc]  # plyvel ships no types; callers catch its Error
    """No store to open where one must exist: the folder is missing or fresh (a reader's open), or its CURRENT
    file is missing while other files are there (a damaged store; LevelDB's own words would say that the folder
    "does not exist")."""


# What LevelDB's first open writes before it makes the store (its info log, moved to LOG.old by the next try,
# and the LOCK), then MANIFEST-000001 and CURRENT: a power cut in between leaves these and no data (R27-3)
_BEFORE_A_STORE = frozenset({"LOCK", "LOG", "LOG.old"})


def _fresh(path: Path) -> bool:
    """A store may be created only where there is no data: the folder does not exist, holds no file, or holds
    only what a first open cut off before its MANIFEST left (`_BEFORE_A_STORE`), on which the daemon would
    otherwise refuse to start for ever. LevelDB asked to create a store whose CURRENT is missing writes a new
    manifest and deletes every table and log file of the old one as obsolete (review25 F1: 2,000 readings and a
    queued commitment gone), so a folder with anything else in it (a MANIFEST-*, a table, a log) is opened as an
    existing store, and a missing CURRENT is damage to report."""
    try:
        return all(entry.name in _BEFORE_A_STORE for entry in path.iterdir())
    except FileNotFoundError:
        return True


class EdgeStore:
    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open the store at `path`; with `create` (the daemon) make a new one where the folder is missing or
        fresh (`_fresh`), never over a store's files. `create=False` (a reader such as `peergrid-edge prove`) opens
        only a store that exists. A store that cannot be opened raises plyvel's error, its files untouched."""
        make = create and _fresh(path)
        if make:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir() or _fresh(path):
            raise StoreMissing("there is no store here")  # LevelDB would make the folder even so
        elif not (path / "CURRENT").exists():
            raise StoreMissing(
                f"its CURRENT file is missing beside {sum(1 for _ in path.iterdir())} other files; "
                "a new store there would delete them"
            )
        self.db = plyvel.DB(str(path), create_if_missing=make)
        self._next_index: dict[int, int] = {}

    def close(self) -> None:
        self.db.close()

    # --- readings --------------------------------------------------------------------------------------

    def _index(self, interval: int) -> int:
        if interval not in self._next_index:
            prefix = READING + _u64(interval)
            last = next(self.db.iterator(prefix=prefix, reverse=True, include_value=False), None)
            self._next_index[interval] = 0 if last is None else struct.unpack(">I", last[-4:])[0] + 1
        return self._next_index[interval]

    def add_reading(self, interval: int, leaf: bytes) -> int:
        if self.is_sealed(interval):
            raise ValueError(f"interval {interval} is already sealed")
        index = self._index(interval)
        if index == 0:
            self.db.put(OPEN + _u64(interval), b"")
        self.db.put(READING + _u64(interval) + struct.pack(">I", index), leaf)
        self._next_index[interval] = index + 1
        return index

    def leaves(self, interval: int) -> list[bytes]:
        return [v for _, v in self.db.iterator(prefix=READING + _u64(interval))]

    def open_intervals(self) -> list[int]:
        """Intervals that have readings but no commitment yet, oldest first."""
        return [struct.unpack(">Q", key[2:])[0] for key in self.db.iterator(prefix=OPEN, include_value=False)]

    # --- sealing ---------------------------------------------------------------------------------------

    def is_sealed(self, interval: int) -> bool:
        return self.db.get(SEALED + _u64(interval)) is not None

    def sealed_root(self, interval: int) -> bytes | None:
        raw = self.db.get(SEALED + _u64(interval))
        return None if raw is None else raw[:32]

    def seal(self, interval: int) -> Queued | None:
        """Commit `interval`'s readings: its root, and the transaction body queued with the next nonce, atomically."""
        if self.is_sealed(interval):
            return None
        leaves = self.leaves(interval)
        if not leaves:
            self.db.delete(OPEN + _u64(interval))  # a crash between marking and the first reading
            return None
        body = commitments.commitment_body(interval, leaves)
        nonce = _int(self.db.get(META_NONCE)) + 1
        seq = _int(self.db.get(META_NEXT_SEQ)) + 1
        entry = {"body": body, "kind": commitments.DER_COMMITMENT, "nonce": nonce}
        with self.db.write_batch(sync=True) as batch:
            batch.put(SEALED + _u64(interval), body["root"] + _u64(len(leaves)))
            batch.delete(OPEN + _u64(interval))
            batch.put(OUTBOX + _u64(seq), encode(entry))
            batch.put(META_NONCE, _u64(nonce))
            batch.put(META_NEXT_SEQ, _u64(seq))
        self._next_index.pop(interval, None)
        return Queued(seq, commitments.DER_COMMITMENT, nonce, body)

    def prove(self, interval: int, index: int) -> InclusionProof:
        if not self.is_sealed(interval):
            raise KeyError(f"interval {interval} is not committed yet")
        proof = commitments.prove(interval, self.leaves(interval), index)
        if proof.root != self.sealed_root(interval):
            raise RuntimeError(f"store corrupt: readings of interval {interval} no longer match their root")
        return proof

    def prune(self, before_interval: int) -> int:
        """Delete the readings of sealed intervals before `before_interval`; roots stay. Returns readings deleted."""
        deleted = 0
        with self.db.write_batch(sync=False) as batch:
            for key in self.db.iterator(
                start=READING, stop=READING + _u64(before_interval), include_value=False
            ):
                if self.is_sealed(struct.unpack(">Q", key[2:10])[0]):
                    batch.delete(key)
                    deleted += 1
        return deleted

    # --- outbox ----------------------------------------------------------------------------------------

    @property
    def submitted(self) -> int:
        return _int(self.db.get(META_SUBMITTED))

    def pending(self) -> Iterator[Queued]:
        """Queued transactions not yet submitted, in order."""
        start = OUTBOX + _u64(self.submitted + 1)
        for key, value in self.db.iterator(start=start, stop=b"q0"):  # b"q0" is just past every b"q/..." key
            entry = decode(value)
            yield Queued(struct.unpack(">Q", key[2:])[0], entry["kind"], entry["nonce"], entry["body"])

    def renumber(self, seq: int, first: int) -> int:
        """Give the outbox's entries from `seq` on the nonces first, first + 1, ... and the next seal the one
        after, in ONE synced batch: the chain used their nonces for other transactions of this key (a store
        restored from a backup, or started afresh, behind the chain: `link.NonceTaken`), so at those they would
        never land, and an outbox retrying them would hold every later commitment back. Returns how many."""
        entries = [q for q in self.pending() if q.seq >= seq]
        with self.db.write_batch(sync=True) as batch:
            for i, q in enumerate(entries):
                batch.put(OUTBOX + _u64(q.seq), encode({"body": q.body, "kind": q.kind, "nonce": first + i}))
            # the last entry's nonce is the store's last, also lower: the ones after a dropped refusal (none, or
            # more) move down into its unused nonce, `first`, and the next seal follows them without a gap
            batch.put(META_NONCE, _u64(first + len(entries) - 1))
        return len(entries)

    def queued(self) -> int:
        return _int(self.db.get(META_NEXT_SEQ)) - self.submitted

    def mark_submitted(self, seq: int) -> None:
        if seq != self.submitted + 1:
            raise ValueError(f"outbox submits in order: expected {self.submitted + 1}, got {seq}")
        self.db.put(META_SUBMITTED, _u64(seq), sync=True)

"""The engine's write-ahead record on disk (`wal.py` makes its bytes): one record, replaced atomically.

Promises: `FileWal.save` never leaves a torn or half-written record in place of a good one (write a temporary
file, fsync it when asked, rename, fsync the directory); `load` returns the newest intact record, or a
record written before records were numbered, or `b""` ranked last when the main file is torn. Assumes one
writer per path. Must never sync a write the engine did not ask to sync over the synced record (a prepare
goes to a side file). Split from node.py (the replica's shell), which re-exports it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class FileWal:
    """The engine's WAL as small files replaced atomically (write, fsync, rename), at most once per engine
    event. A write the engine does not ask to sync (a prepare: docs/consensus.md, "Restarts") goes to a side
    file, never over the synced one, so a power cut can lose it but never the synced record under it. Each
    record carries a sequence number and a checksum; `load` returns the newest intact one. `fsync=False` (the
    lab: one disk, processes die but never the power) writes the main file without ever syncing."""

    MAGIC = b"PGW1"

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.side = path.with_suffix(".unsynced")
        self.fsync = fsync
        self.writes = 0
        self.syncs = 0
        self._seq = max((seq for seq, _ in self._records()), default=0)

    def _records(self) -> list[tuple[int, bytes]]:
        found = []
        for path in (self.path, self.side):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            head, body = data[:28], data[28:]
            if head[:4] == self.MAGIC and hashlib.sha256(head[4:12] + body).digest()[:16] == head[12:28]:
                found.append((int.from_bytes(head[4:12], "big"), body))
            elif path == self.path and not data.startswith(self.MAGIC):
                found.append((-1, data))  # written before records were numbered
            elif path == self.path:
                found.append((-2, b""))  # torn or corrupt: something was there (the engine is careful)
        return found

    def load(self) -> bytes | None:
        records = self._records()
        return max(records)[1] if records else None

    def save(self, record: bytes, sync: bool = True) -> None:
        self._seq += 1
        seq = self._seq.to_bytes(8, "big")
        data = self.MAGIC + seq + hashlib.sha256(seq + record).digest()[:16] + record
        target = self.path if sync or not self.fsync else self.side
        tmp = target.with_suffix(target.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:  # a short write (disk nearly full) must not leave a torn record to replace a good one
                view = view[os.write(fd, view) :]
            if sync and self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        if sync and self.fsync:
            # the rename itself must survive a power cut, or the synced record (a commit vote, a lock) is lost
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.writes += 1
        self.syncs += sync and self.fsync

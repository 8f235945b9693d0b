"""The sealed reading sets the DSO node took for its disputes, kept on disk so that a restart settles with them.

Promises: `KeptReadings(path)` keeps each (node, commitment interval) set `dispute_node.DisputeSettler` takes in
as one JSON line {node, interval, leaves} (hex), appended and fsynced by `keep` before it returns, so the
readings API's "taken" means kept (an `OSError` there leaves the file as it was and is the caller's: it refuses
the set, 503, and the MGMC posts it again); `load()` at the node's start reads them back - a torn last line (a
writer killed mid-line) skipped with one WARNING and cut off, so the next line stands on its own; a whole line
that is no set, or a file that cannot be read, a `ConfigError` in one line naming the file (the node does not
start: it would settle its pending disputes without readings it said it took). `forget(keys)` drops the sets no
pending dispute reads any more (`DisputeSettler.done`, and those a restart finds no dispute for): the file is
rewritten with the live sets alone (`data_files.write_replacing`: a crash leaves the old file or the new one)
once it holds more forgotten bytes than live ones and at least `COMPACT_BYTES`, or none live, so it never holds
more than twice what pending disputes read plus `COMPACT_BYTES` (a pilot runs for years). The leaves are not held
in memory: a live set is where its line lies in the file. `path` None (no `disputes.record_file`): nothing kept,
as before. Called on the node's event loop (`load` before anything else); every change of the file - each
append with its fsync, each rewrite - runs on one writer thread of its own, in the order asked, one at a time
(D13): `keep` and `forget` wait for theirs; `take_in_off_loop` awaits its append without holding up the loop,
so a readings post's 201 still comes after its fsync, a full disk is still its 503 with the file as it was,
and the lines keep the order the sets were taken in; `forget_soon` asks and does not wait (`settled` awaits
what was asked). Why (D13): fsynced on the loop, a set cost the node 4 ms here and 50-500 ms on an SD card,
every other post and the node's chain stalled meanwhile. Past `load`, the writer thread alone touches `lines`
and `size`.
Why on disk (D12, drill U7 finding 7): the node kept them in memory only; a DSO restart lost every set its
pending disputes had taken, an MGMC whose posts had succeeded learnt so only at its next check, and a 9-s DSO
restart settled U7's interval 51 "seller not metered", 0 of 30,000 Wh, though both parties stated it.
Where: beside the decisions' record file (`readings_file`), so no new setting is needed: the Ansible role and
the lab already put `record_file` in the DSO's state directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from peergrid_dso.data_files import sync_folder, write_replacing
from peergrid_dso.sealed_pass import SealedSet, take_in
from peergrid_dso.sealed_readings import verified_leaves
from peergrid_ledger import query
from peergrid_ledger.metering import Unmetered
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.state import StateReader

log = logging.getLogger("peergrid_dso.dispute_node")
COMPACT_BYTES = 1 << 20  # forgotten bytes a file may hold beyond its live ones before it is rewritten
HEX = re.compile(r"^(?:[0-9a-f]{2})*$")
NODE = re.compile(r"^[0-9a-f]{64}$")
Key = tuple[bytes, int]  # (the MGMC's node key, the commitment interval)


class ReadingsNotKept(RuntimeError):
    """Readings the DSO could not keep on disk (the readings API's 503): not taken; the MGMC posts them again."""


def readings_file(record_file: Path | None) -> Path | None:
    """Where the sets are kept: beside the decisions' record file (`disputes.jsonl` -> `disputes.readings.jsonl`)."""
    if record_file is None:
        return None
    return record_file.with_name(f"{record_file.stem}.readings{record_file.suffix}")


class KeptReadings:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lines: dict[Key, tuple[int, int]] = {}  # each live set's line: (offset, length) in the file
        self.size = 0  # the file's length: live lines, forgotten ones
        # every change of the file, in the order asked (module); its thread is made at the first
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="dso-kept-readings")

    def load(self) -> dict[Key, list[bytes]]:
        """The sets an earlier run kept, the last line of each key (module: torn and damaged lines)."""
        if self.path is None:
            return {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._refused(f"cannot read it ({exc.strerror or exc})") from None
        whole = raw.rfind(b"\n") + 1  # what follows the last newline is a torn line
        if whole < len(raw):
            log.warning("%s: its last line is torn (%d bytes, a writer stopped mid-line): skipped; that set was "
                        "never said taken", self.path, len(raw) - whole)  # fmt: skip
            try:
                os.truncate(self.path, whole)
            except OSError as exc:
                raise self._refused(f"cannot cut its torn last line ({exc.strerror or exc})") from None
        found: dict[Key, list[bytes]] = {}
        offset = 0
        for number, line in enumerate(raw[:whole].splitlines(keepends=True), 1):
            key, leaves = self._parse(line, number)
            found[key] = leaves
            self.lines[key] = (offset, len(line))
            offset += len(line)
        self.size = whole
        return found

    def keep(self, key: Key, leaves: Sequence[bytes]) -> None:
        """Append the set as one line and fsync it (a new file: its folder too) before returning; `OSError`
        leaves the file as it was. Waits for the writer thread (module)."""
        if self.path is not None:
            self._writer.submit(self._append, key, _line(key, leaves)).result()

    async def keep_off_loop(self, key: Key, leaves: Sequence[bytes]) -> None:
        """`keep`, the loop free while the writer thread appends and fsyncs (after what was asked before)."""
        if self.path is not None:
            await asyncio.wrap_future(self._writer.submit(self._append, key, _line(key, leaves)))

    def forget_soon(self, keys: Iterable[Key]) -> None:
        """`forget`, asked of the writer thread and not waited for: a rewrite it cannot make is logged (its
        forgotten bytes stay, and the next `forget` tries again)."""
        if self.path is not None:
            self._writer.submit(self._forget, list(keys)).add_done_callback(self._said)

    async def settled(self) -> None:
        """Once every change asked so far is made."""
        if self.path is not None:
            await asyncio.wrap_future(self._writer.submit(lambda: None))

    def _append(self, key: Key, line: bytes) -> None:
        assert self.path is not None  # (the writer thread's: `keep`)
        made = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"wrote {written} of {len(line)} bytes")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self.size)  # no part of a line the next one would be glued onto
                raise
        finally:
            os.close(fd)
        if made:
            sync_folder(self.path.parent)  # the new file's name durable too
        self.lines[key] = (self.size, len(line))
        self.size += len(line)

    def take_in(self, key: Key, leaves: Sequence[bytes], record: Mapping[str, Any], most: int) -> SealedSet:
        """The set's one pass (`sealed_pass.take_in`), its leaves kept first (`keep`); `ReadingsNotKept` (logged
        as an error) when they cannot be, and then the set is not taken."""
        found = take_in(leaves, record, most)
        try:
            self.keep(key, leaves)
        except OSError as exc:
            raise self._not_kept(key, exc) from None
        return found

    async def take_in_off_loop(
        self, key: Key, leaves: Sequence[bytes], record: Mapping[str, Any], most: int
    ) -> SealedSet:
        """`take_in`, its leaves kept by `keep_off_loop`."""
        found = take_in(leaves, record, most)
        try:
            await self.keep_off_loop(key, leaves)
        except OSError as exc:
            raise self._not_kept(key, exc) from None
        return found

    def _not_kept(self, key: Key, exc: OSError) -> ReadingsNotKept:
        log.error("cannot keep the readings of commitment interval %d of %s… in %s: %s",
                  key[1], key[0].hex()[:16], self.path, exc.strerror or exc)  # fmt: skip
        why = exc.strerror or exc
        return ReadingsNotKept(f"the DSO could not keep them on disk ({why}): post them again")

    def forget(self, keys: Iterable[Key]) -> None:
        """The sets no pending dispute reads: dropped, the file rewritten with the live ones when it pays. Waits
        for the writer thread (module)."""
        if self.path is not None:
            self._writer.submit(self._forget, list(keys)).result()

    def _forget(self, keys: list[Key]) -> None:
        for key in keys:
            self.lines.pop(key, None)
        live = sum(length for _, length in self.lines.values())
        dead = self.size - live
        if self.path is None or not dead or (self.lines and (dead <= live or dead < COMPACT_BYTES)):
            return
        with self.path.open("rb") as old:
            kept: list[tuple[Key, bytes]] = []
            for key, (offset, length) in sorted(self.lines.items(), key=lambda item: item[1][0]):
                old.seek(offset)
                kept.append((key, old.read(length)))
        write_replacing(self.path, b"".join(line for _, line in kept))
        self.lines, self.size = {}, 0
        for key, line in kept:
            self.lines[key] = (self.size, len(line))
            self.size += len(line)

    def _parse(self, line: bytes, number: int) -> tuple[Key, list[bytes]]:
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        interval = doc.get("interval") if isinstance(doc, dict) else None
        leaves = doc.get("leaves") if isinstance(doc, dict) else None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("node"), str)
            or not NODE.match(doc["node"])
            or not isinstance(interval, int)
            or isinstance(interval, bool)
            or interval < 0
            or not isinstance(leaves, list)
            or not all(isinstance(leaf, str) and HEX.match(leaf) for leaf in leaves)
        ):
            raise self._refused(f"line {number} is no sealed readings set (damaged)")
        return (bytes.fromhex(doc["node"]), interval), [bytes.fromhex(leaf) for leaf in leaves]

    def _said(self, done: Future[None]) -> None:
        if (exc := done.exception()) is not None:
            log.error("%s: cannot rewrite it without the sets no dispute reads (%s): tried again at the next",
                      self.path, exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)  # fmt: skip

    def _refused(self, why: str) -> ConfigError:
        return ConfigError(
            f"{self.path}: {why}: the sealed readings the DSO took for its disputes; move it away to start "
            "without them (the MGMCs post them again when the DSO says they are missing)"
        )


def _line(key: Key, leaves: Sequence[bytes]) -> bytes:
    doc = {"node": key[0].hex(), "interval": key[1], "leaves": [leaf.hex() for leaf in leaves]}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def taken_back(
    state: StateReader, unread: Mapping[Key, Sequence[bytes]], needed: set[Key], most: int, path: Path | None
) -> dict[Key, SealedSet]:
    """Of the sets read back at a start (`KeptReadings.load`), those a pending dispute reads (`needed`) taken in
    as the node takes a posted one: checked whole against the chain's `der_commitment`. One INFO line says how
    many, and one WARNING how many the chain does not hold so (none where the file is the node's own)."""
    taken, unlike = {}, 0
    for key in sorted(needed & unread.keys()):
        record = query.der_commitment(state, *key)
        try:
            if record is None:
                raise Unmetered("no der_commitment")
            verified_leaves(state, key[0], key[1], {key: unread[key]})
        except Unmetered:
            unlike += 1
            continue
        taken[key] = take_in(unread[key], record, most)
    log.info("read back %d sealed reading sets the DSO took before its start (%s); %d no pending dispute reads: "
             "forgotten", len(taken), path, len(unread.keys() - needed))  # fmt: skip
    if unlike:
        log.warning("%d sealed reading sets kept in %s are not what the MGMC chain holds: forgotten (the MGMCs "
                    "post them again when the DSO says they are missing)", unlike, path)  # fmt: skip
    return taken

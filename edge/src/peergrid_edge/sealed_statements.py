"""What this MG states on a chain that seals statements (genesis `sealed_statements`, `market_sealed`; split
from `agent_settlement.py`): `SealedStatements` stands between the Settler and the chain.

Promises: a statement is first committed (its figures and a random salt written to `<data_dir>/seals/` and
synced before the commitment is published, so a restarted agent reveals exactly what it committed to),
revealed only once the local replica shows the counterparty committed or the commit deadline passed (never
earlier: a reveal refused is still gossiped, and would show the counterparty the figures), and a lone
statement sent again after the deadline repeats the one on record. A kept file that does not read as a
statement (a bad block of the SD card) is a final refusal for that one trade, as a lost salt is: logged as an
error naming it, set aside as `<trade>.json.corrupt` for the operator (never deleted, never overwritten by a
new salt: no new commitment is ever made for that trade), and every other trade goes on. On a chain that does
not seal statements every body goes to the chain as it is, and nothing is kept on disk.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peergrid_edge.files import write_whole
from peergrid_edge.replicas import Submission
from peergrid_edge.settlement import Submit
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of

log = logging.getLogger("peergrid.edge.trader")  # the agent's logger, as before the split

CORRUPT = ".corrupt"
"""The suffix a kept statement file that does not read as one is set aside with (`SealedStatements`)."""


class SealedStatements:
    """The Settler's `submit` on a chain that may seal statements (`sealed()`: genesis `sealed_statements`):
    there a statement body becomes this MG's commitment, then its reveal, then (the lone statement after the
    deadline) the statement on record again; anything else, and every body elsewhere, goes as it is. While
    its commitment stands unrevealed it answers landed, so the Settler waits on the trade's deadline (the
    commit deadline, then the reveal window), keeps it past the day's end and asks again.
    `kept` holds one file per committed trade: {delivered, short, salt}, written and synced before the
    commitment goes out. A commitment whose file is gone cannot be revealed: refused `invalid`, which the
    Settler takes as final; so is one whose file does not read as a statement (`CorruptStatement`), which is
    set aside (`<name>.corrupt`). Where the counterparty reveals, the contract then settles the trade with
    this side kept back (`market_sealed.withheld`); where neither reveals, the DSO meters it from the reveal
    deadline on, this MG's readings posted for it (`counterparty_readings`, review14 K3b)."""

    def __init__(
        self,
        submit: Submit,
        state: Callable[[], Any],
        chain: Callable[[], str],
        me: bytes,
        kept: Path | Callable[[], Path],
        now: Callable[[], float],
        sealed: Callable[[], bool],
    ) -> None:
        """`kept`: the folder, or how to find it when first needed (the daemon's data_dir)."""
        self._submit, self._state, self._chain, self.me = submit, state, chain, me
        self._kept, self._now, self._sealed = kept, now, sealed

    @property
    def kept(self) -> Path:
        return self._kept if isinstance(self._kept, Path) else self._kept()

    async def __call__(self, body: dict[str, Any]) -> Submission:
        tid = body["trade"]
        record = query.trade(self._state(), tid) if self._sealed() else None
        if record is None or record["settlement"] is not None or "delivered" not in body:
            return await self._submit(body)
        party = "buyer" if record["buyer"] == self.me else "seller"
        other = "seller" if party == "buyer" else "buyer"
        stated = record.get("statements", {}).get(party)
        if stated is not None:  # the lone statement again, after the deadline: as the chain has it
            again = {"trade": tid, "delivered": stated["delivered"]}
            return await self._submit(again | ({"short": stated["short"]} if "short" in stated else {}))
        seals = record.get("seals", {})
        try:
            kept = self.load(tid)
        except CorruptStatement as exc:
            return self._corrupt(tid, exc)
        if party not in seals:
            if kept is None:
                kept = {"delivered": body["delivered"], "salt": os.urandom(32)}
                if "short" in body:
                    kept["short"] = body["short"]
                self.save(tid, kept)  # before the commitment is out: a restart still reveals it
            seal = seal_of(self._chain(), tid, self.me, kept["delivered"], kept.get("short", 0), kept["salt"])
            done = await self._submit({"trade": tid, "seal": seal})
            # landed, the Settler waits on the trade's deadline (kept at the day's end) and reads it again
            return done if not done.landed else Submission(True, "sealed: committed")
        if kept is None:
            return Submission(
                False,
                f"invalid: trade {tid.hex()[:16]}…: committed, but the salt kept in {self.kept} is gone: it "
                "cannot be revealed",
            )
        if other not in seals and self._now() * 1000 < record["deadline"]:  # its commitment stands: wait
            return Submission(True, f"sealed: the {other} may commit until {record['deadline']} ms")
        reveal = {"trade": tid, "delivered": kept["delivered"], "salt": kept["salt"]}
        return await self._submit(reveal | ({"short": kept["short"]} if "short" in kept else {}))

    def _corrupt(self, tid: bytes, exc: CorruptStatement) -> Submission:
        """The final refusal for a trade whose kept file is corrupt: the file set aside for the operator (so
        that it is never taken for a lost one, and no new salt is ever written over it), logged as an error."""
        aside = exc.path
        if aside.suffix != CORRUPT:
            aside = exc.path.with_name(exc.path.name + CORRUPT)
            try:
                os.replace(exc.path, aside)
            except OSError as failed:  # it stays where it is: refused again on every try, never overwritten
                log.error("could not set %s aside: %s", exc.path, failed)
                aside = exc.path
        log.error(
            "trade %s: its kept statement is corrupt (%s), set aside as %s for the operator: this side "
            "cannot state it (the chain settles it without this side's figures)", tid.hex()[:16], exc, aside,
        )  # fmt: skip
        return Submission(False, f"invalid: trade {tid.hex()[:16]}…: {exc}; set aside as {aside}")

    def prune(self, state: Any) -> int:
        """Delete the kept statements of trades the chain shows settled or superseded (nothing is left to
        reveal for them); how many. A file whose name is no trade id is left alone. Nothing on a chain
        without sealed statements (none were kept)."""
        if not self._sealed():
            return 0
        folder = self.kept
        if not folder.is_dir():
            return 0
        gone = 0
        for path in folder.glob("*.json"):
            try:
                tid = bytes.fromhex(path.stem)
            except ValueError:
                continue
            record = query.trade(state, tid)
            if record is not None and (record["settlement"] is not None or "superseded" in record):
                path.unlink()
                gone += 1
        return gone

    def _file(self, tid: bytes) -> Path:
        return self.kept / f"{tid.hex()}.json"

    def load(self, tid: bytes) -> dict[str, Any] | None:
        """The statement this MG committed to for `tid`, or None. A file that is not exactly what `save` writes
        ({delivered, salt, short?}: integers and 32 bytes of hex), or one set aside as corrupt before, is our
        own store corrupted: `CorruptStatement` naming it, never a guess (1.9 or "1_000" is no Wh figure)."""
        path = self._file(tid)
        aside = path.with_name(path.name + CORRUPT)
        if aside.exists():
            raise CorruptStatement(aside, "set aside as corrupt before")
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text())
            salt = bytes.fromhex(doc["salt"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # (json's too-deep nesting)
            raise CorruptStatement(path, str(exc) or type(exc).__name__) from exc
        figures = {k: doc[k] for k in ("delivered", "short") if k in doc}
        if "delivered" not in figures or any(type(v) is not int for v in figures.values()):
            raise CorruptStatement(path, f"no integer figures: {figures!r:.80}")
        if len(salt) != 32:
            raise CorruptStatement(path, f"a salt of {len(salt)} bytes")
        return {**figures, "salt": salt}

    def save(self, tid: bytes, kept: dict[str, Any]) -> None:
        """Write the file whole or not at all (a temporary file synced, renamed, the folder synced). What `load`
        would refuse is never written (a ValueError before anything is committed to it)."""
        if any(type(kept.get(k, 0)) is not int for k in ("delivered", "short")) or len(kept["salt"]) != 32:
            raise ValueError(f"not a statement to keep: {kept!r:.100}")
        self.kept.mkdir(parents=True, exist_ok=True)
        doc = {**kept, "salt": kept["salt"].hex()}
        write_whole(self._file(tid), json.dumps(doc, sort_keys=True), sync_folder=True)


class CorruptStatement(ValueError):
    """A kept statement file that does not read as one (`SealedStatements.load`): `path` names it."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: not a kept statement ({why})")
        self.path = path

"""What an MGMC keeps of its day-ahead session between its posts, so that a restart resumes it exactly (review8 F3).

Promises: `save(path, checkpoint)` writes one small JSON file atomically (a temporary file, fsync, rename) before
each of this MGMC's posts: the iteration, its unrounded answer (its private anchor), the position and verdict
it posts, its phase (relaxed or final, the final phase's first iteration, its genset commitment), the
public book the answer was made against (prices, ρ, every member's positions of the iteration before) and
its owner rules' state (its bans and fees, the coordination, its pending judgement, the kWh stop pending),
on a clean session how many re-decision runs are done (`redecided`), and with an exchange fee its own
marginal values at its answers of the last two steps (`margins`, what its next verdict values its move by)
and the imbalance at which the fee's drift first lowered ρ (`drift_from`: its verdict waits on it,
`Book.lowered`).
`load(path, session)` returns it, or None when there is none or it is another session's;
`CheckpointError` when the file is unreadable or malformed: never a guess. The caller checks a checkpoint
against the chain (`dayahead_restart.resume`): one whose post the chain holds otherwise is stale, not used.
Private: the file holds this MG's unrounded answers; it stays in the MGMC's own state directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peergrid_edge.files import write_whole


class CheckpointError(ValueError):
    """The checkpoint file cannot be read as one (the message says why)."""


@dataclass(frozen=True)
class Checkpoint:
    session: str
    iteration: int  # the post it was written before
    own: tuple[float, ...]  # this MG's unrounded answer (kWh per interval): its next anchor
    posted: tuple[int, ...]  # the position it posts (Wh)
    settled: bool  # the verdict it posts with it
    relaxed: bool  # in the relaxed phase of a session with the genset phases
    final_from: int  # the final phase's first iteration (`DayAheadAgent.final_from`)
    commitment: tuple[tuple[bool, ...], ...] | None  # its genset on/off in the final phase, if it decided one
    prices: tuple[int, ...]  # the book the answer was made against: prices (nano/kWh), ρ,
    rho: int
    before: tuple[tuple[int, ...], ...]  # and every member's positions of iteration - 1 (empty at 0)
    # the owners' rules (`dayahead_rules.SessionRules.snapshot`: its bans and fees, the coordination, its
    # pending judgement; validated by `restore`) and whether the step before was the kWh stop; absent in
    # checkpoints from before rules days ran on the edge: none, false
    rules: dict[str, Any] | None = None
    kwh: bool = False
    # on a clean session, how many of its re-decision runs (`clean_decisions` − 1) are done (the seller's
    # switch decided again after each): a restart resumes in the run it was in; absent in older ones: 0
    redecided: int = 0
    # with an exchange fee: its own marginal values (currency per kWh) at its answers of the step before and of
    # this one (`DayAheadAgent.margins`; an entry None where a solve gave none); None: none yet (or older ones)
    margins: tuple[tuple[float, ...] | None, tuple[float, ...] | None] | None = None
    # with an exchange fee: the imbalance (kWh) of the iteration the fee's drift first took ρ below the config's
    # (`Book.drift_from`): not in the chain's state, and without it a restarted MG would say settled before the
    # others (R35-9); a resume takes it from here, a rejoin reads it back from the session's blocks
    # (`dayahead_rejoin.drift_from`); None: ρ never lowered (or older ones)
    drift_from: float | None = None


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically: the old one stays whole until the new one is."""
    write_whole(path, json.dumps(asdict(checkpoint), separators=(",", ":")))


def load(path: Path, session: str) -> Checkpoint | None:
    """The checkpoint of `session` at `path`, or None (no file, or another session's)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("session"), str):
        raise CheckpointError(f"{path}: not a checkpoint (no session)")
    if doc["session"] != session:
        return None
    try:
        checkpoint = _checked(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint of {session!r}: {exc}") from None
    return checkpoint


def _checked(doc: dict[str, Any]) -> Checkpoint:
    n = len(doc["prices"])
    own = tuple(_number(v) for v in doc["own"])
    posted = _ints(doc["posted"])
    before = tuple(_ints(row) for row in doc["before"])
    commitment = doc["commitment"]
    if commitment is not None:
        commitment = tuple(tuple(_bool(v) for v in row) for row in commitment)
    if n == 0 or len(own) != n or len(posted) != n or any(len(row) != n for row in before):
        raise ValueError(
            f"{n} prices, {len(own)} answers, {len(posted)} positions, rows {[len(r) for r in before]}"
        )
    rules = doc.get("rules")
    if rules is not None and not isinstance(rules, dict):
        raise TypeError(f"rules {rules!r} is not an object")
    iteration, final_from, rho = _int(doc["iteration"]), _int(doc["final_from"]), _int(doc["rho"])
    redecided = _int(doc.get("redecided", 0))
    margins = _margins(doc.get("margins"), n)
    drift_from = doc.get("drift_from")
    if drift_from is not None and _number(drift_from) < 0:
        raise ValueError(f"drift_from {drift_from} below 0")
    if iteration < 0 or rho < 1 or final_from < 1 or bool(before) != (iteration > 0) or redecided < 0:
        raise ValueError(
            f"iteration {iteration}, rho {rho}, final_from {final_from}, {len(before)} rows before, "
            f"redecided {redecided}"
        )
    return Checkpoint(
        doc["session"], iteration, own, posted, _bool(doc["settled"]), _bool(doc["relaxed"]), final_from,
        commitment, _ints(doc["prices"]), rho, before, rules, _bool(doc.get("kwh", False)), redecided, margins,
        None if drift_from is None else float(drift_from),
    )  # fmt: skip


def _margins(value: Any, n: int) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None] | None:
    """The checkpoint's `margins`: None, or two rows (each None or `n` finite numbers)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"margins {value!r} is not two rows")
    rows = tuple(None if row is None else tuple(_number(v) for v in _list(row)) for row in value)
    if any(row is not None and len(row) != n for row in rows):
        raise ValueError(f"margins of {[None if r is None else len(r) for r in rows]} values for {n} prices")
    return rows[0], rows[1]


def _list(values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise TypeError(f"{values!r} is not a list")
    return values


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _ints(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise TypeError(f"{values!r} is not a list")
    return tuple(_int(v) for v in values)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{value!r} is not a finite number")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value

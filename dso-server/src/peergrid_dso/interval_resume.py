"""Where a restarted DSO node goes on (D7): the first interval of its loop it has not finished, and what the DSO
chain already holds of that interval, so nothing the node issued is issued again.

Promises: `resume_at(record_file, first, end)` is the interval the loop starts at, and why, in one line (`end`
None: a loop with no last interval, `loop.intervals: null`, which always has a next one to run). The
source of truth for "finished" is the node's own interval records (`record_file`): an interval's record is the
last thing the loop does for it (after its contracts, its switching and its final verdict), so a record means
finished, a failed one (`error`) too (the loop went on past it before). The DSO chain cannot say it alone: an
interval that needed no contract and no switching (most do not) leaves nothing of the DSO's there. The node
resumes after the last recorded interval of `[first, end)` (records are appended in order; lines of other
intervals, torn lines and lines that are no record are passed over); with no `record_file` it cannot know, and
starts at `first`, as before; a record file it cannot read is a `ConfigError` naming it (the node does not start:
it would replay every interval or lose its records). It reads the file from its end, `BACK_BYTES` at a time,
and stops at the first block holding a record of `[first, end)`: the answer is the latest of those in what it
read (`last_recorded`). Why (D13): a pilot's file grows by some 35,000 records a year, and decoding it whole
took 1.25 s a start here for a year's, more on an SD card, for ever more; now it reads 2 MiB. Its answer is the
whole file's (the latest of `[first, end)` in it) on every file whose records of `[first, end)` come in order,
as the node writes them (each run resumes after the last; missed and failed intervals recorded in turn), and on
every file shorter than `BACK_BYTES`: it differs only where a record of `[first, end)` before the blocks it
read is later than every one in them (a loop once run on a range wholly below records it had, then on one
spanning both), which the whole-file reading resumed after; no reading of a tail can know that one.
`on_chain(state, nodes, t, locate)` is what the DSO chain holds of interval t before
the loop works on it: how many iterations of its security loop the MGs answered or were sent contracts for
(one sent after the answers to the last answered one counts too: `locate` orders them on the chain), and
its switching plan (`interval-<t>`, the planner's id, once per chain). The loop reads it for every interval; it
differs from nothing only for the interval that was half done at the stop (or finished with its record lost,
which is not synced to disk): that interval is resumed, not started again: its security loop goes on with the
next iteration's number (an MG's answer to a repeated iteration would be refused, its revision not increasing),
once the MGs' answers to the last one are in (the loop waits for them, bounded), and with its switching plan already on the chain its switching is not planned again (the security loop ends
before the switching, so it is not run again either). Pure but for reading the record file; never writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.state import read_obj

# the tail read at a start (D13): some 1,000-1,400 records of a 33-bus feeder (1.5-2 KB each), as the console's
# read-back of missed intervals (`console.missed_records.READ_BACK_BYTES`); a year's file is some 60 MB
BACK_BYTES = 2 * 1024 * 1024


class Resume(NamedTuple):
    """The interval the loop starts at (`end` when every interval is finished) and the line that says so."""

    interval: int
    said: str


def recorded_intervals(lines: Iterable[bytes]) -> list[int]:
    """The intervals of the DSO's interval records in `lines`, in file order; a torn line (a writer killed in
    the middle: `peergrid_ledger.records`) or a line that is no interval record is passed over."""
    found = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        interval = doc.get("interval") if isinstance(doc, dict) else None
        if isinstance(interval, int) and not isinstance(interval, bool):
            found.append(interval)
    return found


def resume_at(record_file: Path | None, first: int, end: int | None) -> Resume:
    """Where the loop of intervals `[first, end)` starts, from what `record_file` says it finished (module); `end`
    None: the loop has no last interval (`loop.intervals: null`), so it never finds every interval finished."""
    span = f"{first}-{end - 1}" if end is not None else f"{first}- (no last interval)"
    if record_file is None:
        return Resume(first, f"the loop starts at interval {first} of {span} (no record_file: it cannot know "
                             "what an earlier run finished)")  # fmt: skip
    try:
        last = last_recorded(record_file, first, end)
    except FileNotFoundError:
        last = None
    except OSError as exc:
        raise ConfigError(
            f"loop.record_file: {record_file}: cannot read it ({exc.strerror or exc})"
        ) from None
    if last is None:
        return Resume(
            first, f"the loop starts at interval {first} of {span} (no interval of it in {record_file})"
        )
    if end is not None and last + 1 >= end:
        return Resume(end, f"restarted: every interval of {span} is finished ({record_file}); nothing to run")
    return Resume(
        last + 1,
        f"restarted: resuming at interval {last + 1} of {span}: {record_file} holds {first}-{last} finished",
    )


def last_recorded(record_file: Path, first: int, end: int | None, back: int | None = None) -> int | None:
    """The latest interval of `[first, end)` recorded in the last block of `record_file` that holds any (read
    `back` bytes at a time from its end; None: `BACK_BYTES`), None when no line of the file does (module: why,
    and when that is the whole file's latest). Its lines are the whole file's, split as iterating the file splits
    them (at b"\\n", kept), so a torn line, one that is no record and one of another interval are passed over
    alike. `OSError` (`FileNotFoundError` too) is the caller's."""
    back = BACK_BYTES if back is None else back
    with record_file.open("rb") as f:
        at = f.seek(0, os.SEEK_END)
        rest = b""  # from `at` to the lines read already: a line's part an earlier block cut
        while at > 0:
            start = max(0, at - back)
            f.seek(start)
            block = f.read(at - start) + rest
            if len(block) != at - start + len(rest):  # shrunk while read: no part of a line taken for a line
                raise OSError(f"{record_file} shrank while it was read")
            at = start
            cut = 0  # the block's bytes up to its first line end: a line that began before it (or may have)
            if start > 0:
                cut = block.find(b"\n") + 1 or len(block)
            rest, whole = block[:cut], block[cut:]
            if not whole:
                continue
            pieces = whole.split(b"\n")
            lines = [piece + b"\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
            found = [t for t in recorded_intervals(lines) if first <= t and (end is None or t < end)]
            if found:
                return max(found)
    return None


# a txid's (height, index) on the DSO chain (the replica's store), None: not there
Locate = Callable[[bytes], tuple[int, int] | None]


@dataclass(frozen=True)
class OnChain:
    """What the DSO chain holds of one interval before the loop works on it (`on_chain`)."""

    interval: int
    iterations: int  # security-loop iterations the MGs answered (their revision) or had contracts for
    plan: dict[str, Any] | None  # its switching plan (`interval-<t>`), with its result or None

    @property
    def resumed(self) -> bool:
        return self.iterations > 0 or self.plan is not None

    def record(self) -> dict[str, Any]:
        """For the interval's record: what the run before the restart had put on the chain."""
        return {
            "iterations": self.iterations,
            "switching_plan": None if self.plan is None else plan_id(self.interval),
            "switching_result": self.plan is not None and self.plan.get("result") is not None,
        }


def plan_id(t: int) -> str:
    """The switching plan id of interval t: the planner's (`services.interval.IntervalPlanner.switching_plan`), so
    a restart finds on the chain the plan its run before made."""
    return f"interval-{t}"


def on_chain(state: Any, nodes: Mapping[str, bytes], t: int, locate: Locate | None = None) -> OnChain:
    """What the DSO chain (`state`) holds of interval t: the most iterations any MG of `nodes` (MG -> node key)
    answered (its injection's revision) or was sent contracts for, one more where a contract was sealed after
    the answers to the last answered iteration began (`locate`: a txid's (height, index) on the chain; None: not
    read), and the switching plan of t.
    Why the order (R45): a contract is sealed, so its iteration is not readable here, and an iteration asks the
    MGs the one before did not bring within their limits (`security.learn_reach`): iteration 1 to mg1, both
    answering, iteration 2 to mg2, then a stop before the answers to 2 landed, counted 1 contract each and
    revision 1, so the resumed loop sealed a second 'iteration 2'. The MGs answer an iteration only after all of
    its contracts are sealed, and the next iteration's are sealed only after an answer to it."""
    answered, sent = 0, 0
    answers: list[bytes] = []  # the txids of the answers to the last answered iteration
    contracts: list[bytes] = []
    for node in nodes.values():
        injection = query.equivalent_injection(state, node, t)
        if injection is not None:
            revision = int(injection["revision"])
            if revision > answered:
                answered, answers = revision, []
            if revision == answered and isinstance(injection.get("txid"), bytes):
                answers.append(injection["txid"])
        index = read_obj(state, ks.adjustment_index(node, t)) or []
        sent, contracts = max(sent, len(index)), contracts + index
    iterations = max(answered, sent)
    if locate is not None and answers and contracts:
        found = [at for at in map(locate, answers) if at is not None]
        if found and any((at := locate(txid)) is not None and at > min(found) for txid in contracts):
            iterations = max(iterations, answered + 1)
    return OnChain(t, iterations, query.switching_plan(state, plan_id(t)))

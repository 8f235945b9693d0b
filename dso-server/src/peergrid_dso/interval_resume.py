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
it would replay every interval or lose its records). `on_chain(state, nodes, t, locate)` is what the DSO chain holds of interval t before
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.state import read_obj


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
        with record_file.open("rb") as lines:
            done = [t for t in recorded_intervals(lines) if first <= t and (end is None or t < end)]
    except FileNotFoundError:
        done = []
    except OSError as exc:
        raise ConfigError(
            f"loop.record_file: {record_file}: cannot read it ({exc.strerror or exc})"
        ) from None
    if not done:
        return Resume(
            first, f"the loop starts at interval {first} of {span} (no interval of it in {record_file})"
        )
    last = max(done)
    if end is not None and last + 1 >= end:
        return Resume(end, f"restarted: every interval of {span} is finished ({record_file}); nothing to run")
    return Resume(
        last + 1,
        f"restarted: resuming at interval {last + 1} of {span}: {record_file} holds {first}-{last} finished",
    )


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

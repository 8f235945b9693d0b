"""Every relay read between plans, each interval: a tie closed by hand or a relay that dropped out is noticed
within the interval, not when the next plan is refused.

Promises: `RelayWatch.check(topology)` reads every relay the driver names (`switching_adopt.read_relays`: all
at once where the driver can) under the relays' lock (one writer per relay: read during an operator's
switching, a relay would seem to move by itself), and judges the reading against the open set the DSO holds at
that moment (`topology.open_set`, read under the same lock): a relay that reports another position (closed
while held open, open while held closed, operating) or cannot be read is found (`WatchFinding`). While a
finding stands, `alarm` names each such relay and what it reports, for `/api/health` and the log; it clears
once every relay reads where the DSO holds it, or once the DSO holds another open set (a plan or an adoption,
each of which read every relay first) until the next read. Each change of what is found - which relays and
what they report, not the wording of a read error - is recorded once on the DSO chain, not every interval: an
`operator_action` by the node (`WATCH_OPERATOR`) naming no transaction, whose action (128 characters at most)
says the relays and what they report, or that they agree again. A change is read once more before it is
recorded (a writer that moved a relay and set the open set in two steps is not a change); the later read is
the check's finding, so where the two disagree (a relay moved between them) the alarm follows it at once. What
is recorded is judged relay by relay (`read_twice`): a relay's report that says more than the record's (a
position, or unreadable where it agreed) is taken once that relay read the same twice running - at this
check's other read or any read of the last check - whatever the other relays did, and until then the record's
word stands for it (against an open set the record was not judged on, a plan's or an adoption's, the word
their own records give every relay: it agrees; a check where nothing new was read twice counts for none of the
rules below); one that says less is taken from the later read and weighed by those rules. A finding that
says less than the chain's last record against the same open set (every relay agrees again, or some do, or
one recorded off is now unreadable) is recorded only when
the next check finds it too: a relay that answers every other interval is recorded once, not every interval
(the alarm still follows every read, and a finding that says more is recorded at once). After
`RECEDING_CHECKS` such checks in a row, none read twice running (two relays flapping out of step, or one
flapping while another is put right), the record is brought down, relay by relay, to what those checks read
(`settled`): a relay the record names that none of them read so is recorded as they all read it, so another
relay's flapping never keeps a real change off the chain, and one that some check read as recorded keeps its
record (relays flapping out of step make no record per interval).
The watch's record is the chain's last word on the relays only until a plan or an adoption is recorded: each
read every relay first (a plan refuses on any disagreement), so its records say every relay was where it
started or took them. Against the open set it left the record is taken to say every relay agrees, and so
after each such plan the DSO chain's recorder tells the watch (`RecorderTellingWatch`, `plan_recorded`), also
where the open set ends where the record was judged (two plans, or one rolled back); a read from before it is
not read twice with one after it. A relay then found off again as the record said is recorded again (W1).
A record the chain refuses or does not make final in time is not sent again; one whose submit raised is, at
the next check.
Never commands a relay and never adopts: the DSO's open set changes only by a plan, the start's rule or an
operator's adoption (`switching_adopt`). `check` never raises: a failed read is logged, the node goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_dso.node_name import NODE_NAME
from peergrid_dso.services.dso_chain import switch_name
from peergrid_dso.services.switching_adopt import read_relays

WATCH_OPERATOR = NODE_NAME  # the node itself, as the chain adapter's gap fillers name it
ACTION_CHARS = 128  # the ledger's `operator_action` action: Str(128)
RECEDING_CHECKS = 4  # checks in a row saying less than the record, none twice, after which it is `settled`
log = logging.getLogger("peergrid_dso.switching")


@dataclass(frozen=True)
class WatchFinding:
    """The relays read against the open set the DSO held then."""

    held_open: tuple[int, ...]
    off: tuple[tuple[int, str], ...] = ()  # (branch, what it reports) where the DSO holds it otherwise
    unreadable: tuple[tuple[int, str], ...] = ()  # (branch, why it could not be read)

    @property
    def standing(self) -> bool:
        return bool(self.off or self.unreadable)

    @property
    def key(self) -> tuple[Any, ...]:
        """What a change is: the relays and what they report (an error's wording changes every time)."""
        return self.off, tuple(b for b, _ in self.unreadable)

    def says_less_than(self, key: tuple[Any, ...]) -> bool:
        """True when this finding tells nothing `key` (another finding's) does not: each relay it finds off
        is in `key` reporting the same, and each it cannot read is in `key` (unreadable, or off: its position
        is merely unknown now), and it is not `key` itself."""
        off, unreadable = key
        known = {b for b, _ in off} | set(unreadable)
        return self.key != key and set(self.off) <= set(off) and all(b in known for b, _ in self.unreadable)

    def held(self, branch: int) -> str:
        return "open" if branch in self.held_open else "closed"

    def alarm(self) -> str | None:
        if not self.standing:
            return None
        told = [f"branch {b} reports {seen}, the DSO holds it {self.held(b)}" for b, seen in self.off]
        told += [f"branch {b} unreachable ({why})" for b, why in self.unreadable]
        return (
            f"relays read between plans: {', '.join(told)}; the DSO holds open {list(self.held_open)} and "
            "adopts nothing: every switching plan is refused until the field is put right or an operator "
            "adopts the relays' positions"
        )

    def action(self) -> str:
        """The DSO chain's record of this finding, within `ACTION_CHARS`."""
        if not self.standing:
            agree = f"relay watch: every relay reads as the DSO holds it (open {list(self.held_open)})"
            return agree[:ACTION_CHARS]
        told = [f"{switch_name(b)} {seen} (held {self.held(b)})" for b, seen in self.off]
        told += [f"{switch_name(b)} unreadable" for b, _ in self.unreadable]
        head = "relay watch, not adopted: "
        for shown in range(len(told), 0, -1):
            more = f" +{len(told) - shown} more" if shown < len(told) else ""
            text = head + ", ".join(told[:shown]) + more
            if len(text) <= ACTION_CHARS:
                return text
        return (head + f"{len(told)} relays off the DSO's open set")[:ACTION_CHARS]


def judge(reading: Any, held_open: tuple[int, ...]) -> WatchFinding:
    """`reading` (`switching_adopt.RelayReading`) against the open set the DSO holds."""
    off = tuple((b, reading.positions[b]) for b in reading.disagreeing(held_open))
    return WatchFinding(tuple(sorted(held_open)), off, tuple(sorted(reading.unreadable.items())))


def said(key: tuple[Any, ...], branch: int) -> str | None:
    """What a finding's key says of a relay: its report when off, "" when unreadable, None when it agrees."""
    off, unreadable = key
    return dict(off).get(branch) or ("" if branch in unreadable else None)


def adds(word: str | None, recorded: str | None) -> bool:
    """A relay's `said` tells more than the record's word for it: a report the record does not give it, or
    unreadable where the record has it agree (`WatchFinding.says_less_than`, for one relay)."""
    return (bool(word) and word != recorded) or (word == "" and recorded is None)


def named(key: tuple[Any, ...]) -> set[int]:
    off, unreadable = key
    return {b for b, _ in off} | set(unreadable)


def read_twice(
    found: WatchFinding,
    earlier: Sequence[WatchFinding],
    recorded: tuple[Any, ...],
    recorded_open: tuple[int, ...] | None,
) -> WatchFinding | None:
    """What the chain may say of each relay after the read `found`, each judged apart (`earlier`: the reads
    it counts as read twice against, this check's other read and the last check's): a relay's report in
    `found` where some earlier read against the same open set gave that relay the same; else, against the open
    set `recorded` was judged on, the record's word where `found` tells more of that relay than the record (it
    may be moving, or its link flickering), and `found`'s where it tells less (H7's and H8's rules weigh those
    over checks); with nothing recorded yet, as if the record said every relay agrees, and so against another
    open set: a plan's or an adoption's, each of which read every relay first and whose own record on the chain
    says they agree with it (R33's residual again otherwise: wanting every relay read twice there, two relays
    whose links drop in turn kept a tie closed in every read off the chain for good after an adoption). None
    when no read before `found` was judged against its open set: nothing is taken from one read."""
    same = [f for f in earlier if f.held_open == found.held_open]
    if recorded_open in (None, found.held_open):
        base = recorded
    elif same:
        base = ((), ())  # what the plan or adoption that set this open set recorded: every relay agrees
    else:
        return None
    why = {b: w for f in (*same, found) for b, w in f.unreadable}  # the latest read error of each
    branches = named(found.key).union(*(named(f.key) for f in same), named(base))
    off, unreadable = [], []
    for branch in sorted(branches):
        now = said(found.key, branch)
        twice = any(said(f.key, branch) == now for f in same)
        kept = said(base, branch)
        word = now if twice or not adds(now, kept) else kept
        if word:
            off.append((branch, word))
        elif word == "":
            unreadable.append((branch, why.get(branch, "unreadable, as the DSO chain's record says")))
    return WatchFinding(found.held_open, tuple(off), tuple(unreadable))


def settled(recorded: tuple[Any, ...], findings: Sequence[WatchFinding]) -> WatchFinding:
    """What the chain should say of each relay after `findings` (checks against one open set, the last's):
    where some check read a relay as `recorded` (a `WatchFinding.key`) says it, the record's word; otherwise
    what every check agrees on: off with the same report in each, off; off or unreadable in each (where it
    stands is not known), unreadable; else it agrees. Names nothing no check read."""

    why = {b: f"reported {seen}" for f in findings for b, seen in f.off}
    why |= {b: w for f in findings for b, w in f.unreadable}  # the latest read error, if any
    off, unreadable = [], []
    for branch in sorted(named(recorded).union(*(named(f.key) for f in findings))):
        read = [said(f.key, branch) for f in findings]  # a report, "", or None: agrees
        now = said(recorded, branch)
        if now not in read:  # no check read it as the record says: as they all read it, else unreadable
            same = len(set(read)) == 1  # (off or unreadable at each check: where it is, not known) or agrees
            now = read[0] if same else ("" if None not in read else None)
        if now:
            off.append((branch, now))
        elif now == "":
            unreadable.append((branch, why[branch]))
    return WatchFinding(findings[-1].held_open, tuple(off), tuple(unreadable))


@dataclass
class RelayWatch:
    driver: Any  # the node's relay driver (a `switching.RelayInventory`)
    lock: Any  # the relays' lock every writer holds
    submit: Callable[
        [str, dict[str, Any]], Awaitable[Any]
    ]  # to the DSO chain (`ChainAdapter.submit`, signed)
    finding: WatchFinding | None = None  # the last reading judged
    recorded: tuple[Any, ...] = ((), ())  # the key of what the chain says last (nothing: every relay agrees)
    topology: Any = None  # what `finding` was judged against (its open set may change before the next read)
    recorded_open: tuple[int, ...] | None = None  # the open set the chain's last record was judged against
    receding: tuple[WatchFinding, ...] = ()  # the checks running that said less than the record, oldest first
    last_reads: tuple[WatchFinding, ...] = ()  # every read the last check took (one or two), for `read_twice`
    plans: int = 0  # plans and adoptions recorded on the DSO chain so far (`plan_recorded`)
    plans_at_read: int = 0  # `plans` at the last read, taken under the relays' lock (a plan holds it)
    plans_judged: int = 0  # `plans` when `recorded` was last brought up to the chain's word

    @property
    def alarm(self) -> str | None:
        """The last finding's alarm while it stands and the DSO still holds the open set it was judged
        against: a plan or an adoption that changed it read every relay first (and refuses or alarms on its
        own), so the finding no longer says anything until the next read (an operator's adoption lifts it)."""
        found, topology = self.finding, self.topology
        if found is None or topology is None or tuple(sorted(topology.open_set)) != found.held_open:
            return None
        return found.alarm()

    def read(self, topology: Any) -> WatchFinding | None:
        """Every relay against the DSO's open set, both read under the lock; None: no relay named."""
        with self.lock:
            held = tuple(sorted(topology.open_set))
            reading = read_relays(self.driver)
            self.plans_at_read = self.plans
        if reading is None or not (reading.positions or reading.unreadable):
            return None
        return judge(reading, held)

    async def check(self, topology: Any) -> WatchFinding | None:
        """Read and judge every relay now; alarm while a finding stands; record each change once."""
        try:
            first = found = await asyncio.to_thread(self.read, topology)
            self.follow_plans()
            if found is not None and not self.on_chain(found):  # a change: read once more before it counts
                found = await asyncio.to_thread(self.read, topology)
                if self.plans_at_read != self.plans_judged:  # a plan or an adoption between the two reads:
                    self.follow_plans()  # the first read is from before it, not read twice with the later
                    first = None
        except Exception:  # a read must never stop the node: the next interval reads again
            log.exception("reading the relays between plans failed")
            return None
        if found is None:
            return None
        # the later read is the field now, even where the two disagree (a relay moved between them): the
        # alarm follows it at once (before, a check whose reads disagreed kept the last finding)
        earlier = self.last_reads
        other = () if first is None or first is found else (first,)  # this check's other read, if any
        self.last_reads = (*other, found)
        self.finding, self.topology = found, topology
        if self.on_chain(found):
            # every relay agrees with the open set held now, as the chain says since the plan or adoption that
            # set it: later reads are judged against it, and what says less against it waits as H7 says
            # (`recedes`; against another open set `read_twice` takes every relay to agree, as here)
            if not found.standing:
                self.recorded_open = found.held_open
            self.receding = ()
            return found
        # what the chain may say is judged relay by relay: a report read twice running (this check's first
        # read, or any read of the last check: R33) is taken whatever the other relays did; judging whole
        # readings, two relays whose links dropped in different reads kept a tie closed in every read, or one
        # put right, off the chain for good (R33's residual)
        judged = read_twice(found, (*other, *earlier), self.recorded, self.recorded_open)
        if (
            judged is not None
            and found.held_open != self.recorded_open
            and found.standing
            and not judged.standing
        ):
            # every relay agrees there only by the word of the plan or adoption that set this open set, and the
            # later read finds a relay off it: not a record that they agree (a plan whose rollback failed
            # leaves a relay where its own records say it is not; R35)
            judged = None
        if judged is None or self.on_chain(judged):  # nothing new read twice: a relay may be moving
            log.info(  # nor does the check count for or against `receding`: not yet known to be a reading
                "relays read between plans: %s; read once, recorded if the next read finds it too",
                found.alarm() or "every relay reads as the DSO holds it again",
            )
            return found
        if self.recedes(judged):
            lasted = bool(self.receding) and self.receding[-1].key == judged.key
            self.receding = (*self.receding, judged)[-RECEDING_CHECKS:]
            if not lasted and len(self.receding) < RECEDING_CHECKS:
                log.info(  # a relay that answers every other interval: recorded if it lasts
                    "relays read between plans: %s; recorded on the DSO chain if the next check finds it too",
                    judged.alarm() or "every relay reads as the DSO holds it again",
                )
                return found
            if not lasted:  # readings that never repeat: each relay as they read it, unless one confirmed it
                to_record = settled(self.recorded, self.receding)
                if to_record.key == self.recorded:  # every relay it names was read so in these checks
                    return found
                log.warning(
                    "relays read between plans: %d checks running said less than the DSO chain's record, "
                    "none twice in a row; recording what they read: %s",
                    len(self.receding), to_record.action(),
                )  # fmt: skip
                await self._record(to_record)
                if self.recedes(judged):  # this check still counts towards the next: read twice, recorded
                    self.receding = (judged,)
                return found
        else:  # says more than the record, each relay that does read twice: recorded at once
            self.receding = ()
        if judged.standing:
            log.error("%s", judged.alarm())
        else:
            log.warning("relays read between plans: every relay reads as the DSO holds it again")
        await self._record(judged)
        return found

    def plan_recorded(self) -> None:
        """A plan that read every relay (one the executor did not refuse) or an adoption was recorded on the
        DSO chain: from the next read on, its records are the chain's last word on the relays (may be called
        from the plan's thread; only a count changes here)."""
        self.plans += 1

    def follow_plans(self) -> None:
        """After plans or adoptions recorded since the last check (`plan_recorded`), the chain's last word on
        the relays is theirs: every relay where the last of them left it, as before any record (a check
        finding every relay agrees records nothing; a relay off is recorded once read twice), and the reads
        before them are not read twice running with those after (the plans read every relay between). Before
        (W1), the watch's own record stood: tie 36 recorded closed, put right, a plan, then 36 closed again
        made no record while the plan's said every relay agreed."""
        if self.plans_at_read != self.plans_judged:
            self.plans_judged = self.plans_at_read
            self.recorded, self.recorded_open, self.receding, self.last_reads = ((), ()), None, (), ()

    def on_chain(self, found: WatchFinding) -> bool:
        """The chain's last word already says `found`: the watch's record, where it names relays judged on
        `found`'s open set; against another one (a plan's or an adoption's) the word is that every relay
        agrees (`read_twice`), so a relay off there as the record said is news (W1)."""
        same_open = not found.standing or found.held_open == self.recorded_open
        return found.key == self.recorded and same_open

    def recedes(self, found: WatchFinding) -> bool:
        """`found` says less than the chain's last record, against the open set that record was judged on."""
        return found.held_open == self.recorded_open and found.says_less_than(self.recorded)

    async def _record(self, found: WatchFinding) -> None:
        body = {"operator": WATCH_OPERATOR, "action": found.action(), "txs": []}
        try:
            result = await self.submit("operator_action", body)
        except Exception:  # sent again at the next check
            log.exception("the relay watch's record was not sent: %s", body["action"])
            return
        self.recorded, self.recorded_open, self.receding = found.key, found.held_open, ()
        if not getattr(result, "ok", False):
            log.error(
                "the DSO chain did not take the relay watch's record (%s: %s): %s",
                getattr(result, "reason", "?"), getattr(result, "detail", ""), body["action"],
            )  # fmt: skip


@dataclass
class RecorderTellingWatch:
    """The DSO chain's recorder (`dso_chain.ChainRecorder`) as the executor and the console use it, telling
    `watch` (`RelayWatch.plan_recorded`) of each plan's result where a step ran - the executor read every relay
    first - and of each adoption's result (an operator's, `submit`ted as a plan and its result). A plan the
    executor refused (no step: a relay was off or unreadable) records why and leaves the watch's record
    standing: told, the watch would record that relay again after every refused plan. All else is the
    recorder's own."""

    recorder: Any
    watch: RelayWatch

    def __getattr__(self, name: str) -> Any:  # plan, step, adjustment, enrol, submitted, ...
        # not a dunder nor its own field: copy and pickle look those up on an instance whose fields are not
        # set yet, and asking the recorder for them would recurse without end (R36-4)
        if name.startswith("__") or name in ("recorder", "watch"):
            raise AttributeError(name)
        return getattr(self.recorder, name)

    def result(self, plan: Any, steps: list[Any]) -> None:
        self.recorder.result(plan, steps)
        if steps:
            self.watch.plan_recorded()

    def submit(self, kind: str, body: dict[str, Any]) -> Any:
        result = self.recorder.submit(kind, body)
        if kind == "switching_result":  # an adoption's: a plan's own result comes through `result`
            self.watch.plan_recorded()
        return result

"""One MGMC's forward trades from the closed day-ahead session: its accepts, the coordinator's clear, the trades.

Promises: `ForwardAgent.run()`, after a completed session (`dayahead_agent`), has this MGMC decide alone, from
its own MG and the chain, what it accepts (`forward_first.first_accept`): its final stepped position
(`exchange.stepped`, public) at the session's closing prices on the tick, checked with its own day MILP
against its conventional day (`forward.accept_alone`: the whole position if it pays, else the largest part
that does, else zeros — it declines; while it owes, its sales alone: `debts`); intervals outside `window` (the
chain intervals this MGMC will trade) are accepted as zeros. It posts that as `exchange.accept` (clean when
the MG has no genset, as the simulation posts it), stating `window` as its trading window (`window` [first,
last] within the session: the chain bounds its make-whole gain over it; its zeros of a decline too): its
round 1.
Then the accept rounds (exchange_rounds.py): at each final block it asks the contract's `due` which round k
it should answer and, when one is due, re-checks its accept against the clear's cut of the set round k left
(`accepts_at`; `forward.recheck` with its conventional day computed once: unchanged if its day with what it
would get pays, else the largest part that does, else zeros; reductions in the first 4 re-checks, as
`commit`; with the session's exchange fee: its money less the fee due on what it would clear) and posts that
as its round k + 1, same `clean`. The coordinator (the session's, the lowest member
key) posts `exchange.clear` once the rounds are settled at round 2 or later (or nobody trades); after the
session's deadline (block time) once the members that accepted have settled; and at its hard stop however
far they got (`clear_wait_s` / 2 after the deadline; without a deadline `timeout_s` after its own accept).
Members that did not accept trade nothing (the contract's rule). An MGMC whose own accept failed declines:
with zeros as its round 1, or, when the failed accept landed after all, as its next round (a reduction). It
posts the clear again until the chain holds it complete (a session past the contract's bound clears in
parts). A member that sees no clear `clear_wait_s` past the deadline (the coordinator is gone) clears itself,
as the contract lets any member then. Every MGMC reads its forward trades from its own replica: the market
contract's trades of the intervals the clear closed (`forward_chain`'s readers, which the trader uses per
interval too, so an MGMC that gave up waiting still trades by a clear that came later).
An MGMC restarted after its accept finds it on the chain, posts no other first accept (review8 F3; the
decision "earlier") and resumes the rounds where `due` says. The chain's genesis `accept_rounds` and
`accept_wait_ms` are read from the replica and passed to the contract's readers. The result is typed
(`ForwardOutcome`): cleared, or not with why (the session's intervals then stay open and are bargained
intraday). A round's answer refused because the round is not open yet at the block's time (the proposer's
clock behind this MGMC's: "round k + 1 opens once …", `duplicate`) is posted again after the next final
block; a round is given up only when the chain has moved past it (`accepts_at(k)` None) or refused it for
good (review10 F3: one refusal silenced it for the round, so it never re-checked the cut). It counts on
block time (for `due`, the deadline and its stops) no further than the latest final block's time or its own
clock less the chain's clock tolerance (`margin_s`: genesis `block_max_future_ms`, at least 0.25 s), so
within that tolerance it posts no round before the round opens. Never reads
another MG's private data. The parts: its first accept (`forward_first`), a round's re-check and post
(`forward_answer`), a clean session's books (`forward_clean`), the chain's readers (`forward_chain`).
A clean session (opened with `clean_prices`): every accept is both books' (`forward_clean`: round 1 its whole
final stepped position in each, cut by its rules at each book's closing price, as `commit`'s round 1; the
re-checks `recheck` over both books' accepts and closing prices), posted as `positions` and
`clean_positions`; a session without a clean book posts exactly as before.
Not guaranteed: a clear at the hard stop (rounds not settled in time) takes the accepts as they stand, so an
MG cut after its last re-check can still end above its conventional day; on a chain with `accept_rounds` 2
the contract refuses that clear until the rounds settle (the silent standing after `accept_wait_ms`): the
coordinator then goes on answering and clears once they do, and the intervals go intraday if that comes
after the members' time (`clear_wait_s` past the deadline).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from peergrid_controller.forward import Acceptance
from peergrid_controller.model import Microgrid
from peergrid_edge.dayahead_clean import post_positions
from peergrid_edge.exchange_io import ROLE, NotFinal, Replica, SessionFailed, submit_final
from peergrid_edge.forward_answer import REDUCTIONS as REDUCTIONS
from peergrid_edge.forward_answer import RETRIED as RETRIED
from peergrid_edge.forward_answer import answer
from peergrid_edge.forward_chain import DEADLINE_MARGIN_S as DEADLINE_MARGIN_S
from peergrid_edge.forward_chain import ForwardOutcome as ForwardOutcome
from peergrid_edge.forward_chain import cleared_net, genesis_params
from peergrid_edge.forward_chain import forward_plan as forward_plan
from peergrid_edge.forward_chain import forward_session as forward_session
from peergrid_edge.forward_chain import margin_s as margin_s
from peergrid_edge.forward_clean import accept_body
from peergrid_edge.forward_first import above_capacity, first_accept, with_window
from peergrid_ledger import keys
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.exchange_clearing import accepted, cleared, due, rounds
from peergrid_ledger.genesis import Params

log = logging.getLogger("peergrid.edge.forward")

# the longest the rounds' loop sleeps without a final block (the deadline and the stops are woken for)
POLL_S = 1.0


class ForwardAgent:
    def __init__(
        self,
        ledger: Replica,
        key: keys.Keypair,
        mg: Microgrid,
        interval_hours: float,
        session: str,
        window: range | None = None,
        timeout_s: float = 10.0,
        before_submit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        clear_wait_s: float | None = None,
        params: Params | None = None,
    ) -> None:
        """`window`: the chain intervals this MGMC will trade (None: all of the session's); `timeout_s`: how
        long a transaction waits for a final block, how long the coordinator waits for the rounds after its
        own accept on a session opened without a deadline, and a member for the clear (twice as long); with
        one (`exchange.open`'s, block time) the coordinator clears at the latest `clear_wait_s` / 2 (default
        `timeout_s`) after it, and a member that sees no clear `clear_wait_s` after it clears itself (the
        contract lets any member clear after it); `clock`: wall s, the block time's scale; `params`: the
        chain's genesis parameters (None: read from the replica)."""
        self.ledger, self.key, self.mg, self.dt = ledger, key, mg, interval_hours
        self.session, self.window = session, window
        self.timeout_s, self.before_submit, self.clock = timeout_s, before_submit, clock
        self.clear_wait_s = timeout_s if clear_wait_s is None else clear_wait_s
        self.params = params
        self.posted: tuple[int, ...] = ()
        self.decision = ""
        self.costs = (float("nan"), float("nan"))
        self.round = 0  # the round of this MG's latest accept (0: none seen)
        self.declining = False  # its accept failed but landed: its next round posts zeros
        # rounds k the chain moved past (or refused for good): never posted again
        self.refused: set[int] = set()
        # round k -> the chain's height when its answer was refused as not open yet: posted again only after a
        # later final block (the round opens by block time, which may run behind this MGMC's clock)
        self.early: dict[int, int] = {}
        self._conventional: tuple[float, ...] | None = None

    async def run(self) -> ForwardOutcome:
        accept_failed = ""
        try:
            record = self._closed_session()
            if self.params is None:
                self.params = genesis_params(self.ledger)
            try:
                await self._accept(record)
            except Exception as exc:  # its own accept failed: the coordinator still clears the others'
                accept_failed = "its accept failed: " + _why(exc, self.session) + await self._decline(record)
            await self._rounds(record)
            return self._read(record, accept_failed)
        except Exception as exc:  # no forward trades seen here: the intervals are bargained intraday
            reason = "; ".join(r for r in (accept_failed, _why(exc, self.session)) if r)
        log.warning("forward trades of %s: %s", self.session, reason)
        return self._outcome(False, reason, 0, (), ())

    def _closed_session(self) -> dict[str, Any]:
        record = exchange.session(self.ledger.state(ROLE), self.session)
        if record is None or not record["closed"]:
            raise SessionFailed(f"session {self.session!r} is not closed on this replica: nothing to accept")
        if record["intervals"] != self.mg.intervals:
            raise SessionFailed(
                f"session {self.session!r} has {record['intervals']} intervals, this MG's day {self.mg.intervals}"
            )
        return record

    def _decide(self, record: dict[str, Any]) -> Acceptance:
        """What this MG accepts as its round 1 (`forward_first.first_accept`)."""
        key = self.key.public
        return first_accept(self.ledger, key, self.mg, self.dt, self.session, self.window, record)

    async def _accept(self, record: dict[str, Any]) -> None:
        """Its round 1 within the capacity standing as it is sent: one posted while it decided is met by deciding
        once more; an accept refused for one that landed ahead of it is decided and sent once more (one warning:
        `forward_first.above_capacity`); any other refusal, or a second, fails its accept (it declines)."""
        if self._accepted_before():
            return
        choice = self._decide(record)
        if above_capacity(self.ledger, self.key.public, record, choice.positions):  # posted as it decided
            choice = self._decide(record)  # cut to it, its day checked again
        try:
            await self._send(record, choice)
        except SessionFailed as refused:  # not final (it may still land) or not the capacity's: never retried
            if isinstance(refused, NotFinal) or not above_capacity(
                self.ledger, self.key.public, record, choice.positions, self.session
            ):
                raise
            await self._send(record, self._decide(record))

    async def _send(self, record: dict[str, Any], choice: Acceptance) -> None:
        self.decision, self.costs = choice.decision, (choice.day_cost, choice.conventional)
        body = accept_body(self.session, choice.positions, not self.mg.gensets, bool(record.get("clean")))
        body = with_window(body, self.window, record)
        try:
            await submit_final(
                self.ledger, self.key, "exchange.accept", body, self.timeout_s, self.before_submit
            )
        except SessionFailed:
            if not self._accepted_before():  # else its earlier process's accept landed first (its nonce)
                raise
            if self.posted == choice.positions:  # this one after all, final after the wait gave up
                self.decision = choice.decision
            return
        self.posted, self.round = choice.positions, 1
        log.info("forward trades of %s: accepted (%s) %s", self.session, choice.decision, choice.positions)

    def _accepted_before(self) -> bool:
        """Whether the chain holds an accept of this MGMC's earlier process (it restarted after posting it,
        review8 F3): that one stands, and the rounds go on from its round."""
        earlier = accepted(self.ledger.state(ROLE), self.session, self.key.public)
        if earlier is None:
            return False
        self.decision, self.posted = "earlier", post_positions(earlier)
        self.round = earlier["round"]
        log.info("forward trades of %s: accepted before this start %s", self.session, self.posted)
        return True

    async def _decline(self, record: dict[str, Any]) -> str:
        """After its own accept failed: post zeros (it trades nothing forward), so that the clear need not
        wait for its accept until the deadline (review8 F4); when the failed accept landed after all, the
        zeros go as its next round (a reduction: `_rounds`). What became of that, for the outcome's reason."""
        if accepted(self.ledger.state(ROLE), self.session, self.key.public) is not None:
            self.declining = True
            return "; declining with zeros in its next accept round"
        books = bool(record.get("clean"))
        zeros = (0,) * record["intervals"] * (2 if books else 1)
        body = with_window(accept_body(self.session, zeros, not self.mg.gensets, books), self.window, record)
        try:
            await submit_final(
                self.ledger, self.key, "exchange.accept", body, self.timeout_s, self.before_submit
            )
        except Exception as exc:  # e.g. the failed accept landed meanwhile: zeros in its next round then
            if accepted(self.ledger.state(ROLE), self.session, self.key.public) is not None:
                self.declining = True
                return "; declining with zeros in its next accept round"
            return "; declining with zeros failed too: " + _why(exc, self.session)
        self.posted, self.decision, self.round = zeros, "declined", 1
        return "; declined with zeros"

    # --- the accept rounds and the clear ------------------------------------------------------------------

    def _stops(self, record: dict[str, Any]) -> tuple[float, float]:
        """(the coordinator's hard stop, when a member clears itself or gives up), wall s: `clear_wait_s` / 2
        and `clear_wait_s` past the deadline (and its margin); without a deadline `timeout_s` and twice that
        from now."""
        deadline = record.get("deadline")
        if deadline is None:
            now = self.clock()
            return now + self.timeout_s, now + 2 * self.timeout_s
        past = deadline / 1000 + self._margin_s()
        return past + self.clear_wait_s / 2, past + self.clear_wait_s

    def _margin_s(self) -> float:
        assert self.params is not None
        return margin_s(self.params)

    def _now_ms(self) -> int:
        """Block time as this MGMC may count on it now: a transaction sent now lands in a block stamped after
        the latest final block's time (block times only grow), and after this clock less the margin while the
        proposer's clock is at most that far behind it (the chain's own tolerance, `margin_s`)."""
        head_ms: int = self.ledger.replicas[ROLE].app.head().timestamp_ms
        return max(head_ms + 1, math.floor((self.clock() - self._margin_s()) * 1000))

    def _due(self, state: Any) -> int | None:
        """The round this MGMC should answer now (the contract's `due`), unless the chain refused it."""
        assert self.params is not None
        p = self.params
        k = due(state, self.session, self.key.public, self._now_ms(), p.accept_rounds, p.accept_wait_ms)
        if k is None or k in self.refused or self._height() <= self.early.get(k, -1):
            return None
        return k

    def _height(self) -> int:
        """The height of this replica's latest final block."""
        height: int = self.ledger.replicas[ROLE].app.head().height
        return height

    def _ready(self, state: Any, record: dict[str, Any]) -> bool:
        """Whether the coordinator clears now: the rounds settled at round 2 or later, or nobody trades (after
        the deadline among the members that accepted: the others count as declined)."""
        assert self.params is not None
        now = self._now_ms()
        status = rounds(state, self.session, self.params.accept_rounds, now, self.params.accept_wait_ms)
        deadline = record.get("deadline")
        late = deadline is not None and now > deadline
        if status is None or (status["waiting"] and not late) or status["behind"] or status["changed"]:
            return False
        standing = [accepted(state, self.session, m) for m in record["members"]]
        return status["round"] >= 2 or not any(a is not None and any(a["positions"]) for a in standing)

    async def _rounds(self, record: dict[str, Any]) -> None:
        """Answer every round due to this MGMC until the session is cleared; the coordinator clears when the
        rounds are ready (`_ready`) or at its hard stop, a member by itself when the coordinator is gone."""
        lead = record["coordinator"] == self.key.public
        stop, give_up = self._stops(record)
        deadline = record.get("deadline")
        marks = [t for t in (stop if lead else None, give_up) if t is not None]
        if deadline is not None:
            marks.append(deadline / 1000 + self._margin_s())

        def moved(state: Any) -> bool:
            return (
                cleared(state, self.session) is not None
                or self._due(state) is not None
                or (lead and self._ready(state, record))
            )

        while True:
            state = self.ledger.state(ROLE)
            if cleared(state, self.session) is not None:
                return
            now = self.clock()
            if lead and now < give_up and (now >= stop or self._ready(state, record)):
                try:
                    await self._clear_all(record)
                    return
                except SessionFailed as exc:  # (genesis accept_rounds 2: unsettled rounds are not cleared)
                    if now < stop:
                        raise
                    log.warning("forward trades of %s: clear at the hard stop: %s", self.session, exc)
                    stop = give_up  # it answers the rounds still due and clears once they settle
                continue
            if now >= give_up:
                if deadline is None:  # only the coordinator clears such a session
                    raise SessionFailed(
                        f"session {self.session!r} was not cleared within {2 * self.timeout_s:g} s"
                    )
                log.warning(
                    "forward trades of %s: not cleared by the deadline: this MGMC clears", self.session
                )
                await self._clear_all(record)
                return
            k = self._due(state)
            if k is not None:
                await self._answer(record, state, k)
                continue
            wake = min([t - now for t in marks if t > now] + [POLL_S])
            await self.ledger.wait_for(ROLE, moved, max(wake, 0.01))

    async def _answer(self, record: dict[str, Any], state: Any, k: int) -> None:
        """Post this MGMC's round k + 1: its re-check of the set round k left (`forward_answer.answer`)."""
        await answer(self, record, state, k)

    async def _clear_all(self, record: dict[str, Any]) -> None:
        """Post `exchange.clear` until the session is cleared (a big one clears in parts, one per
        transaction); a refusal once another member's clear completed it is no failure."""
        parts = 0
        while cleared(self.ledger.state(ROLE), self.session) is None:
            if parts > record["intervals"]:  # every part clears at least one interval
                raise SessionFailed(f"session {self.session!r} not cleared after {parts} clears")
            body = {"session": self.session}
            try:
                await submit_final(
                    self.ledger, self.key, "exchange.clear", body, self.timeout_s, self.before_submit
                )
            except SessionFailed:
                if cleared(self.ledger.state(ROLE), self.session) is None:
                    raise
            parts += 1

    def _read(self, record: dict[str, Any], reason: str) -> ForwardOutcome:
        state = self.ledger.state(ROLE)
        summary = cleared(state, self.session)
        assert summary is not None
        closed, net = cleared_net(state, record, self.session, self.key.public)
        return self._outcome(True, reason, summary["accepted"], closed, net)

    def _outcome(
        self, done: bool, reason: str, members: int, intervals: tuple[int, ...], net: tuple[int, ...]
    ) -> ForwardOutcome:
        return ForwardOutcome(
            self.session, done, reason, self.decision, self.posted, *self.costs, members, intervals, net,
            self.round,
        )  # fmt: skip


def _why(exc: Exception, session: str) -> str:
    if isinstance(exc, SessionFailed):
        return str(exc)
    log.exception("forward trades of %s: unexpected error", session)  # a solver or replica error
    return f"{type(exc).__name__}: {exc}"

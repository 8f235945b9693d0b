"""One MGMC's forward trades from the closed day-ahead session: its accept, the coordinator's clear, the trades.

Promises: `ForwardAgent.run()`, after a completed session (`dayahead_agent`), has this MGMC decide alone, from
its own MG and the chain, what it accepts: its final stepped position (`exchange.stepped`, public) at the
session's closing prices on the tick, checked with its own day MILP against its conventional day
(`forward.accept_alone`: the whole position if it pays, else the largest part that does, else zeros — it
declines); intervals outside `window` (the chain intervals this MGMC will trade) are accepted as zeros. It
posts that as `exchange.accept` (clean when the MG has no genset, as the simulation posts it). The
coordinator (the session's, the lowest member key) posts `exchange.clear` once every member accepted or at
the session's deadline (`exchange.open`'s, block time; without one, `timeout_s` after its own accept):
members that did not accept trade nothing (the contract's rule); also when its own accept failed (a
refusal, a solver error: it then trades nothing forward itself). An MGMC whose own accept failed posts zeros
instead (it declines), so the clear need not wait for it until the deadline. It posts the clear again until the chain
holds it complete (a session past the contract's bound clears in parts). Every MGMC then waits for the
clear in a final block; on a session with a deadline, one that sees no clear `clear_wait_s` past it
(the coordinator is gone) clears itself, as the contract lets any member then. It reads its forward trades
from its own replica: the market
contract's trades of the intervals the clear closed (`forward_session` and `forward_plan` read them there
per interval too, so an MGMC that gave up waiting still trades by a clear that came later).
An MGMC restarted after its accept finds it on the chain and posts no other (review8 F3; the decision
"earlier"). The result is typed (`ForwardOutcome`): cleared, or not with why (the session's intervals then stay open
and are bargained intraday). Never retries a refusal; never reads another MG's private data.
Not guaranteed: the clear scales each interval's long side pro rata after every accept, so a partly filled
MG trades less than it checked and is not re-checked (the simulation's `commit` re-checks, this does not).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_controller.dayexchange import NANO
from peergrid_controller.forward import Acceptance, accept_alone
from peergrid_controller.model import Microgrid
from peergrid_edge.chain_bargaining import position
from peergrid_edge.exchange_io import ROLE, Replica, SessionFailed, submit_final
from peergrid_ledger import keys, query
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.exchange_clearing import accepted, cleared

log = logging.getLogger("peergrid.edge.forward")

# past the chain's deadline by this much on this clock before a clear is posted: block time is the proposer's
# wall clock, so a clear sent at the deadline to the millisecond can land in a block stamped before it
DEADLINE_MARGIN_S = 0.25


@dataclass(frozen=True)
class ForwardOutcome:
    session: str
    cleared: bool
    # why there are no forward trades (the intervals are bargained intraday) or, when cleared, why this MG
    # has none (its accept failed: it trades nothing forward); "" otherwise
    reason: str
    # this MG's accept: "whole", "reduced", "declined", "nothing" (no position), "earlier" (posted before this
    # MGMC restarted: the chain keeps the first), "" (none posted)
    decision: str
    accepted: tuple[int, ...]  # Wh per session interval (+ sale) this MG accepted
    day_cost: float  # its day cost with the accepted positions traded in full, payments included
    conventional: float  # its conventional day cost
    members_accepted: int  # accepts the clear counted
    intervals: tuple[int, ...]  # chain intervals the clear closed (with any trade)
    net_wh: tuple[int, ...]  # this MG's cleared net export per session interval (+ sale)


def forward_session(state: Any, interval: int) -> str | None:
    """The exchange session whose clear closed chain `interval` (public), or None: not forward-traded."""
    record = query.interval(state, interval)
    session = record.get("session")
    return str(session) if record["closed"] and session is not None else None


def forward_plan(state: Any, me: bytes, intervals: Sequence[int], dt: float) -> list[float] | None:
    """This MG's net P2P export (kW) fixed by forward trades in each of `intervals` (0 where none), or None
    when it has none there: what the trader's day plan holds fixed."""
    plan = [
        position(state, t, me)[1] / dt if forward_session(state, t) is not None else 0.0 for t in intervals
    ]
    return plan if any(plan) else None


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
    ) -> None:
        """`window`: the chain intervals this MGMC will trade (None: all of the session's); `timeout_s`: how
        long the coordinator waits for the accepts after its own, and a member for the clear (twice as
        long), on a session opened without a deadline; with one (`exchange.open`'s, block time) the
        coordinator waits for the accepts until it and a member for the clear until `clear_wait_s` (default
        `timeout_s`) after it, then clears itself (the contract lets any member clear after it); `clock`: wall
        s, the block time's scale."""
        self.ledger, self.key, self.mg, self.dt = ledger, key, mg, interval_hours
        self.session, self.window = session, window
        self.timeout_s, self.before_submit, self.clock = timeout_s, before_submit, clock
        self.clear_wait_s = timeout_s if clear_wait_s is None else clear_wait_s
        self.posted: tuple[int, ...] = ()
        self.decision = ""
        self.costs = (float("nan"), float("nan"))

    async def run(self) -> ForwardOutcome:
        accept_failed = ""
        try:
            record = self._closed_session()
            try:
                await self._accept(record)
            except Exception as exc:  # its own accept failed: the coordinator still clears the others'
                accept_failed = "its accept failed: " + _why(exc, self.session) + await self._decline(record)
            if record["coordinator"] == self.key.public:
                await self._clear(record)
            return await self._read(record, accept_failed)
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
        """What this MG accepts: its final stepped position within the window, by its own check."""
        final = exchange.stepped(self.ledger.state(ROLE), self.session, self.key.public)
        if final is None:
            raise SessionFailed(f"this MGMC is not a member of session {self.session!r}")
        n, first = record["intervals"], record["first_interval"]
        stepped = final["positions"] or [0] * n
        inside = [self.window is None or first + t in self.window for t in range(n)]
        kwh = [q / 1000 if keep else 0.0 for q, keep in zip(stepped, inside, strict=True)]
        return accept_alone(self.mg, self.dt, [p / NANO for p in record["prices"]], kwh)

    async def _accept(self, record: dict[str, Any]) -> None:
        if self._accepted_before():
            return
        choice = self._decide(record)
        self.decision, self.costs = choice.decision, (choice.day_cost, choice.conventional)
        body = {"session": self.session, "positions": list(choice.positions), "clean": not self.mg.gensets}
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
        self.posted = choice.positions
        log.info("forward trades of %s: accepted (%s) %s", self.session, choice.decision, choice.positions)

    def _accepted_before(self) -> bool:
        """Whether the chain holds an accept of this MGMC's earlier process (it restarted after posting it,
        review8 F3): that one stands, as the contract keeps the first."""
        earlier = accepted(self.ledger.state(ROLE), self.session, self.key.public)
        if earlier is None:
            return False
        self.decision, self.posted = "earlier", tuple(earlier["positions"])
        log.info("forward trades of %s: accepted before this start %s", self.session, self.posted)
        return True

    async def _decline(self, record: dict[str, Any]) -> str:
        """After its own accept failed: post zeros (it trades nothing forward), so that the clear need not
        wait for its accept until the deadline (review8 F4); what became of that, for the outcome's reason."""
        zeros = (0,) * record["intervals"]
        body = {"session": self.session, "positions": list(zeros), "clean": not self.mg.gensets}
        try:
            await submit_final(
                self.ledger, self.key, "exchange.accept", body, self.timeout_s, self.before_submit
            )
        except Exception as exc:  # e.g. the failed accept had landed after all: the chain keeps the first
            return "; declining with zeros failed too: " + _why(exc, self.session)
        self.posted = zeros
        self.decision = "declined"
        return "; declined with zeros"

    def _until_deadline(self, record: dict[str, Any]) -> float | None:
        """Seconds until the block time passes the session's clear deadline (None: it has none)."""
        deadline = record.get("deadline")
        return None if deadline is None else max(0.0, deadline / 1000 - self.clock()) + DEADLINE_MARGIN_S

    async def _clear(self, record: dict[str, Any]) -> None:
        """The coordinator: clear once every member accepted, or at the session's deadline (without one, at
        the timeout): the rest trade nothing."""
        members = record["members"]

        def waiting(state: Any) -> list[bytes]:
            return [m for m in members if accepted(state, self.session, m) is None]

        wait = self._until_deadline(record)
        if not await self.ledger.wait_for(
            ROLE, lambda s: not waiting(s), self.timeout_s if wait is None else wait
        ):
            late = ", ".join(m.hex()[:16] + "…" for m in waiting(self.ledger.state(ROLE)))
            log.warning("forward trades of %s: no accept from %s: cleared without", self.session, late)
        await self._clear_all(record)

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

    async def _read(self, record: dict[str, Any], reason: str) -> ForwardOutcome:
        def done(state: Any) -> bool:
            return cleared(state, self.session) is not None

        wait = self._until_deadline(record)
        if wait is None:  # no deadline: only the coordinator clears
            if not await self.ledger.wait_for(ROLE, done, 2 * self.timeout_s):
                raise SessionFailed(
                    f"session {self.session!r} was not cleared within {2 * self.timeout_s:g} s"
                )
        elif not await self.ledger.wait_for(ROLE, done, wait + self.clear_wait_s):
            # the coordinator is gone or late: past the deadline any member clears (the contract's rule)
            log.warning("forward trades of %s: not cleared by the deadline: this MGMC clears", self.session)
            await self._clear_all(record)
        state = self.ledger.state(ROLE)
        summary = cleared(state, self.session)
        assert summary is not None
        first, me = record["first_interval"], self.key.public
        closed, net = [], []
        for t in range(record["intervals"]):
            ours = forward_session(state, first + t) == self.session
            if ours:
                closed.append(first + t)
            net.append(round(position(state, first + t, me)[1] * 1000) if ours else 0)
        return self._outcome(True, reason, summary["accepted"], tuple(closed), tuple(net))

    def _outcome(
        self, done: bool, reason: str, members: int, intervals: tuple[int, ...], net: tuple[int, ...]
    ) -> ForwardOutcome:
        return ForwardOutcome(
            self.session, done, reason, self.decision, self.posted, *self.costs, members, intervals, net
        )


def _why(exc: Exception, session: str) -> str:
    if isinstance(exc, SessionFailed):
        return str(exc)
    log.exception("forward trades of %s: unexpected error", session)  # a solver or replica error
    return f"{type(exc).__name__}: {exc}"

"""One MGMC's forward trades from the closed day-ahead session: its accept, the coordinator's clear, the trades.

Promises: `ForwardAgent.run()`, after a completed session (`dayahead_agent`), has this MGMC decide alone, from
its own MG and the chain, what it accepts: its final stepped position (`exchange.stepped`, public) at the
session's closing prices on the tick, checked with its own day MILP against its conventional day
(`forward.accept_alone`: the whole position if it pays, else the largest part that does, else zeros — it
declines); intervals outside `window` (the chain intervals this MGMC will trade) are accepted as zeros. It
posts that as `exchange.accept` (clean when the MG has no genset, as the simulation posts it). The
coordinator (the session's, the lowest member key) posts `exchange.clear` once every member accepted or at
`timeout_s` after its own accept (members that did not accept trade nothing: the contract's rule), and
also when its own accept failed (a refusal, a solver error: it then trades nothing forward itself). Every
MGMC then waits for the clear in a final block and reads its forward trades from its own replica: the market
contract's trades of the intervals the clear closed (`forward_session` and `forward_plan` read them there
per interval too, so an MGMC that gave up waiting still trades by a clear that came later).
The result is typed (`ForwardOutcome`): cleared, or not with why (the session's intervals then stay open
and are bargained intraday). Never retries a refusal; never reads another MG's private data.
Not guaranteed: the clear scales each interval's long side pro rata after every accept, so a partly filled
MG trades less than it checked and is not re-checked (the simulation's `commit` re-checks, this does not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_controller.dayexchange import NANO
from peergrid_controller.forward import Acceptance, accept_alone
from peergrid_controller.model import Microgrid
from peergrid_edge.chain_bargaining import position
from peergrid_edge.dayahead_agent import ROLE, Replica, SessionFailed, submit_final
from peergrid_ledger import keys, query
from peergrid_ledger.contracts import exchange
from peergrid_ledger.contracts.exchange_clearing import accepted, cleared

log = logging.getLogger("peergrid.edge.forward")


@dataclass(frozen=True)
class ForwardOutcome:
    session: str
    cleared: bool
    # why there are no forward trades (the intervals are bargained intraday) or, when cleared, why this MG
    # has none (its accept failed: it trades nothing forward); "" otherwise
    reason: str
    # this MG's accept: "whole", "reduced", "declined", "nothing" (no position), "" (none posted)
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
    ) -> None:
        """`window`: the chain intervals this MGMC will trade (None: all of the session's); `timeout_s`: how
        long the coordinator waits for the accepts after its own, and a member for the clear (twice as
        long)."""
        self.ledger, self.key, self.mg, self.dt = ledger, key, mg, interval_hours
        self.session, self.window = session, window
        self.timeout_s, self.before_submit = timeout_s, before_submit
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
                accept_failed = "its accept failed: " + _why(exc, self.session)
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
        choice = self._decide(record)
        self.decision, self.costs = choice.decision, (choice.day_cost, choice.conventional)
        body = {"session": self.session, "positions": list(choice.positions), "clean": not self.mg.gensets}
        await submit_final(self.ledger, self.key, "exchange.accept", body, self.timeout_s, self.before_submit)
        self.posted = choice.positions
        log.info("forward trades of %s: accepted (%s) %s", self.session, choice.decision, choice.positions)

    async def _clear(self, record: dict[str, Any]) -> None:
        """The coordinator: clear once every member accepted or at the timeout (the rest trade nothing)."""
        members = record["members"]

        def waiting(state: Any) -> list[bytes]:
            return [m for m in members if accepted(state, self.session, m) is None]

        if not await self.ledger.wait_for(ROLE, lambda s: not waiting(s), self.timeout_s):
            late = ", ".join(m.hex()[:16] + "…" for m in waiting(self.ledger.state(ROLE)))
            log.warning("forward trades of %s: no accept from %s: cleared without", self.session, late)
        body = {"session": self.session}
        await submit_final(self.ledger, self.key, "exchange.clear", body, self.timeout_s, self.before_submit)

    async def _read(self, record: dict[str, Any], reason: str) -> ForwardOutcome:
        if not await self.ledger.wait_for(
            ROLE, lambda s: cleared(s, self.session) is not None, 2 * self.timeout_s
        ):
            raise SessionFailed(f"session {self.session!r} was not cleared within {2 * self.timeout_s:g} s")
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

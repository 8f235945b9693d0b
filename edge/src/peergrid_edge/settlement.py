"""Settling this MG's purchases (design step 8): each agreed trade it bought is paid once, retried until it is.

Promises: `Settler.settle(t, trades)` submits a `settle` for each trade of interval t's latest closing that this
MG bought. The chain may refuse it for a reason another party cures later — the buyer's balance (its income
from its own sales) not yet on chain, a lost nonce, no verdict in time, a transaction too old to land, a full
pool — and then the trade is retried with back-off (`first_wait_s`, doubling up to `max_wait_s`) whenever the
agent is idle (`work_until`: before an interval starts, after the day's last one) and at each settle phase
(`retry_due`), each retry logged with the reason, until it settles, the chain says it never will (`PERMANENT`: settled already, superseded by a
reopening, not a party, ...), or the day ends (`give_up`). A trade that leaves the list is recorded with how
it ended. Never double-settles: each retry first reads the trade on chain and sends nothing for one that is
settled or superseded, and the contract refuses a second settlement anyway. `judge` and `Settlements` are
pure (no I/O, times passed in); `Settler` is the thin async shell over the agent's chain access.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from peergrid_edge.replicas import Submission
from peergrid_ledger import query
from peergrid_ledger.results import Reason

log = logging.getLogger("peergrid.edge.trader")

PERMANENT = frozenset(
    {
        Reason.ALREADY_SETTLED, Reason.CLOSED, Reason.NOT_FOUND, Reason.FORBIDDEN, Reason.INVALID,
        Reason.MALFORMED, Reason.UNKNOWN_SENDER, Reason.NOT_AUTHORISED, Reason.UNKNOWN_KIND,
        Reason.BAD_SIGNATURE, Reason.WRONG_CHAIN,
    }
)  # fmt: skip
"""Contract refusals that no later block cures. Anything else (insufficient-funds above all) is retried."""

POOL_PERMANENT = ("unknown sender", "bad signature", "transaction for chain", "malformed", "sender revoked")
"""The mempool's own wording (no `Reason` prefix) of refusals that waiting never cures."""

Step = Literal["settled", "superseded", "permanent", "retry"]


def permanent(reason: str) -> bool:
    """True when the chain's refusal `reason` will be the same however long this MG waits."""
    head = reason.split(":", 1)[0].strip()
    if head in {r.value for r in PERMANENT}:
        return True
    return any(reason.startswith(words) for words in POOL_PERMANENT)


def judge(on_chain: dict[str, Any] | None, submission: Submission | None) -> Step:
    """What to do about one trade: its record on chain (None: not there) and the last attempt's outcome (None:
    no attempt yet). The chain's record decides first, so a settlement that landed (by this MG's earlier
    attempt, or by its seller) is never sent again."""
    if on_chain is not None and on_chain.get("settlement") is not None:
        return "settled"
    if on_chain is not None and "superseded" in on_chain:
        return "superseded"
    if submission is None:
        return "permanent" if on_chain is None else "retry"
    if submission.landed:
        return "settled"
    return "permanent" if permanent(submission.reason) else "retry"


@dataclass
class PendingSettle:
    interval: int
    trade: bytes
    delivered: int  # Wh
    attempts: int = 0
    due: float = 0.0  # when the next attempt may go (time.time())
    reason: str = ""  # why the last attempt did not settle it


@dataclass(frozen=True, slots=True)
class Ended:
    """How a trade left the list: `settled` (by which attempt) or given up with the reason."""

    pending: PendingSettle
    settled: bool
    reason: str


class Settlements:
    """The trades still to settle, each with its back-off; pure (the caller passes the time)."""

    def __init__(self, first_wait_s: float, max_wait_s: float) -> None:
        self.first_wait_s, self.max_wait_s = first_wait_s, max(first_wait_s, max_wait_s)
        self.pending: dict[bytes, PendingSettle] = {}

    def add(self, pending: PendingSettle, due: float) -> None:
        pending.due = due
        self.pending[pending.trade] = pending

    def wait_after(self, attempts: int) -> float:
        """The back-off after the `attempts`-th refused attempt: first_wait_s, doubling, at most max_wait_s."""
        return float(min(self.max_wait_s, self.first_wait_s * 2 ** max(0, attempts - 1)))

    def due(self, now: float) -> list[PendingSettle]:
        return sorted((p for p in self.pending.values() if p.due <= now), key=lambda p: (p.due, p.interval))

    def next_due(self) -> float | None:
        return min((p.due for p in self.pending.values()), default=None)

    def after(self, pending: PendingSettle, step: Step, reason: str, now: float) -> Ended | None:
        """Book an attempt's outcome: retry later (None), or the trade leaves the list (`Ended`)."""
        if step == "retry":
            pending.reason = reason
            self.add(pending, now + self.wait_after(pending.attempts))
            return None
        self.pending.pop(pending.trade, None)
        return Ended(pending, step == "settled", "" if step == "settled" else reason or step)

    def give_up(self, why: str) -> list[Ended]:
        ended = [Ended(p, False, f"{why}; last refusal: {p.reason}") for p in self.pending.values()]
        self.pending.clear()
        return ended


Submit = Callable[[dict[str, Any]], Awaitable[Submission]]


class Settler:
    """The async shell: submits through the agent, reads the trade off the agent's replica, sleeps on its clock."""

    def __init__(
        self,
        submit: Submit,
        trade_on_chain: Callable[[bytes], dict[str, Any] | None],
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        stopping: Callable[[], bool],
        record: Callable[[dict[str, Any]], None],
        book: Settlements,
    ) -> None:
        self._submit, self._trade_on_chain, self.now, self._sleep = submit, trade_on_chain, now, sleep
        self._stopping, self._record, self.book = stopping, record, book

    async def settle(self, t: int, trades: list[tuple[bytes, dict[str, Any]]]) -> int:
        """First attempt for each trade this MG bought in interval t; returns how many are settled after it (one
        the chain shows settled already counts, and is not sent again)."""
        settled = 0
        for tid, tr in trades:
            pending = PendingSettle(t, tid, int(tr["quantity"]))
            ended = await self._attempt(pending)
            settled += ended is not None and ended.settled
        return settled

    def pick_up(self, unpaid: list[tuple[int, bytes, dict[str, Any]]]) -> None:
        """Take on purchases an earlier run of this agent left unsettled (`unsettled_purchases`): due at once."""
        for t, tid, tr in unpaid:
            log.info("interval %d: trade %s, bought before this start, is not settled yet", t, tid.hex()[:16])
            self.book.add(
                PendingSettle(t, tid, int(tr["quantity"]), reason="not settled before a restart"), 0.0
            )

    async def retry_due(self) -> None:
        for pending in self.book.due(self.now()):
            if self._stopping():
                return
            log.info(
                "interval %d: retrying the settlement of trade %s (attempt %d), refused before: %s",
                pending.interval, pending.trade.hex()[:16], pending.attempts + 1, pending.reason,
            )  # fmt: skip
            await self._attempt(pending)

    async def work_until(self, deadline: float, while_pending: bool = False) -> None:
        """Retry what is due until `deadline` (time.time()), sleeping between; with `while_pending`, return as
        soon as nothing is left to settle."""
        while not self._stopping():
            if while_pending and not self.book.pending:
                return
            now = self.now()
            if now >= deadline:
                return
            await self.retry_due()
            due = self.book.next_due()
            wake = deadline if due is None else min(deadline, due)
            if wake > self.now():
                await self._sleep(wake - self.now())

    def end_of_day(self) -> list[Ended]:
        """Give up on what is still refused when the day is over (logged and recorded)."""
        ended = self.book.give_up("the trading day ended")
        for e in ended:
            self._report(e)
        return ended

    async def _attempt(self, pending: PendingSettle) -> Ended | None:
        step = judge(self._trade_on_chain(pending.trade), None)
        reason: str = step
        if step == "retry":  # on chain and neither settled nor superseded: send it
            pending.attempts += 1
            body = {"trade": pending.trade, "delivered": pending.delivered}
            submission = await self._submit(body)
            step = judge(self._trade_on_chain(pending.trade), submission)
            reason = submission.reason
        if step == "retry":
            log.warning(
                "interval %d: settlement of trade %s refused (attempt %d): %s; retrying in %.1f s",
                pending.interval, pending.trade.hex()[:16], pending.attempts, reason,
                self.book.wait_after(pending.attempts),
            )  # fmt: skip
        ended = self.book.after(pending, step, reason, self.now())
        if ended is not None and (pending.attempts > 1 or not ended.settled):
            self._report(ended)
        return ended

    def _report(self, ended: Ended) -> None:
        p = ended.pending
        if ended.settled:
            log.info(
                "interval %d: trade %s settled at attempt %d", p.interval, p.trade.hex()[:16], p.attempts
            )
        else:
            log.warning("interval %d: trade %s not settled: %s", p.interval, p.trade.hex()[:16], ended.reason)
        self._record(
            {
                "interval": p.interval,
                "settlement": {
                    "trade": p.trade.hex(), "settled": ended.settled, "attempts": p.attempts,
                    "reason": ended.reason,
                },
            }
        )  # fmt: skip


def unsettled_purchases(
    state: Any, buyer: bytes, intervals: range
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """The trades `buyer` bought in `intervals`' latest closings that are not settled (after a restart: what a
    previous run of this agent left to pay)."""
    return [
        (t, tid, tr)
        for t in intervals
        for tid, tr in query.trades(state, t)
        if tr["buyer"] == buyer and tr["settlement"] is None and "superseded" not in tr
    ]

"""Settling this MG's trades (design step 8): each agreed trade is paid once, retried until it is.

Promises: `Settler.settle(t, trades)` takes on the trades of interval t's latest closing that this MG is a
party to. On a chain without genesis `settle_by_both` (the rule before it) it settles each purchase at once
with the agreed quantity, as before: the buyer alone pays. With `settle_by_both` (`by_both`) it states each
trade, bought or sold, once: not before the interval ended and its PCC meter was read (`not_before`, then
`metering` gives the Wh it metered for that trade, frozen into the statement: the same body is sent again
whenever it is sent), and reads `query.settlement(...)["state"]`: stated with its own statement on record, it
reads the trade again every `first_wait_s` until its `deadline` (a silent counterparty), then sends the same
body again, which settles it on its word; `disputed` ends it without a retry (the DSO settles it from both
parties' sealed PCC readings; `on_dispute` hears of it, and `until_dso_settles` reads the chain until the
DSO's settlement lands, which gets its own line); `settled`/`superseded` end it; a refusal because the
chain's interval clock says the interval has not ended (`rule-violation`) is retried. The chain may refuse an
attempt for a reason another party cures later — the buyer's balance (its income from its own sales) not yet
on chain, a lost nonce, no verdict in time, a transaction too old to land, a full pool — and then it is
retried with back-off (`first_wait_s`, doubling up to `max_wait_s`) whenever the agent is idle (`work_until`:
before an interval starts, after the day's last one) and at each settle phase (`retry_due`), each retry logged
with the reason, until it settles, the chain says it never will (`PERMANENT`: settled already, superseded by a
reopening, not a party, too late to state, ...), or the day ends (`give_up`; a trade waiting for its deadline
after the day's end is kept for the agent to wait for, `Settlements.waiting_until`). An attempt that raises
instead of answering (a disk error keeping a salt, a bug) is logged with its traceback and retried like a
refusal the chain may cure (`Settler._try`); the other trades go on. A trade that leaves the list is recorded
with how it ended and what the chain settled for this side (`settle_book.settled_figures`). Without
`settle_by_both` a sale is watched, never sent: read every `first_wait_s` until the buyer's settle lands
(then recorded like any other) or the day ends (recorded as not settled by the buyer). Never
double-settles: each attempt first reads the trade on chain and sends nothing for one
that is settled, superseded, disputed or waiting on its deadline, and the contract refuses a second settlement
anyway. `judge` and `Settlements` are pure (no I/O, times passed in: `settle_book.py`); `Settler` is the thin
async shell over the agent's chain access.
A trade whose interval started before this MGMC's first PCC reading (it started, or restarted, within the
interval): the counter at the interval's start is unknown, so no side can meter the interval as the DSO does,
and that side states nothing (`pcc_readings.provable_wh`: the ledger's `metering.metered` or `Unprovable`,
said once in its log): the counterparty's statement goes to the DSO, which settles this side unmetered (E7:
a seller's count from its first reading in the interval was settled "seller not metered", 0 Wh, anyway; and
the trading agent no longer offers in an interval whose start its meter did not see,
`MgMetering.start_unseen`). Where neither side can state, the trade stays unsettled and each gives it up at
the day's end. A trade this side's meter will never state (`not_stated` says why: its counter broke in the
interval, L3's `CounterBroken`; its side is unprovable) is still read again, but its reason, record and
give-up line carry those words, not 'not metered yet'.
On a trade both of whose parties the DSO priced (`market.tariff`; `priced` says so from the replica,
`market_state.cover_prices` not None; the trading agent's `agent_settlement.settler_for` passes it) the
statement also names this side's own shortfall, `short` = agreed − min(delivered stated, agreed), frozen with
it and repeated unchanged after the deadline (the contract refuses a repeat with another `short`; after a
restart both are read back from the chain). From the PCC meter that is the very figure the DSO names for this
side (dso-server `disputes`: agreed − min(its share, agreed)), so two honest MGMCs agree without a dispute and
a lapse charges the silent party only the rest this side does not own. An MG without a PCC meter states the
agreed quantity only when dispatch confirmed it in full, `short` 0; a side that states nothing (`Unprovable`)
states no `short` either. An unpriced trade's body stays `{trade, delivered}` (the chain refuses `short` there).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import (
    Ended,
    PendingSettle,
    Settlements,
    judge,
    own_short,
    settled_figures,
    statement_body,
    statement_until,
)

log = logging.getLogger("peergrid.edge.trader")

Submit = Callable[[dict[str, Any]], Awaitable[Submission]]
Metering = Callable[[PendingSettle], int | None]
"""settle_by_both: the Wh this MG metered for a trade (its PCC meter over the interval, its share of it), or
None while it cannot tell yet (no reading after the interval's end): the statement then waits."""
NotStated = Callable[[PendingSettle], str | None]
"""Why this side states nothing for a trade for good, where `Metering` gave None (its meter's counter broke in
the interval, `metering.CounterBroken`; its side is unprovable, `pcc_readings.Unprovable`), in the words of
the refusal; None: it may still be metered (no reading after the interval's end yet)."""


class Settler:
    """The async shell: submits through the agent, reads the trade off the agent's replica, sleeps on its clock."""

    def __init__(
        self,
        submit: Submit,
        standing: Callable[[bytes], dict[str, Any] | None],
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        stopping: Callable[[], bool],
        record: Callable[[dict[str, Any]], None],
        book: Settlements,
        by_both: bool = False,
        metering: Metering | None = None,
        on_dispute: Callable[[PendingSettle], None] | None = None,
        priced: Callable[[dict[str, Any]], bool] | None = None,
        not_stated: NotStated | None = None,
    ) -> None:
        """`priced(trade)`: True when the DSO priced both parties of this agreed trade (the replica's
        `market_state.cover_prices` is not None); None: no trade is priced, every body is `{trade, delivered}`.
        `not_stated(pending)`: why a trade `metering` gave no Wh for will never be stated by this side, which
        its record and its give-up line then name (None: every such trade is 'not metered yet')."""
        self._submit, self._standing, self.now, self._sleep = submit, standing, now, sleep
        self._stopping, self._record, self.book = stopping, record, book
        self.by_both, self._metering, self._on_dispute = by_both, metering, on_dispute
        self._priced, self._not_stated = priced, not_stated

    def _pending(self, t: int, tid: bytes, tr: dict[str, Any], party: str, reason: str = "") -> PendingSettle:
        """A statement to make (settle_by_both); whether it carries `short` is fixed now: the contract takes no
        tariff for a closed interval, so a trade's pricing never changes after it was agreed."""
        priced = self._priced is not None and self._priced(tr)
        return PendingSettle(
            t, tid, None, reason=reason, party=party, quantity=int(tr["quantity"]), priced=priced
        )

    async def settle(
        self,
        t: int,
        trades: list[tuple[bytes, dict[str, Any]]],
        me: bytes | None = None,
        not_before: float = 0.0,
    ) -> int:
        """Take on interval t's trades that this MG (`me`; None: every trade given is a purchase) is a party to.
        Returns how many of them, bought or sold, the chain shows settled now (the interval record's
        `settled`); each other one gets its own settlement line in the records when it ends (`_report`).
        Without `by_both`: the first attempt for each purchase now (one the chain shows settled already counts,
        and is not sent again); each sale is watched (`watch`: read, never sent) until the buyer's settle
        lands, the buyer alone settling there (E4, U4's F4: a seller's record said `settled` 0 every interval
        though the buyers settled every sale, and nothing told it when they did). With it: each trade is
        booked to be stated from `not_before` (time.time(): the interval's end and a meter read after it), so
        none is settled yet (0), unless the chain shows it settled already."""
        settled = 0
        for tid, tr in trades:
            party = "buyer" if me is None or tr["buyer"] == me else "seller" if tr["seller"] == me else None
            if party is None:
                continue  # not this MG's
            if party == "seller" and not self.by_both:  # the buyer alone settles: watched, never sent
                if judge(self._standing(tid), None, party) == "settled":
                    settled += 1
                    continue
                quantity = int(tr["quantity"])  # (no statement of this side's: `delivered` None)
                watch = PendingSettle(t, tid, None, party=party, quantity=quantity, watch=True)
                watch.reason = "the buyer settles a sale on this chain; not settled yet"
                self.book.add(watch, self.now() + self.book.first_wait_s)
                continue
            if self.by_both:
                pending = self._pending(t, tid, tr, party)
                if judge(self._standing(tid), None, party, True) == "settled":
                    settled += 1
                    continue
                self.book.add(pending, not_before)
                continue
            quantity = int(tr["quantity"])
            ended = await self._try(PendingSettle(t, tid, quantity, quantity=quantity))
            settled += ended is not None and ended.settled
        return settled

    def pick_up(self, unsettled: list[tuple[int, bytes, dict[str, Any]]], me: bytes | None = None) -> None:
        """Take on trades an earlier run of this agent left unsettled (`unsettled_trades`): due at once. With
        `by_both` the statement is metered again from the stored readings (the same leaves give the same Wh;
        an MG without a PCC meter states from the dispatch verdict its interval record kept, which the trader
        reads back first: resume.recorded_verdicts), or, already on record, read back from the chain."""
        for t, tid, tr in unsettled:
            party = "seller" if me is not None and tr["seller"] == me else "buyer"
            log.info("interval %d: trade %s, agreed before this start, is not settled yet", t, tid.hex()[:16])
            why = "not settled before a restart"
            if self.by_both:
                self.book.add(self._pending(t, tid, tr, party, why), 0.0)
            else:
                quantity = int(tr["quantity"])
                self.book.add(
                    PendingSettle(t, tid, quantity, reason=why, party=party, quantity=quantity), 0.0
                )

    async def retry_due(self) -> None:
        for pending in self.book.due(self.now()):
            if self._stopping():
                return
            if pending.attempts and pending.deadline is None:  # a stated one waiting is only read again
                log.info(
                    "interval %d: retrying the settlement of trade %s (attempt %d), refused before: %s",
                    pending.interval, pending.trade.hex()[:16], pending.attempts + 1, pending.reason,
                )  # fmt: skip
            await self._try(pending)

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

    def end_of_day(self, first: int | None = None) -> list[Ended]:
        """Give up on what is still refused when the day is over (logged and recorded); a statement whose
        counterparty may still state after now is kept (the agent waits for its deadline first). `first`: the
        next day's first interval (`market.days`), whose trades and later ones are not the ended days' and stay;
        None: every trade."""
        ended = self.book.give_up("the trading day ended", self.now(), first)
        for e in ended:
            self._report(e)
        return ended

    async def until_dso_settles(self, pending: PendingSettle, until: float) -> bool:
        """A trade that ended `disputed` (its line recorded then), read on the chain every first wait until
        the DSO's settlement of it lands: then its line, logged and recorded as any ending (`_report`: what
        the chain settled, on the DSO's basis), so that the owner watching the journal reads how the dispute
        ended (before: only `peergrid-edge day` said it). A trade superseded by a reopening ends it with a
        line saying so; at `until` (time.time()) one line says the DSO has not settled it yet; a stopping
        daemon ends it without one. True: the DSO's settlement landed and was told."""
        trade = pending.trade.hex()[:16]
        while not self._stopping():
            step = judge(self._standing(pending.trade), None, pending.party)
            if step == "settled":
                self._report(Ended(pending, True, ""), "settled by the DSO after its dispute")
                return True
            if step in ("superseded", "permanent"):  # reopened, or gone from this replica: nothing to settle
                log.info("interval %d: disputed trade %s is no longer for the DSO to settle: %s",
                         pending.interval, trade, "superseded by a reopening" if step == "superseded"
                         else "not on the chain")  # fmt: skip
                return False
            if self.now() >= until:
                log.warning("interval %d: disputed trade %s is not settled by the DSO yet; `peergrid-edge day` "
                            "shows it once it is", pending.interval, trade)  # fmt: skip
                return False
            await self._sleep(min(self.book.first_wait_s, until - self.now()))
        return False

    async def _try(self, pending: PendingSettle) -> Ended | None:
        """`_attempt`; one that raises (a disk error keeping a salt, a bug) is logged with its traceback and
        booked refused, retried with back-off until the day's end, not final: a failing disk may cure, and a
        retry reads the chain first (nothing is sent twice). The other trades go on."""
        try:
            return await self._attempt(pending)
        except Exception as exc:
            log.exception("interval %d: settling trade %s raised (attempt %d); it is retried later",
                          pending.interval, pending.trade.hex()[:16], pending.attempts)  # fmt: skip
            return self.book.after(pending, "retry", f"raised {type(exc).__name__}: {exc}", self.now())

    async def _attempt(self, pending: PendingSettle) -> Ended | None:
        standing = self._standing(pending.trade)
        # a sale the buyer settles: read again each first wait until it lands or the day ends
        if pending.watch:
            step = judge(standing, None, pending.party)
            if step == "retry":
                return self.book.after(pending, "wait", pending.reason, self.now())
            ended = self.book.after(
                pending, step, "not on the chain" if step == "permanent" else step, self.now()
            )
            if ended is not None:
                self._report(ended)
            return ended
        step = judge(standing, None, pending.party, self.by_both)
        reason: str = step
        if step == "wait" and pending.delivered is None and standing is not None:  # stated before a restart
            mine = standing["statements"][pending.party]
            pending.delivered = int(mine["delivered"])
            pending.short = int(mine["short"]) if "short" in mine else None  # repeated as it was stated
        until = statement_until(standing)
        if step == "wait" and until is not None and self.now() * 1000 >= until:
            # the counterparty stayed silent until the deadline, or the DSO never vouched by `until`: the same
            # body settles on ours (lapsed), or pays the agreed figures (review13 F2)
            step = "retry"
        if step == "retry" and pending.delivered is None:
            pending.delivered = None if self._metering is None else self._metering(pending)
            if pending.delivered is None:
                # a meter that can never state this side (a broken counter) is not told to wait for a reading;
                # the trade is still read again: the counterparty's statement or the DSO may settle it
                never = None if self._not_stated is None else self._not_stated(pending)
                why = "not metered yet (no PCC reading after the interval's end)" if never is None else never
                return self.book.after(pending, "retry", why, self.now())
            if pending.priced:
                pending.short = own_short(pending.quantity, pending.delivered)
        if step == "retry":  # on chain and neither settled, superseded nor waiting: send it
            pending.attempts += 1
            submission = await self._submit(statement_body(pending))
            standing = self._standing(pending.trade)
            step = judge(standing, submission, pending.party, self.by_both)
            reason = submission.reason
        if step == "retry":
            pending.refused += 1
            log.warning(
                "interval %d: settlement of trade %s refused (attempt %d): %s; retrying in %.1f s",
                pending.interval, pending.trade.hex()[:16], pending.attempts, reason,
                self.book.wait_after(pending.attempts),
            )  # fmt: skip
        until = statement_until(standing)  # read again: a statement just sent may have set it
        deadline = None if until is None else until / 1000
        ended = self.book.after(pending, step, reason, self.now(), deadline)
        if ended is not None and step == "disputed" and self._on_dispute is not None:
            self._on_dispute(pending)
        # recorded when it took retries or failed, and with settle_by_both always (the interval's own record
        # is written before its statements: this line is where its settlement shows)
        if ended is not None and (pending.attempts > 1 or not ended.settled or self.by_both):
            self._report(ended)
        return ended

    def _report(self, ended: Ended, settled_words: str = "settled") -> None:
        """The trade's ending, logged and recorded: what the chain settled (`settled_figures`: delivered,
        compensation, this side's money), beside this side's own statement (`delivered`, `short`: what it
        said, which the chain's figures may differ from: U4's F5, a statement of 1968 Wh settled by the DSO at
        1964 with 632 micro-units of compensation). `attempts` counts the transactions sent (on a sealed
        chain a commitment and its reveal are two), `refused` those the chain refused: the log names refusals
        only (U4's F6: 'settled at attempt 2' on every trade of a sealed chain, none of them refused).
        `settled_words` say how a settled one settled in the log (`until_dso_settles`: by the DSO)."""
        p = ended.pending
        standing = self._standing(p.trade)
        try:  # the trade ended whatever this reads: a settlement of a shape it does not know is left out
            chain = settled_figures(None if standing is None else standing.get("settlement"), p.party)
        except (KeyError, TypeError, ValueError):
            chain = None
        if ended.settled:
            log.info("interval %d: trade %s %s%s%s", p.interval, p.trade.hex()[:16], settled_words, _told(chain, p),
                     f" after {p.refused} refused attempt{'s' * (p.refused != 1)}" if p.refused else "")  # fmt: skip
        else:
            log.warning("interval %d: trade %s not settled: %s", p.interval, p.trade.hex()[:16], ended.reason)
        self._record(
            {
                "interval": p.interval,
                "settlement": {
                    "trade": p.trade.hex(), "settled": ended.settled, "attempts": p.attempts,
                    "refused": p.refused, "reason": ended.reason, "party": p.party, "delivered": p.delivered,
                    **({} if p.short is None else {"short": p.short}),
                    **({} if chain is None else {"chain": chain}),
                },
            }
        )  # fmt: skip


def _told(chain: dict[str, Any] | None, p: PendingSettle) -> str:
    """The chain's settled figures in the log's words (nothing where the chain shows none)."""
    if chain is None:
        return ""
    words = [f"{chain['delivered']} of {p.quantity} Wh" if p.quantity else f"{chain['delivered']} Wh"]
    if "basis" in chain:
        words.append(f"on the {chain['basis']} basis")
    if chain["compensation"]:
        given = chain["compensation"]
        words.append(f"compensation {abs(given)} micro {'to' if given > 0 else 'from'} this MG")
    return f": {', '.join(words)}, {chain['money']:+.6f} to this MG"

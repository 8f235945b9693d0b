"""The deployed edge's day-ahead make-whole (uplift): this MGMC's claim after the clear, the payments after the day.

Promises:
- `claim_for`, `claim_from`, `chain_figures`, `UpliftClaim`: this MGMC's claim after the clear (its rule:
  `dayahead_uplift_claim`, offered from here too).
- `UpliftStage.claim()`: posts `uplift.claim` once: a restarted MGMC finds its claim on the chain and posts none
  (the contract refuses a second anyway); one not final in time says so (`not final: ...`: it may be posted
  again). Its chain figures are read on the event loop, its MILPs run in a thread (review18 C-3).
  `UpliftStage.settle()` after the day: waits until the chain would take a settle (`uplift.waiting_for`:
  every trade settled, the claim window over), for as long as the chain's own rules may still make it so
  (`uplift.ready_by`, the trades' deadlines + the DSO's wait, or the window's end) + `wait_s`, at least
  `wait_s` (review17 U-A: not a fixed 12 s); on a chain without a claim window (W = 0: the first
  settle closes the claims) a member's claim missing then is waited for up to `claim_wait_s` (U-B); then the
  lowest member key sends `uplift.settle` at once and every other member after `grace_s` if the chain still
  shows none (a refusal because the day is not ready yet is retried within the bound; one because it is
  already settled is read as done; a settle not final is waited for and sent again), and reads this MG's
  credit, charge (with a fee: its fee into the fund), withheld credit, any part of its charge that became a
  debt, and its refund from the fund above its cap, from the chain. Past the
  bound it gives up naming what the chain still waits for; a later start settles it (`day_stages`).
- Both return typed outcomes (`UpliftClaim`, `UpliftOutcome`: done, or not with why); a chain whose genesis does
  not enable the uplift contract skips both with that reason. A failure never raises past the stage.
Never reads another MG's private data; solves only this MG's MILPs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peergrid_controller.model import Microgrid
from peergrid_edge.dayahead_uplift_claim import (
    ClaimFigures,
    UpliftClaim,
    chain_figures,
    claim_for,
    claim_from,
    committed_trades,
    couples,
)
from peergrid_edge.exchange_io import ROLE, NotFinal, Replica, SessionFailed, submit_final
from peergrid_ledger import keys
from peergrid_ledger.contracts import exchange_state, uplift

__all__ = ["ClaimFigures", "UpliftClaim", "UpliftOutcome", "UpliftStage", "chain_figures", "claim_for",
           "claim_from", "committed_trades", "couples", "enabled"]  # fmt: skip

log = logging.getLogger("peergrid.edge.uplift")
POLL_S = 0.5  # how often a waiting stage looks at its replica again
WAIT_STEP_S = 5.0  # the longest a waiting stage sleeps before it reads the chain's readiness and bound again


@dataclass(frozen=True)
class UpliftOutcome:
    session: str
    settled: bool
    reason: str  # why not settled ("" when it is)
    funded: bool
    credit: int  # micro-units this MG received
    charge: int  # micro-units this MG paid or owes for it
    withheld: int  # its credit withheld: it fell short of its own committed delivery
    owed: int  # of its charge, what became its debt (it could not pay it within its credit)
    by_us: bool  # this MGMC's settle landed it
    refund: int = 0  # with an exchange fee: what the fund paid back to it above the session's cap


def enabled(ledger: Replica) -> bool:
    """Whether the MGMC chain's genesis enables the uplift contract (one that names no contracts enables none)."""
    return "uplift" in getattr(ledger.replicas[ROLE].app.genesis, "contracts", ())


class UpliftStage:
    def __init__(
        self,
        ledger: Replica,
        key: keys.Keypair,
        mg: Microgrid,
        interval_hours: float,
        session: str,
        timeout_s: float = 10.0,
        before_submit: Callable[[], None] = lambda: None,
        wait_s: float = 60.0,
        grace_s: float = 5.0,
        claim_wait_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        window: range | None = None,
        claims: bool = True,
    ) -> None:
        """`claims`: False where this MGMC posts no claim on the session (an earlier day's: `day_stages`), so its
        settle waits for no claim of its own; `window`: the chain intervals this MGMC trades (its claim's
        deviation trades there only where its accept stated no window on the chain, `claim_for`; None: the
        whole session); `timeout_s`: how long one transaction is waited for in a final block; `wait_s`: how
        long `settle` waits past the chain's own `ready_by` (and at least, from its start); `grace_s`: how long a
        member other than the lowest-keyed waits for that one's settle before it sends its own; `claim_wait_s`:
        on a chain without a claim window (uplift_claim_ms 0), how long the settling member waits for a
        member's claim missing once the trades settled; `clock`: wall s (chain ms / 1000)."""
        self.ledger, self.key, self.mg, self.dt, self.session = ledger, key, mg, interval_hours, session
        self.window = window
        self.timeout_s, self.before_submit, self.wait_s, self.grace_s = (
            timeout_s,
            before_submit,
            wait_s,
            grace_s,
        )
        self.claim_wait_s, self.clock = claim_wait_s, clock
        self.claims = claims

    def _state(self) -> Any:
        return self.ledger.state(ROLE)

    async def claim(self) -> UpliftClaim:
        """Compute and post this MG's claim, once (module contract)."""
        empty = UpliftClaim(self.session, False, "", 0, 0, math.nan, math.nan, math.nan, math.nan)
        if not enabled(self.ledger):
            return _with(empty, reason="the MGMC chain's genesis does not enable the uplift contract")
        if uplift.claim(self._state(), self.session, self.key.public) is not None:
            earlier = uplift.claim(self._state(), self.session, self.key.public) or {}
            return _with(empty, gain=earlier["gain"], surplus=earlier["surplus"])  # posted by an earlier run
        try:
            spread = int(getattr(_params(self.ledger), "uplift_max_spread", 0))
            figures = chain_figures(self._state(), self.session, self.key.public, self.mg.name, self.window,
                                    spread, couples(self.mg))  # fmt: skip
            # its MILPs (up to a second on a Pi) on plain data in a thread, never on the event loop (R18 C-3)
            claimed = await asyncio.to_thread(claim_from, self.mg, self.dt, figures)
            body = {"session": self.session, "gain": claimed.gain, "surplus": claimed.surplus}
            await submit_final(
                self.ledger, self.key, "uplift.claim", body, self.timeout_s, self.before_submit
            )
        except (SessionFailed, ValueError) as exc:  # a claim not final may still land: said so, tried again
            why = f"not final: {exc}" if isinstance(exc, NotFinal) else str(exc)
            log.warning("uplift of %s: no claim: %s", self.session, why)
            return _with(empty, reason=why)
        except Exception as exc:  # a solver or replica error: no claim, and the day goes on
            log.exception("uplift of %s: no claim: unexpected error", self.session)
            return _with(empty, reason=f"{type(exc).__name__}: {exc}")
        log.info("uplift of %s: claimed gain %d, surplus %d micro-units (deviation gain %.6f, tolerance %.6f, the "
                 "chain's bound %d)", self.session, claimed.gain, claimed.surplus, claimed.deviation_gain,
                 claimed.tolerance, claimed.bound)  # fmt: skip
        return _with(claimed, posted=True)

    def _settled(self, state: Any) -> bool:
        return uplift.outcome(state, self.session) is not None

    def _ready(self, state: Any) -> bool:
        """The chain would take a settle now (`uplift.waiting_for`), or the uplift is settled."""
        if uplift.outcome(state, self.session) is not None:
            return True
        record = exchange_state.session(state, self.session)
        now_ms = int(self.clock() * 1000)
        return record is not None and uplift.waiting_for(state, _params(self.ledger), record, self.session,
                                                         now_ms) is None  # fmt: skip

    def _changed(self, record: dict[str, Any], silent: list[bytes]) -> Callable[[Any], bool]:
        """What ends a wait: the uplift settled, or the chain would take a settle and every member it waited
        for (`silent`) claimed."""

        def changed(state: Any) -> bool:
            claimed = all(uplift.claim(state, self.session, m) is not None for m in silent)
            return self._settled(state) or (self._ready(state) and claimed)

        return changed

    def _gives_up_at(self, state: Any, record: dict[str, Any], started: float) -> float:
        """When (wall s) this stage stops waiting: `wait_s` after the chain's `ready_by` (the parties' repeat
        and the DSO's decision land by then), never before `wait_s` from its start; where the chain bounds
        nothing (a trade nobody stated on a chain without the interval clock) `wait_s` from its start."""
        by = uplift.ready_by(state, _params(self.ledger), record, self.session)
        return started + self.wait_s if by is None else max(started + self.wait_s, by / 1000 + self.wait_s)

    async def settle(self) -> UpliftOutcome:
        """After the day: the session's uplift settled (by this MGMC or another) and this MG's part of it; an
        unexpected error (a replica's) is its reason, never raised."""
        try:
            return await self._settle()
        except Exception as exc:
            log.exception("uplift of %s: not settled: unexpected error", self.session)
            return _outcome(self.session, None, self.key.public, f"{type(exc).__name__}: {exc}")

    async def _settle(self) -> UpliftOutcome:
        me = self.key.public
        if not enabled(self.ledger):
            return _outcome(
                self.session, None, me, "the MGMC chain's genesis does not enable the uplift contract"
            )
        started = self.clock()
        record = exchange_state.session(self._state(), self.session)
        if record is None:
            return _outcome(self.session, None, me, f"no exchange session {self.session!r} on this replica")
        first = min(record["members"]) == me
        by_us, why, claims_from = False, "", None
        while not self._settled(self._state()):
            state = self._state()
            waiting = uplift.waiting_for(
                state, _params(self.ledger), record, self.session, int(self.clock() * 1000)
            )
            until = self._gives_up_at(state, record, started)
            silent = [m for m in record["members"] if uplift.claim(state, self.session, m) is None
                      and (self.claims or m != me)]  # fmt: skip
            if waiting is None and silent and not _params(self.ledger).uplift_claim_ms:
                # W = 0: the first settle closes the claims, so a member's claim not on the chain yet (it
                # restarted, or its claim did not land: it posts it again after its day) waits a while (U-B)
                claims_from = self.clock() if claims_from is None else claims_from
                until = max(until, claims_from + self.claim_wait_s)
                if self.clock() < claims_from + self.claim_wait_s:
                    waiting = f"{len(silent)} member(s) of {self.session!r} have not claimed yet"
            if waiting is not None:
                if self.clock() >= until:
                    return _outcome(self.session, None, me, f"{waiting}; nothing the chain's rules still make "
                                    "happen settles it: retried at the trading agent's next start")  # fmt: skip
                step = min(WAIT_STEP_S, max(0.0, until - self.clock()))
                await self.ledger.wait_for(ROLE, self._changed(record, silent if claims_from else []), step)
                continue
            if not first:  # the lowest-keyed member settles; the others are its backup
                await self.ledger.wait_for(ROLE, self._settled, self.grace_s)
                if self._settled(self._state()):
                    break
            try:
                await submit_final(self.ledger, self.key, "uplift.settle", {"session": self.session},
                                   self.timeout_s, self.before_submit)  # fmt: skip
                by_us = True
            except NotFinal as exc:  # it may still land: the chain's outcome says; else it is sent again
                why = str(exc)
                landed = await self.ledger.wait_for(
                    ROLE, self._settled, min(self.wait_s, until - self.clock())
                )
                if not landed and self.clock() >= until:
                    return _outcome(self.session, None, me, why)
            except SessionFailed as exc:
                why = str(exc)
                if "already settled" in why:
                    break
                if "rule-violation" not in why or self.clock() >= until:  # not merely early: give up
                    return _outcome(self.session, None, me, why)
                await asyncio.sleep(POLL_S)
        return _outcome(self.session, uplift.outcome(self._state(), self.session), me, why, by_us)


def _params(ledger: Replica) -> Any:
    """The MGMC chain's genesis parameters (settle_wait_ms, the interval clock, uplift_claim_ms)."""
    return ledger.replicas[ROLE].app.genesis.params


def _with(claim: UpliftClaim, **changes: Any) -> UpliftClaim:
    return UpliftClaim(**{**claim.__dict__, **changes})


def _outcome(
    session: str, done: dict[str, Any] | None, me: bytes, why: str, by_us: bool = False
) -> UpliftOutcome:
    """This MG's part of the settled uplift `done` (`uplift.outcome`), or not settled with `why`."""
    if done is None:
        return UpliftOutcome(session, False, why, False, 0, 0, 0, 0, False)

    def mine(rows: list[list[Any]]) -> int:
        return sum(int(amount) for key, amount in rows if key == me)

    owed = sum(int(p[3]) for p in done["payments"] if p[0] == me)
    return UpliftOutcome(session, True, "", bool(done["funded"]), mine(done["credits"]), mine(done["charges"]),
                         mine(done["withheld"]), owed, by_us, mine(done.get("refunds", [])))  # fmt: skip

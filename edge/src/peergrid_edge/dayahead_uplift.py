"""The deployed edge's day-ahead make-whole (uplift): this MGMC's claim after the clear, the payments after the day.

Promises:
- `claim_for(mg, dt, state, session, me, window=None)`: this MG's claim from public chain state (the session's
  closing prices and the forward trades its clear recorded) and its own model only, by the simulation's rule
  (simulate_dayahead.py), its deviation trading only in the chain intervals of its trading window (and where
  it holds a trade): the window its first accept stated on the chain (`exchange_state.trading_window`, which
  the chain bounds its gain over: `uplift.gain_bound`), else `window` (None: the whole session): an MGMC that
  takes part in a run of the day inside the session could never have traded at the closing prices outside it
  (L8: a lab MG trading 2 of 96 intervals claimed 318.45 for the other 94). Its committed day
  (`forward_accept.dispatch` with its trades fixed, payments at the trades' prices), its conventional day
  (its own baseline), its deviation gain at the closing prices (`deviation.deviation_gains` on a one-MG
  scenario; valued at its own floor or cap where that is the price), its tolerance (one price tick per kWh it
  trades, at least one kWh's); gain rounded up to a micro-unit when it exceeds the tolerance (else 0), surplus
  (conventional less committed) rounded down (0 when not positive). Nothing of its model leaves it but these
  two figures. On a session opened with an exchange fee (its record's `fee`, `market_fee.session_fee`) the fee
  is in every figure as the simulation has it (`Commitment.fee`): its committed day pays the fee the chain
  collects on its cleared Wh (`exchange_fee.by_interval`), its deviation trades at p ∓ fee, its own floor and
  cap are net of it (`own_rule_fees(..., fee)`), and its surplus is claimed as 0 (the fund pays, the chain
  reads no surplus there: `uplift_fund`). A gain the chain would refuse because this MG's rules set no `max_quantity` (and the DSO
  posted no capacity) for an interval of the session inside its window (review17 U-C) is claimed as 0,
  logged; one above the chain's bound (`uplift.gain_bound` over the window the chain holds: `max_quantity`
  cut to the DSO's `market.capacity` where posted, genesis `uplift_max_spread` where the DSO did not price
  it) is claimed at the bound, logged with both (review18 C-2: refused whole it was paid nothing).
  `chain_figures` reads what it needs off the chain, `claim_from` computes it from those alone.
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

from peergrid_controller.baselines import conventional as conventional_costs
from peergrid_controller.deviation import deviation_gains, own_rule_fees
from peergrid_controller.exchange_fee import by_interval, traded_wh
from peergrid_controller.forward import Commitment
from peergrid_controller.forward_accept import dispatch
from peergrid_controller.market import Trade
from peergrid_controller.matching import net_by_interval
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.moves import BargainingConfig
from peergrid_controller.uplift import MICRO, earns
from peergrid_edge.exchange_io import ROLE, NotFinal, Replica, SessionFailed, submit_final
from peergrid_ledger import keys
from peergrid_ledger.contracts import exchange_state, uplift
from peergrid_ledger.contracts.market_fee import session_fee

log = logging.getLogger("peergrid.edge.uplift")
POLL_S = 0.5  # how often a waiting stage looks at its replica again
WAIT_STEP_S = 5.0  # the longest a waiting stage sleeps before it reads the chain's readiness and bound again


@dataclass(frozen=True)
class UpliftClaim:
    session: str
    posted: bool  # this run posted it (False: an earlier run did, or it failed: `reason`)
    reason: str  # why there is no claim of this MG on the chain ("" when there is one)
    gain: int  # micro-units claimed (0: none owed)
    surplus: int  # micro-units claimed
    deviation_gain: float  # currency: its gain from deviating alone (at its own rules where they bind)
    day_cost: float  # its committed day cost, payments included
    conventional: float  # its conventional day cost
    tolerance: float  # currency: the gain owed nothing
    # micro-units: the chain's bound on its gain (None: no claim computed, or no max_quantity rule: no bound)
    bound: int | None = None


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


def committed_trades(
    state: Any, record: dict[str, Any], session: str, me: bytes, name: str
) -> tuple[tuple[Trade, ...], ...]:
    """This MG's forward trades per session interval (the clear's, still standing), named `name` for itself."""
    n, first = record["intervals"], record["first_interval"]
    per: list[list[Trade]] = [[] for _ in range(n)]
    for agreed in uplift.session_trades(state, record, session):
        if me not in (agreed["seller"], agreed["buyer"]):
            continue
        seller = name if agreed["seller"] == me else agreed["seller"].hex()
        buyer = name if agreed["buyer"] == me else agreed["buyer"].hex()
        t = agreed["interval"] - first
        per[t].append(Trade(t, seller, buyer, agreed["quantity"] / 1000, agreed["price"] / 1000))
    return tuple(tuple(day) for day in per)


@dataclass(frozen=True)
class ClaimFigures:
    """What a claim reads off the chain (`chain_figures`, on the event loop), so that its MILPs (`claim_from`)
    run on plain data in a thread."""

    session: str
    first: int  # the session's first chain interval
    prices: tuple[float, ...]  # closing prices, currency per kWh
    clean: tuple[float, ...]
    trades: tuple[tuple[Trade, ...], ...]  # this MG's forward trades per session interval
    window: range | None  # the chain intervals its deviation trades in (None: the whole session)
    unbounded: int | None  # the chain window's first interval with no max_quantity rule nor capacity
    bound: int  # micro-units: the most the chain takes (`uplift.gain_bound` over the window it holds)
    fee: int = 0  # the session's exchange fee, nano per kWh per side (0: none)


def chain_figures(
    state: Any, session: str, me: bytes, name: str, window: range | None = None, max_spread: int = 0
) -> ClaimFigures:
    """The claim's chain figures (`ClaimFigures`); `window` where this MG's accept stated none on the chain,
    `max_spread` the genesis `uplift_max_spread`. ValueError when the session is not on the chain."""
    record = exchange_state.session(state, session)
    if record is None:
        raise ValueError(f"no exchange session {session!r} on this replica")
    # the window this MG stated with its first accept is the one the chain bounds its gain over: its claim
    # deviates over that one, so the two agree (`window` only where it stated none)
    stated = exchange_state.trading_window(state, session, me)
    return ClaimFigures(
        session,
        int(record["first_interval"]),
        tuple(exchange_state.micro_per_wh(p) / 1000 for p in record["prices"]),
        tuple(exchange_state.micro_per_wh(p) / 1000 for p in record.get("clean_prices", ())),
        committed_trades(state, record, session, me, name),
        stated or window,
        uplift.unbounded_interval(state, record, me, stated),
        uplift.gain_bound(state, record, me, stated, max_spread),
        session_fee(record),
    )


def claim_from(
    mg: Microgrid, dt: float, chain: ClaimFigures, price_tolerance: float | None = None
) -> UpliftClaim:
    """This MG's claim (module contract) from its chain figures and its own model: its MILPs, no chain read."""
    tick = BargainingConfig().price_tolerance if price_tolerance is None else price_tolerance
    trades, prices, session = chain.trades, chain.prices, chain.session
    alone = Scenario(mg.name, dt, (mg,))
    conventional = conventional_costs(alone).per_interval[mg.name]
    kwh, gross = net_by_interval(trades, mg.name)
    # the fee on its cleared Wh as the chain collects it: its committed day is the simulation's (Commitment.fee)
    fee = chain.fee
    money = [m - f / MICRO for m, f in zip(gross, by_interval(fee, traded_wh(trades, mg.name)), strict=True)]
    physical = dispatch(mg, dt, kwh).physical if any(kwh) else conventional
    day_cost = sum(physical) - sum(money)
    commitment = Commitment(prices, trades, (), {mg.name: physical}, {mg.name: tuple(money)},
                            {mg.name: day_cost}, 0, clean_prices=chain.clean, fee=fee)  # fmt: skip
    tolerance = tick * max(sum(abs(tr.quantity_kwh) for day in trades for tr in day), 1.0)
    window = chain.window
    part = (
        None if window is None else {t for t in range(len(prices)) if chain.first + t in window or trades[t]}
    )
    gain = deviation_gains(alone, commitment, window=part)[mg.name]
    if earns(gain, tolerance) and own_rule_fees(mg, prices, fee) != (None, None):  # valued at its own rules
        gain = deviation_gains(alone, commitment, own_rules=True, window=part)[mg.name]
    owed = math.ceil(round(gain * MICRO, 3)) if earns(gain, tolerance) else 0
    if owed and chain.unbounded is not None:  # the chain refuses it (review17 U-C): its surplus still counts
        log.warning("uplift of %s: a gain of %d micro-units not claimed: this MG's rules set no max_quantity (nor "
                    "did the DSO post a capacity) for interval %d, and the chain takes no gain without it",
                    session, owed, chain.unbounded)  # fmt: skip
        owed = 0
    elif owed > chain.bound:  # review18 C-2: the chain refuses more whole; at its bound it is paid that much
        log.warning("uplift of %s: a gain of %d micro-units claimed at %d, the chain's bound (max_quantity, or the "
                    "DSO's capacity where lower, x the spread to the cover prices over its window)",
                    session, owed, chain.bound)  # fmt: skip
        owed = chain.bound
    # with a fee the fund pays the make-whole and the chain reads no surplus: none is claimed
    surplus = 0 if fee else max(0, math.floor(round((sum(conventional) - day_cost) * MICRO, 3)))
    bound = None if chain.unbounded is not None else chain.bound  # without the rule the figure bounds nothing
    return UpliftClaim(session, False, "", owed, surplus, gain, day_cost, sum(conventional), tolerance, bound)


def claim_for(
    mg: Microgrid,
    dt: float,
    state: Any,
    session: str,
    me: bytes,
    price_tolerance: float | None = None,
    window: range | None = None,
    max_spread: int = 0,
) -> UpliftClaim:
    """This MG's claim (module contract) read off `state` and computed at once (`chain_figures`, then
    `claim_from`); `window`: the chain intervals this MGMC trades, where its accept stated none on the chain;
    `max_spread`: the chain's genesis `uplift_max_spread`. ValueError when the session is not on the chain."""
    figures = chain_figures(state, session, me, mg.name, window, max_spread)
    return claim_from(mg, dt, figures, price_tolerance)


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
                                    spread)  # fmt: skip
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

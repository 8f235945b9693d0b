"""The deployed edge's day-ahead make-whole (uplift): this MGMC's claim after the clear, the payments after the day.

Promises:
- `claim_for(mg, dt, state, session, me)`: this MG's claim from public chain state (the session's closing prices
  and the forward trades its clear recorded) and its own model only, by the simulation's rule
  (simulate_dayahead.py): its committed day (`forward_accept.dispatch` with its trades fixed, payments at the
  trades' prices), its conventional day (its own baseline), its deviation gain at the closing prices
  (`deviation.deviation_gains` on a one-MG scenario; valued at its own floor or cap where that is the price), its
  tolerance (one price tick per kWh it trades, at least one kWh's); gain rounded up to a micro-unit when it
  exceeds the tolerance (else 0), surplus (conventional less committed) rounded down (0 when not positive).
  Nothing of its model leaves it but these two figures.
- `UpliftStage.claim()`: posts `uplift.claim` once: a restarted MGMC finds its claim on the chain and posts none
  (the contract refuses a second anyway). `UpliftStage.settle()` after the day: waits (bounded, `wait_s`) until
  every trade of the session is settled on its replica, then the lowest member key sends `uplift.settle` at once
  and every other member after `grace_s` if the chain still shows none (a refusal because the day is not
  ready yet is retried until `wait_s` ends; one because it is already settled is read as done), and reads
  this MG's credit, charge, withheld credit and any part of its charge that became a debt from the chain.
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

log = logging.getLogger("peergrid.edge.uplift")
POLL_S = 0.5  # how often a waiting stage looks at its replica again


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


def claim_for(
    mg: Microgrid, dt: float, state: Any, session: str, me: bytes, price_tolerance: float | None = None
) -> UpliftClaim:
    """This MG's claim (module contract). ValueError when the session is not on the chain."""
    record = exchange_state.session(state, session)
    if record is None:
        raise ValueError(f"no exchange session {session!r} on this replica")
    tick = BargainingConfig().price_tolerance if price_tolerance is None else price_tolerance
    trades = committed_trades(state, record, session, me, mg.name)
    prices = tuple(exchange_state.micro_per_wh(p) / 1000 for p in record["prices"])
    clean = tuple(exchange_state.micro_per_wh(p) / 1000 for p in record.get("clean_prices", ()))
    alone = Scenario(mg.name, dt, (mg,))
    conventional = conventional_costs(alone).per_interval[mg.name]
    kwh, money = net_by_interval(trades, mg.name)
    physical = dispatch(mg, dt, kwh).physical if any(kwh) else conventional
    day_cost = sum(physical) - sum(money)
    commitment = Commitment(prices, trades, (), {mg.name: physical}, {mg.name: tuple(money)},
                            {mg.name: day_cost}, 0, clean_prices=clean)  # fmt: skip
    tolerance = tick * max(sum(abs(tr.quantity_kwh) for day in trades for tr in day), 1.0)
    gain = deviation_gains(alone, commitment)[mg.name]
    if earns(gain, tolerance) and own_rule_fees(mg, prices) != (None, None):  # valued at its own rules
        gain = deviation_gains(alone, commitment, own_rules=True)[mg.name]
    owed = math.ceil(round(gain * MICRO, 3)) if earns(gain, tolerance) else 0
    surplus = max(0, math.floor(round((sum(conventional) - day_cost) * MICRO, 3)))
    return UpliftClaim(session, False, "", owed, surplus, gain, day_cost, sum(conventional), tolerance)


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
    ) -> None:
        """`timeout_s`: how long one transaction is waited for in a final block; `wait_s`: how long `settle`
        waits for the day's trades to settle (and retries a settle refused as early); `grace_s`: how long a
        member other than the lowest-keyed waits for that one's settle before it sends its own."""
        self.ledger, self.key, self.mg, self.dt, self.session = ledger, key, mg, interval_hours, session
        self.timeout_s, self.before_submit, self.wait_s, self.grace_s = (
            timeout_s,
            before_submit,
            wait_s,
            grace_s,
        )

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
            await asyncio.sleep(0)  # the MILPs below are this MG's own: one after another, never the loop's
            claimed = claim_for(self.mg, self.dt, self._state(), self.session, self.key.public)
            body = {"session": self.session, "gain": claimed.gain, "surplus": claimed.surplus}
            await submit_final(
                self.ledger, self.key, "uplift.claim", body, self.timeout_s, self.before_submit
            )
        except (SessionFailed, ValueError) as exc:
            log.warning("uplift of %s: no claim: %s", self.session, exc)
            return _with(empty, reason=str(exc))
        except Exception as exc:  # a solver or replica error: no claim, and the day goes on
            log.exception("uplift of %s: no claim: unexpected error", self.session)
            return _with(empty, reason=f"{type(exc).__name__}: {exc}")
        log.info("uplift of %s: claimed gain %d, surplus %d micro-units (deviation gain %.6f, tolerance %.6f)",
                 self.session, claimed.gain, claimed.surplus, claimed.deviation_gain, claimed.tolerance)  # fmt: skip
        return _with(claimed, posted=True)

    def _settled(self, state: Any) -> bool:
        return uplift.outcome(state, self.session) is not None

    def _ready(self, state: Any) -> bool:
        """Every trade of the session settled (what the contract's settle waits for), or the uplift settled."""
        if uplift.outcome(state, self.session) is not None:
            return True
        record = exchange_state.session(state, self.session)
        trades = [] if record is None else uplift.session_trades(state, record, self.session)
        return record is not None and all(agreed["settlement"] is not None for agreed in trades)

    async def settle(self) -> UpliftOutcome:
        """After the day: the session's uplift settled (by this MGMC or another) and this MG's part of it; an
        unexpected error (a replica's) is its reason, never raised."""
        try:
            return await self._settle()
        except Exception as exc:
            log.exception("uplift of %s: not settled: unexpected error", self.session)
            return _outcome(self.session, None, self.key.public, f"{type(exc).__name__}: {exc}")

    async def _settle(self) -> UpliftOutcome:
        if not enabled(self.ledger):
            return _outcome(
                self.session,
                None,
                self.key.public,
                "the MGMC chain's genesis does not enable the uplift contract",
            )
        until = time.monotonic() + self.wait_s
        record = exchange_state.session(self._state(), self.session)
        if record is None:
            return _outcome(
                self.session, None, self.key.public, f"no exchange session {self.session!r} on this replica"
            )
        first = min(record["members"]) == self.key.public
        if not await self.ledger.wait_for(ROLE, self._ready, self.wait_s):
            return _outcome(
                self.session,
                None,
                self.key.public,
                f"the session's trades were not all settled within {self.wait_s:.0f} s",
            )
        if not first:  # the lowest-keyed member settles; the others are its backup
            await self.ledger.wait_for(ROLE, self._settled, self.grace_s)
        by_us, why = False, ""
        while uplift.outcome(self._state(), self.session) is None:
            try:
                await submit_final(self.ledger, self.key, "uplift.settle", {"session": self.session},
                                   self.timeout_s, self.before_submit)  # fmt: skip
                by_us = True
            except NotFinal as exc:  # it may still land: the chain's outcome says, within the wait
                why = str(exc)
                if not await self.ledger.wait_for(ROLE, self._settled, max(0.0, until - time.monotonic())):
                    return _outcome(self.session, None, self.key.public, why)
            except SessionFailed as exc:
                why = str(exc)
                if "already settled" in why:
                    break
                if "rule-violation" not in why or time.monotonic() >= until:  # not merely early: give up
                    return _outcome(self.session, None, self.key.public, why)
                await asyncio.sleep(POLL_S)
        return _outcome(
            self.session, uplift.outcome(self._state(), self.session), self.key.public, why, by_us
        )


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
                         mine(done["withheld"]), owed, by_us)  # fmt: skip

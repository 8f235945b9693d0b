"""Make-whole (uplift) payments that keep a day-ahead outcome stable when gensets make it non-convex.

At the prices that clear the day-ahead market a genset MG's best on/off plan may be another one than the
plan it committed to: deviating alone it would gain (deviation.deviation_gains). Uniform prices cannot remove
that in general; unit-commitment markets pay the unit its lost opportunity instead. This module decides
those payments; deviation.deviation_gains(…, uplift) checks the outcome again with them, by re-solving.

The rule (all amounts in exact integer currency micro-units, 10⁻⁶):
- **Owed.** An MG whose deviation gain exceeds its tolerance (`earns`) is owed its lost opportunity, the
  gain rounded up to a micro-unit.
- **The commitment's gain, not the owner's rules** (review5 F9). The gain the caller passes is valued at
  the MG's own declared rules (deviation.deviation_gains(…, own_rules=True)): where the day's price sits on
  its own floor, each kWh it would sell there beyond its committed trade is charged the floor's excess over
  its feed-in (deviation.own_rule_fees); on its own cap, each kWh it would buy beyond it the retail price's
  excess over the cap. Its committed trade keeps the price, so this is never more than its plain gain, and
  a genset's lost opportunity in the other intervals is paid in full (tested). So the surplus it could
  not sell at its own reservation price (the demand it could not cover at its own cap) is worth nothing to
  it, by its own declaration, and is not paid: paying it would reward a floor set at the expected clearing
  price (the more surplus unsold there, the larger the credit) and move the buyers' surplus to that seller
  beyond the cleared price. (A fee on the committed trade too would make the commitment look like a loss
  and pay the MG for it: on the tests' genset day with its floor as one hour's price, 8.5 instead of 3.0.) The MG keeps a gain no uniform price
  removes (dayahead's "rationed at its own rule" exception); the caller reports it apart
  (simulate: `rationed_at_own_rule`), never hidden in the stability figure and never paid.
  Why not "the gain less the gain with its genset on/off fixed at the committed plan": a committed genset
  still gains, on/off fixed, what it would sell above its marginal cost at a price that covers its
  minimum-output cost (the tests' hand-built day: its whole 4.56), so that rule would pay no genset at
  all — a commitment's lost opportunity *is* a dispatch gain at a price that does not support it.
- **Earned** only by delivering its committed positions: the payee receives the credit after the day, when
  it delivered every forward trade it committed to (a declined MG: by trading nothing day-ahead). Deviating
  forfeits it, which is how the re-solved check models it. **A partial delivery earns nothing**: one Wh
  of its own committed energy not delivered (as a seller: not supplied; as a buyer: not taken) and the
  whole credit is withheld (`withhold`). Why all or nothing: the credit pays for the committed plan, the
  lost opportunity being the gain from deviating at all, and a partial delivery is such a deviation; pro
  rata would pay a genset MG for most of a plan whose point was the outcome's stability, and the re-solved
  check (credit only on the exactly-delivered branch) would no longer describe what is paid. A shortfall
  its counterparty caused (a buyer that took less, a seller that supplied less) does not count against it.
- **Withheld, not collected.** A withheld credit's funding is not collected: each payer's charge is cut by
  its share of the withheld total, shared in proportion to its charge (largest remainder, ties by name), so
  no charge grows, the charges still sum exactly to the credits paid, and nobody pays for a credit that is
  not paid.
- **Funded** by the MGs that trade day-ahead and are owed nothing, in proportion to each one's gain over
  the conventional market (its surplus: conventional day cost minus its committed day cost, floored to a
  micro-unit). Why this rule: the uplift buys the stability of an outcome whose surplus the payers enjoy;
  sharing in proportion to it makes every payer's charge at most its own surplus whenever the total surplus
  covers the total owed, so no payer ends worse off than conventional (individual rationality kept exactly).
  A payee is not also charged: it would only raise its own credit. Shares by largest remainder (ties by
  name), so the charges sum exactly to the credits.
- **Tied to taking part.** The charge is due from every MG whose forward trades were recorded, whatever it
  then does: deviating alone does not avoid it, so it leaves a payer's deviation gain unchanged.
- **Unfunded.** If the payers' total surplus is below the total owed, nothing is paid (a part payment would
  make nobody whole) and the outcome is reported NOT stable with the shortfall: never silently.
`transfers` turns credits and charges into payer → payee payments (north-west corner over names, exact).
The integer arithmetic (funding, withholding, transfers) is the ledger's `contracts/uplift_rule.py`, which the
uplift contract runs on the edge MGMCs' claims: this module decides what is owed and each surplus from its
floats (its tolerance, its rounding) and calls it, so the simulation and the chain pay by one rule.
Pure: no solver, no I/O, no clocks.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from peergrid_controller.model import Microgrid
from peergrid_ledger.contracts import uplift_rule
from peergrid_ledger.contracts.market_state import price_tick
from peergrid_ledger.contracts.pairing import largest_remainder, north_west

__all__ = [
    "MICRO",
    "Payment",
    "Uplift",
    "earns",
    "finite",
    "largest_remainder",
    "make_whole",
    "north_west",
    "owed_of",
    "transfers",
    "widest_spread",
    "withhold",
]

MICRO = 1_000_000  # micro-units per currency unit (the chain's amounts)
# a gain within this of the tolerance is no gain: the MILPs behind it are exact to their 1e-6 relative gap
SLACK = 1e-6


def earns(gain: float, tolerance: float) -> bool:
    """Whether an MG deviating alone would gain more than its tolerance (the stability check's own test)."""
    return gain > tolerance + SLACK


@dataclass(frozen=True)
class Payment:
    payer: str
    payee: str
    amount: int  # micro-units, > 0


@dataclass(frozen=True)
class Uplift:
    credits: dict[str, int]  # micro-units owed to each payee (earned by delivering its commitment)
    charges: dict[str, int]  # micro-units each payer funds (due from taking part)
    funded: bool  # False: the payers' surplus could not cover what is owed, and nothing is paid
    owed: int  # micro-units owed in all (paid when funded)
    surplus: int  # micro-units: the payers' gains over the conventional market, in all
    payments: tuple[Payment, ...] = field(default=())
    withheld: dict[str, int] = field(default_factory=dict)  # credits forfeited by not delivering
    refunds: dict[str, int] = field(default_factory=dict)  # what each payer was not charged for them

    @property
    def total(self) -> int:
        """Micro-units actually paid."""
        return sum(self.credits.values())

    @property
    def shortfall(self) -> int:
        return max(self.owed - self.surplus, 0) if not self.funded else 0

    def credit(self, name: str) -> float:
        return self.credits.get(name, 0) / MICRO

    def charge(self, name: str) -> float:
        return self.charges.get(name, 0) / MICRO

    def net(self, name: str) -> float:
        """Currency the MG receives (negative: pays)."""
        return (self.credits.get(name, 0) - self.charges.get(name, 0)) / MICRO


def widest_spread(microgrids: Iterable[Microgrid]) -> int:
    """The widest retail - feed-in of any of `microgrids` in any interval, micro-units per Wh on the market's
    tick (0 when none is wider): what a chain whose DSO prices no cover names as genesis `uplift_max_spread`,
    the make-whole bound's spread there (review18 U-1). With the closing price between an MG's feed-in and
    retail no MG gains more per Wh by deviating alone."""
    return max(
        (
            price_tick(r) - price_tick(f)
            for mg in microgrids
            for r, f in zip(mg.tariff.retail, mg.tariff.feed_in, strict=True)
        ),
        default=0,
    )


def transfers(credits: Mapping[str, int], charges: Mapping[str, int]) -> tuple[Payment, ...]:
    """Payer → payee payments whose sums are exactly each payer's charge and each payee's credit (north-west
    corner, both sides in name order: at most payers + payees − 1 payments; the ledger's `uplift_rule`)."""
    return tuple(
        Payment(payer, payee, amount) for payer, payee, amount in uplift_rule.transfers(credits, charges)
    )


def finite(*figures: Mapping[str, float]) -> None:
    """ValueError naming the first non-finite figure: nothing is paid on one."""
    for name, value in (item for figure in figures for item in figure.items()):
        if not math.isfinite(value):
            raise ValueError(f"{name}: a non-finite figure ({value}) cannot be paid")


def owed_of(gains: Mapping[str, float], tolerance: Mapping[str, float]) -> dict[str, int]:
    """What is owed (micro-units, by name): each gain above its tolerance (`earns`), rounded up to a
    micro-unit (in the payee's favour) after a thousandth of one for float noise."""
    finite(gains, tolerance)
    return {
        name: math.ceil(round(g * MICRO, 3)) for name, g in sorted(gains.items()) if earns(g, tolerance[name])
    }


def make_whole(
    gains: Mapping[str, float],
    tolerance: Mapping[str, float],
    day_cost: Mapping[str, float],
    conventional: Mapping[str, float],
    trading: Collection[str],
) -> Uplift:
    """The uplift for a committed day: `gains` each MG's deviation gain at the final prices, `tolerance` its
    stability tolerance, `day_cost` its committed day cost (payments included), `conventional` its
    conventional day cost, `trading` the MGs with forward trades (currency units, floats in; micro-units out)."""
    finite(gains, day_cost, conventional, tolerance)
    owed = owed_of(gains, tolerance)
    surplus = {
        name: math.floor(round((conventional[name] - day_cost[name]) * MICRO, 3))  # down: IR
        for name in sorted(trading)
        if name not in owed
    }
    # the integer rule is the ledger's (uplift_rule.split): the uplift contract funds the edge's claims by it
    paid = uplift_rule.split(owed, surplus)
    if not paid.credits:
        return Uplift({}, {}, paid.funded, paid.owed, paid.surplus)
    return Uplift(
        paid.credits, paid.charges, True, paid.owed, paid.surplus, transfers(paid.credits, paid.charges)
    )


def withhold(uplift: Uplift, defaulted: Collection[str]) -> Uplift:
    """The uplift as paid after delivery: the credits of the payees in `defaulted` (MGs that did not
    deliver all their own committed energy) withheld, and the payers' charges cut by exactly the withheld
    total (see the module's rule). Unchanged when no payee defaulted; an unfunded uplift pays nothing."""
    split = uplift_rule.Split(uplift.credits, uplift.charges, uplift.funded, uplift.owed, uplift.surplus)
    paid = uplift_rule.withhold(split, defaulted)
    if paid is split:
        return uplift
    return Uplift(
        paid.credits,
        paid.charges,
        uplift.funded,
        uplift.owed,
        uplift.surplus,
        transfers(paid.credits, paid.charges),
        paid.withheld,
        paid.refunds,
    )

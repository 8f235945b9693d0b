"""Day-ahead delivery faults: an MG that does not deliver part of its forward trades, and what follows.

Promises:
- `DeliveryFault(mg, fraction, intervals)`: MG `mg` fails to deliver `fraction` ∈ [0, 1] of its own side of
  every forward trade it has in `intervals` (None: every interval of the day): as a seller it supplies that
  much less, as a buyer it takes that much less. `fractions(scenario, faults)` checks them against the
  scenario and raises FaultError naming the bad one (unknown MG, fraction outside [0, 1] or not finite,
  interval out of range, an MG's interval given twice). `parse_fault("mg:0.5:3,5-7")` reads the CLI's
  form; `seeded_faults` draws a seeded pattern among given MGs.
- `deliver(scenario, commitment, agreed, fractions)`: per agreed trade, the whole Wh delivered: the agreed
  Wh less the larger of the two sides' shortfalls (a side's shortfall is its fraction of the agreed Wh,
  rounded up to a whole Wh, so any fault of a trade is at least one Wh) — what the contract settles, once.
  Each MG's dispatch absorbs it:
  * an MG with a shortfall of its own knows it (its plant, its decision): it re-plans its day with its own
    side of its trades fixed (forward.dispatch, the MILP of the commitment's check and of the deviation);
  * what remains between the P2P exchange an MG planned and the one delivered — its counterparty's
    shortfall — is covered with the DSO in that interval, its DERs as planned: the missing energy is
    bought at retail (after cutting its own export, which forgoes feed-in), energy not taken is sold at
    feed-in (after cutting its import). No foresight and no re-plan: the cost of being let down. A gap
    beyond the tariff's import or export limit raises FaultError (no scenario of ours sets those limits).
  Money: the settled payments (delivered Wh at the agreed price, less the exchange fee on the agreed Wh:
  the chain collects it on what cleared, exchange_fee.py) per MG and interval, and the imbalance
  compensation: the side whose shortfall cut a trade pays its counterparty the DSO's price of the cover — for
  each Wh not delivered the buyer's retail less the trade price, for each Wh not taken the trade price less
  the seller's feed-in (rounded up to a micro-unit, never negative), what the counterparty's cover costs it at
  most (it cuts its own export or import first, which costs less). Where both sides fell short only the
  larger shortfall's excess is compensated, to the side that fell short less. So an MG that delivered all
  its own energy ends no worse off than its commitment, whoever let it down (`compensation`: one payment per
  payer and payee for the day, netted both ways by `netted`). The rule is the market contract's own
  (`market_state.compensation`, on the DSO's prices in whole micro-units per Wh), so a chain whose DSO
  priced the cover (chain_venue `compensate`) computes and moves the same figures in each settlement from
  each side's `shortfalls` (seller's, buyer's Wh per trade with any), and the venue checks them against
  these instead of posting them with `pay`. An MG untouched by any fault keeps the commitment's figures
  exactly.
Deterministic; pure (HiGHS MILPs only). Never reads clocks or I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from peergrid_controller import exchange_fee
from peergrid_controller.forward import Commitment, dispatch, net_by_interval
from peergrid_controller.market import Trade, micro_per_wh, wh
from peergrid_controller.model import Microgrid, Scenario
from peergrid_controller.uplift import MICRO, Payment
from peergrid_ledger.contracts.market_state import compensation

Fractions = Mapping[tuple[str, int], float]  # (MG, interval) -> fraction of its own side not delivered


class FaultError(ValueError):
    """A delivery-fault spec the day cannot take (names the MG, the value and why), or a gap the DSO cannot
    cover within the tariff's limits."""


@dataclass(frozen=True)
class DeliveryFault:
    mg: str
    fraction: float  # of its own side of each forward trade in `intervals`, not delivered
    intervals: tuple[int, ...] | None = None  # None: every interval

    def __str__(self) -> str:
        """The CLI's form (`parse_fault` reads it back)."""
        where = "" if self.intervals is None else ":" + ",".join(str(t) for t in self.intervals)
        return f"{self.mg}:{self.fraction!r}{where}"


def fractions(scenario: Scenario, faults: Sequence[DeliveryFault]) -> dict[tuple[str, int], float]:
    names = {mg.name for mg in scenario.microgrids}
    n = scenario.intervals
    out: dict[tuple[str, int], float] = {}
    for fault in faults:
        if fault.mg not in names:
            raise FaultError(f"delivery fault {fault}: no microgrid named {fault.mg!r}")
        if not (math.isfinite(fault.fraction) and 0.0 <= fault.fraction <= 1.0):
            raise FaultError(f"delivery fault {fault}: fraction {fault.fraction} is outside [0, 1]")
        for t in range(n) if fault.intervals is None else fault.intervals:
            if not 0 <= t < n:
                raise FaultError(f"delivery fault {fault}: interval {t} is outside 0..{n - 1}")
            if (fault.mg, t) in out:
                raise FaultError(f"delivery fault {fault}: {fault.mg}'s interval {t} is given twice")
            out[(fault.mg, t)] = fault.fraction
    return out


def parse_fault(text: str) -> DeliveryFault:
    """`MG:FRACTION[:INTERVALS]`, INTERVALS a comma list of numbers and ranges (`3,5-7`); none: every one."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise FaultError(f"delivery fault {text!r}: expected MG:FRACTION[:INTERVALS]")
    try:
        fraction = float(parts[1])
        intervals: tuple[int, ...] | None = None
        if len(parts) == 3:
            chosen: list[int] = []
            for item in parts[2].split(","):
                lo, _, hi = item.partition("-")
                chosen.extend(range(int(lo), int(hi or lo) + 1))
            intervals = tuple(chosen)
    except ValueError as exc:
        raise FaultError(f"delivery fault {text!r}: {exc}") from None
    return DeliveryFault(parts[0], fraction, intervals)


def seeded_faults(names: Collection[str], n: int, seed: int, count: int) -> tuple[DeliveryFault, ...]:
    """`count` of `names` (sorted, drawn with `seed`) each fail a fraction in {0.1, …, 1.0} of their positions
    in one run of consecutive intervals."""
    rng = random.Random(seed)
    chosen = rng.sample(sorted(names), min(count, len(names)))
    faults = []
    for name in sorted(chosen):
        start = rng.randrange(n)
        length = rng.randint(1, n - start)
        faults.append(DeliveryFault(name, rng.randint(1, 10) / 10, tuple(range(start, start + length))))
    return tuple(faults)


@dataclass(frozen=True)
class Delivery:
    delivered: tuple[tuple[Trade, ...], ...]  # the agreed trades with the quantity delivered (whole Wh)
    physical_cost: dict[str, tuple[float, ...]]  # per MG and interval: dispatch and the DSO's cover
    payments: dict[str, tuple[float, ...]]  # per MG and interval: settled money received minus paid
    shortfall_kwh: dict[str, float]  # per MG with any: its own committed energy it did not deliver
    covered_kwh: dict[str, float]  # per MG with any: a counterparty's shortfall it covered with the DSO
    solves: int  # MILPs re-solved for MGs that defaulted
    # the imbalance compensation for the day: one payment per (payer, payee), netted both ways (micro-units)
    compensation: tuple[Payment, ...] = ()
    # (interval, seller, buyer) -> (seller's, buyer's) own shortfall in Wh, for each trade with any
    shortfalls: dict[tuple[int, str, str], tuple[int, int]] = field(default_factory=dict)

    @property
    def defaulted(self) -> tuple[str, ...]:
        return tuple(sorted(self.shortfall_kwh))

    def day_cost(self, name: str) -> float:
        return sum(self.physical_cost[name]) - sum(self.payments[name])


def _short(agreed_wh: int, fraction: float) -> int:
    return min(agreed_wh, math.ceil(round(agreed_wh * fraction, 6)))


def _cover(mg: Microgrid, t: int, dt: float, dso: tuple[float, float], need: float) -> float:
    """Cost of `need` kWh more from the DSO in interval t (negative: that much more to sell), starting from
    the dispatch's (imported, exported) kWh, within the tariff's limits."""
    imported, exported = dso
    tariff = mg.tariff
    if need > 0:
        cut = min(exported, need)
        more, limit, price = need - cut, tariff.max_import_kw, tariff.retail[t]
        cost = tariff.feed_in[t] * cut + price * more
        total = imported + more
    else:
        cut = min(imported, -need)
        more, limit, price = -need - cut, tariff.max_export_kw, tariff.feed_in[t]
        cost = -tariff.retail[t] * cut - price * more
        total = exported + more
    if total > limit * dt + 1e-9:
        side = "import" if need > 0 else "export"
        raise FaultError(
            f"{mg.name} cannot cover {abs(need):.3f} kWh with the DSO in interval {t}: beyond its max {side}"
        )
    return cost


def _compensation(
    mgs: Mapping[str, Microgrid], t: int, tr: Trade, seller_short: int, buyer_short: int
) -> tuple[str, str, int]:
    """(payer, payee, micro-units) of one trade's imbalance compensation (amount 0 when nobody owes): the
    side that fell short more pays the other the DSO's price of covering the difference (see the module),
    by the contract's rule on the prices as the chain holds them (micro-units per Wh)."""
    side, amount = compensation(
        micro_per_wh(tr.price),
        seller_short,
        buyer_short,
        micro_per_wh(mgs[tr.buyer].tariff.retail[t]),
        micro_per_wh(mgs[tr.seller].tariff.feed_in[t]),
    )
    return (tr.seller, tr.buyer, amount) if side == "seller" else (tr.buyer, tr.seller, amount)


def netted(owed: Mapping[tuple[str, str], int]) -> tuple[Payment, ...]:
    """One payment per pair of MGs for the day: what each owes the other, netted."""
    out = []
    for (payer, payee), amount in sorted(owed.items()):
        net = amount - owed.get((payee, payer), 0)
        if net > 0:
            out.append(Payment(payer, payee, net))
    return tuple(out)


def deliver(
    scenario: Scenario, commitment: Commitment, agreed: Sequence[Sequence[Trade]], faults: Fractions
) -> Delivery:
    n, dt = scenario.intervals, scenario.interval_hours
    mgs = {mg.name: mg for mg in scenario.microgrids}
    planned = {name: [0.0] * n for name in mgs}  # own side, own faults only
    shortfall: dict[str, int] = {}
    owed: dict[tuple[str, str], int] = {}  # (payer, payee) -> micro-units of compensation over the day
    compensated = {name: [0] * n for name in mgs}  # micro-units received minus paid, per interval
    delivered: list[tuple[Trade, ...]] = []
    shortfalls: dict[tuple[int, str, str], tuple[int, int]] = {}
    for t, day in enumerate(agreed):
        out = []
        for tr in day:
            q = wh(tr.quantity_kwh)
            sold = q - _short(q, faults.get((tr.seller, t), 0.0))
            taken = q - _short(q, faults.get((tr.buyer, t), 0.0))
            for name, own in ((tr.seller, sold), (tr.buyer, taken)):
                if own < q:
                    shortfall[name] = shortfall.get(name, 0) + q - own
            planned[tr.seller][t] += sold / 1000
            planned[tr.buyer][t] -= taken / 1000
            out.append(replace(tr, quantity_kwh=min(sold, taken) / 1000))
            if min(sold, taken) < q:
                shortfalls[(t, tr.seller, tr.buyer)] = (q - sold, q - taken)
            payer, payee, amount = _compensation(mgs, t, tr, q - sold, q - taken)
            if amount:
                owed[(payer, payee)] = owed.get((payer, payee), 0) + amount
                compensated[payer][t] -= amount
                compensated[payee][t] += amount
        delivered.append(tuple(out))
    trades = tuple(delivered)
    physical, payments = dict(commitment.physical_cost), dict(commitment.payments)
    covered: dict[str, float] = {}
    solves = 0
    for mg in scenario.microgrids:
        kwh, money = net_by_interval(trades, mg.name)
        needs = [a - p for a, p in zip(kwh, planned[mg.name], strict=True)]
        gaps = [t for t in range(n) if abs(needs[t]) > 1e-9]
        if mg.name not in shortfall and not gaps and not any(compensated[mg.name]):
            continue
        if mg.name in shortfall:
            replanned = dispatch(mg, dt, planned[mg.name])
            solves += 1
            costs, dso = list(replanned.physical), replanned.dso_kwh
        else:
            costs, dso = list(commitment.physical_cost[mg.name]), commitment.dso_kwh[mg.name]
        for t in gaps:
            costs[t] += _cover(mg, t, dt, dso[t], needs[t])
        if gaps:
            covered[mg.name] = sum(abs(needs[t]) for t in gaps)
        physical[mg.name] = tuple(costs)
        # the exchange fee is due on the cleared Wh, whatever was delivered (exchange_fee.py)
        fee = exchange_fee.by_interval(commitment.fee, exchange_fee.traded_wh(commitment.trades, mg.name))
        payments[mg.name] = tuple(
            m + (c - f) / MICRO for m, c, f in zip(money, compensated[mg.name], fee, strict=True)
        )
    return Delivery(
        trades,
        physical,
        payments,
        {name: short / 1000 for name, short in sorted(shortfall.items())},
        covered,
        solves,
        netted(owed),
        shortfalls,
    )

"""The day-ahead exchange fee as each MG's model prices it.

Promises:
- The fee is the chain's (genesis `exchange_fee`, copied into the session record as `fee`): nano-currency per
  kWh on *each side* of every day-ahead trade, a whole number of market ticks (10**6 nano/kWh = one
  micro-unit per Wh; `check`, the chain's own `market_fee.check_fee`). A seller nets p − fee, a buyer pays
  p + fee; the fund collects both. On the tick a closing price c pays an MG whose alternative price is on the
  tick (retail, feed-in, an owner's floor or cap) exactly where c + fee ≤ retail, so the fee its answers
  price is the fee the chain charges (a fee below the tick had to be priced as the whole tick above, and
  buyers left at the tick below retail gained by deviating: docs/market.md "The fee on the tick").
- `check(fee, what)`: the fee as an int, or ValueError naming `what` and what is allowed.
- `per_kwh(fee)`: the fee in currency per kWh, as the MG models take prices.
- `with_fee(fees, fee, n)`: an MG's per-kWh sell and buy fees (its owner-rule fees,
  dayrules.Fees) with the exchange fee added to both sides in all `n` intervals: sales and purchases then take
  a column each (DayModel.trade), so the wedge between them is the MG's own. Its answers, commitment, switch
  and deviation (deviation.py) all take the fee itself. Fee 0: `fees` unchanged (the same object).
- `loses_to_dso(tariff, position, prices, fee)`: whether an MG's posted position, closed at the ticks of the
  stepped prices with the fee, loses against the DSO over the day (the kWh bought above its retail, sold
  below its feed-in, cost more than its other trades gain over its tariff): its value-stop verdict then
  waits (a stop there closed trades its exact check cuts, on ieee33 the main buyer's and every seller's).
- `due(fee, wh)`: what a member pays for `wh` cleared Wh: ceil(fee · wh / 10**6) micro-units, one rounding
  per member per session, as the uplift contract collects it (its `market_fee.fee_for`) (the member's cleared Wh: its sales and its
  purchases together, every trade it is a party to).
- `by_interval(fee, wh)`: that same `due` split over the intervals in whole micro-units (each interval the
  growth of the ceiling of the running total), so the parts sum to `due` exactly and an MG's day with them
  is its day as the chain charges it.
- `traded_wh(trades, name)`: an MG's cleared Wh per interval, sales and purchases, from its trades.
- `net_prices(prices, kwh, fee)`: each interval's price as the MG gets it, p − fee where it sells, p + fee
  where it buys (the accept check's reduction prices its trades there).
- `unwinding_worth(spread, marginal, positions, prices, fee)`: per interval, what a kWh of an MG's move is
  worth to it where the move only unwinds its position toward zero (the value stop's `worth` with a fee):
  its own marginal value's gap to its net price, at most its spread (see the function).
- `Margins(fee, spread, tariffs)`: the simulation's MGs' own marginal values at their last answers, and `worth`,
  each MG's `unwinding_worth` for the stepped iteration, and `loses`, its `loses_to_dso`
  (dayrounds.Exchange.step).
`Book` (the exchange's public arithmetic) knows nothing of the fee: it moves no price. Pure; no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from peergrid_controller.daymodel import DayModel
from peergrid_controller.dayrules import Fees
from peergrid_controller.market import Trade, wh
from peergrid_controller.model import Tariff
from peergrid_ledger.contracts.exchange_state import NANO_PER_MICRO_WH, micro_per_wh
from peergrid_ledger.contracts.market_fee import MAX_FEE as MAX_FEE  # re-exported: the tests
from peergrid_ledger.contracts.market_fee import check_fee, fee_for

NANO_PER_KWH = 10**9  # nano-currency per currency unit (the chain's per-kWh prices)
# MAX_FEE: nano per kWh per side, the chain's bound on genesis `exchange_fee` and `market.fee` (10 micro-units
# per Wh); `fee_for`: the uplift contract's collection (ledger contracts/market_fee.py), so both charge alike


def check(fee: object, what: str = "exchange_fee") -> int:
    """The fee as an int: a whole number of ticks within [0, MAX_FEE], as the chain takes it (its own
    `market_fee.check_fee`); ValueError naming `what`, the value and what is allowed otherwise (a bool is not a
    fee)."""
    return check_fee(fee, what)


def per_kwh(fee: int) -> float:
    return fee / NANO_PER_KWH


def with_fee(fees: Fees, fee: int, n: int) -> Fees:
    if fee == 0:
        return fees
    phi = per_kwh(fee)

    def add(side: Sequence[float] | None) -> tuple[float, ...]:
        return tuple((side[k] if side is not None else 0.0) + phi for k in range(n))

    return add(fees[0]), add(fees[1])


def due(fee: int, traded: int) -> int:
    """Micro-units for `traded` cleared Wh (≥ 0) at `fee` nano per kWh: rounded up, in the fund's favour (the
    contract's own `fee_for`)."""
    return fee_for(fee, traded)


def by_interval(fee: int, traded: Sequence[int]) -> tuple[int, ...]:
    parts = []
    running = charged = 0
    for wh_t in traded:
        running += wh_t
        now = due(fee, running)
        parts.append(now - charged)
        charged = now
    return tuple(parts)


def traded_wh(trades: Sequence[Sequence[Trade]], name: str) -> tuple[int, ...]:
    return tuple(sum(wh(tr.quantity_kwh) for tr in day if name in (tr.seller, tr.buyer)) for day in trades)


def net_prices(prices: Sequence[float], kwh: Sequence[float], fee: int) -> list[float]:
    phi = per_kwh(fee)
    return [p - phi if q > 0 else p + phi if q < 0 else p for p, q in zip(prices, kwh, strict=True)]


def loses_to_dso(tariff: Tariff, position: Sequence[float], prices: Sequence[int], fee: int) -> bool:
    """Whether an MG's posted `position` (kWh per interval, + sale), closed at the ticks of the stepped
    `prices` (nano per kWh, the book's) with the fee, loses against the DSO over the day: the kWh it would
    buy with c + fee above its retail (sell with c − fee below its feed-in) cost it more than its other
    trades gain over its tariff. Its exact check would then cut its position, on ieee33 the main buyer's
    whole day, and every seller's trade with it; its value-stop verdict waits (dayrounds.Exchange.step).
    A loss counts only where its answers see it too (λ + fee beyond the tariff): the verdict never waits for
    a move ADMM does not make (a tariff off the tick may still close a tick the wrong way, left to the exact
    check as without a fee). Whole Wh and nanos: exact. Fee 0: False."""
    if fee == 0:
        return False
    net = 0  # nano·Wh per kWh: what its trades gain over the DSO, less the losses its answers see
    for t, (q, p) in enumerate(zip(position, prices, strict=True)):
        closing = micro_per_wh(p) * NANO_PER_MICRO_WH
        retail, feed_in = round(tariff.retail[t] * NANO_PER_KWH), round(tariff.feed_in[t] * NANO_PER_KWH)
        if q < 0:
            gain = retail - closing - fee
            net += wh(-q) * gain if gain >= 0 or p + fee > retail else 0
        elif q > 0:
            gain = closing - fee - feed_in
            net += wh(q) * gain if gain >= 0 or p - fee < feed_in else 0
    return net < 0


def unwinding_worth(
    spread: Sequence[float],
    marginal: tuple[Sequence[float], Sequence[float]] | None,
    positions: tuple[Sequence[float], Sequence[float]],
    prices: Sequence[float],
    fee: int,
) -> list[float]:
    """Per interval, the most a kWh of one MG's move is worth to it, for the value stop (dayexchange.settled's
    `worth`; private: its own marginal values). `spread` is the default (retail less feed-in: the most a
    P2P kWh can be worth against the DSO); where the move only unwinds its position toward zero (a sale
    smaller, a purchase smaller, same side) the bound is its own marginal value's gap to its net price,
    |μ − (p − fee)| for a sale, |μ − (p + fee)| for a purchase (the fee as its answers price it), at the
    larger of the gaps at its positions before and after (`marginal`: the balance duals of its last
    two answers, currency per kWh; None: none known, the spread): its day cost is convex in its P2P positions (an LP, commitments fixed), so its
    marginal value along the move lies between the two, and what the move gains it is the move times a gap
    no larger. Why: with a fee every MG has a dead band (a sale nets p − fee, a purchase costs p + fee) and
    the energy it traded at no margin without one (P2P or DSO at the same price) it now unwinds, one
    proximal step (≈ gap/ρ) per iteration, each step valued at its spread until it is gone: the 100-MG day
    took 51 rounds instead of 27 at one tick per side (notes/m10/study.md §2), while the moves were worth
    the fee per kWh to the MG moving. `prices` are those its answers were made at, `positions` (before,
    after) its posted ones (kWh). Across a genset commitment (its model replaced) the marginal value before is
    the relaxed model's: that one iteration's bound is then approximate (the next ones are exact again)."""
    if marginal is None or fee == 0:
        return list(spread)
    phi = per_kwh(fee)  # as its answers price it (`with_fee`)
    before, after = marginal
    old, new = positions
    out = []
    for t, cap in enumerate(spread):
        a, b = new[t], old[t]
        if a * b < 0 or abs(a) >= abs(b):
            out.append(cap)
            continue
        net = prices[t] - phi if b > 0 else prices[t] + phi
        out.append(min(cap, max(abs(before[t] - net), abs(after[t] - net))))
    return out


class Margins:
    """Each MG's own marginal values at its last answer (private to it; the simulation holds every MG's), so
    that its verdict can value its moves by `unwinding_worth`. Fee 0 keeps nothing: every move at its spread,
    the value stop as without a fee."""

    def __init__(self, fee: int, spread: Sequence[Sequence[float]], tariffs: Sequence[Tariff] = ()) -> None:
        self.fee, self.spread, self.tariffs = fee, spread, tariffs
        self.last: list[tuple[float, ...] | None] = []

    def loses(self, i: int, position: Sequence[float], prices: Sequence[int]) -> bool:
        """MG i's `loses_to_dso` with its own tariff (`tariffs`; none given: False)."""
        return (
            bool(self.fee)
            and i < len(self.tariffs)
            and loses_to_dso(self.tariffs[i], position, prices, self.fee)
        )

    def worth(
        self,
        models: Sequence[DayModel],
        prices: Sequence[float],
        before: Sequence[Sequence[float]],
        after: Sequence[Sequence[float]],
    ) -> list[list[float] | None]:
        """Per MG, what a kWh of its move from `before` to `after` (its posted positions, kWh) is worth to it
        at the `prices` it answered (None: its spread, where a solve gave no duals, a MILP). Call once per
        answered iteration, after its answers."""
        if not self.fee:
            return [None] * len(models)
        now = [model.marginal_values() for model in models]
        last, self.last = self.last or now, now
        return [
            unwinding_worth(self.spread[i], (a, b), (before[i], after[i]), prices, self.fee)
            if a is not None and b is not None
            else None
            for i, (a, b) in enumerate(zip(last, now, strict=True))
        ]

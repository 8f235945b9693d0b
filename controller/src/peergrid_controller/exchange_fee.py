"""The day-ahead exchange fee as each MG's model prices it.

Promises:
- The fee is the chain's (genesis `exchange_fee`, copied into the session record as `fee`): whole nano-currency
  per kWh on *each side* of every day-ahead trade (10**6 nano/kWh = one micro-unit per Wh = the market tick).
  A seller nets p − fee, a buyer pays p + fee; the fund collects both.
- `per_kwh(fee)`: the fee in currency per kWh, as the MG models take prices.
- `with_fee(fees, fee, n)`: an MG's per-kWh sell and buy fees (its owner-rule fees, dayrules.Fees) with the
  exchange fee added to both sides in all `n` intervals: sales and purchases then take a column each
  (DayModel.trade), so the wedge between them is the MG's own. Fee 0: `fees` unchanged (the same object).
- `due(fee, wh)`: what a member pays for `wh` cleared Wh: ceil(fee · wh / 10**6) micro-units, one rounding
  per member per session, as the uplift contract collects it (the member's cleared Wh: its sales and its
  purchases together, every trade it is a party to).
- `by_interval(fee, wh)`: that same `due` split over the intervals in whole micro-units (each interval the
  growth of the ceiling of the running total), so the parts sum to `due` exactly and an MG's day with them
  is its day as the chain charges it.
- `traded_wh(trades, name)`: an MG's cleared Wh per interval, sales and purchases, from its trades.
- `net_prices(prices, kwh, fee)`: each interval's price as the MG gets it, p − fee where it sells, p + fee
  where it buys (the accept check's reduction prices its trades there).
`Book` (the exchange's public arithmetic) knows nothing of the fee: it moves no price. Pure; no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from peergrid_controller.dayrules import Fees
from peergrid_controller.market import Trade, wh

NANO_PER_KWH = 10**9  # nano-currency per currency unit (the chain's per-kWh prices)
MAX_FEE = 10**7  # nano per kWh per side: the chain's bound on `market.fee` (10 micro-units per Wh)
_NANO_WH_PER_MICRO = 10**6  # nano/kWh × Wh = 10**-12 currency = 10**-6 micro-units


def check(fee: object, what: str = "exchange_fee") -> int:
    """The fee as an int within [0, MAX_FEE]; ValueError naming `what` otherwise (a bool is not a fee)."""
    if isinstance(fee, bool) or not isinstance(fee, int) or not 0 <= fee <= MAX_FEE:
        raise ValueError(
            f"{what} must be a whole number of nano-currency per kWh per side in [0, {MAX_FEE}], got {fee!r}"
        )
    return fee


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
    """Micro-units for `traded` cleared Wh (≥ 0) at `fee` nano per kWh: rounded up, in the fund's favour."""
    return -(-fee * traded // _NANO_WH_PER_MICRO)


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

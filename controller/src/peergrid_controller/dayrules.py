"""The owners' rules as the day-ahead allocation sees them (dayahead.py, dayexchange.py, deviation.py,
matching.py).

Promises:
- `limits_kw(mg, t, price, dt)`: the net export range an MG may take in an interval at a price under its
  owner's rules (a NaN price: physical limits, maximum quantity and clean-only alone).
- `rule_fees(mg)`: the owner's floor and cap as convex per-kWh fees (`Fees`), None where a rule never binds.
- `rules_in_force(mg)`: whether a floor or cap is judged at the prices found.
- `clean_cap_fees(mg, buy)`: a clean-only buyer's cap fee on a clean session, at cap + premium.
- `chain_rules(rules)`: the owner's rules as the chain keeps them (`market.set_rules`, genesis accounts):
  prices in micro-units per Wh on the market tick, quantities in Wh, each within the contract's bounds.
Pure; no solver, no clocks, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from peergrid_controller.builder import p2p_buy_limit, p2p_sell_limit
from peergrid_controller.market import micro_per_wh, wh
from peergrid_controller.model import ContractRules, Microgrid
from peergrid_ledger.schema import PRICE, QUANTITY


def limits_kw(mg: Microgrid, t: int, price: float, dt: float) -> tuple[float, float]:
    """The net export range (kW) MG `mg` may take in interval t at `price` under its owner's rules (a NaN
    price: its physical limits, maximum quantity and clean-only rule alone, floor and cap not judged)."""
    rules = mg.rules
    quantity = rules.max_quantity_kwh / dt
    judged = not math.isnan(price)
    may_sell = not judged or micro_per_wh(price) >= micro_per_wh(rules.floor_price)
    hi = min(p2p_sell_limit(mg, t), quantity) if may_sell else 0.0
    may_buy = not rules.clean_only and (
        not judged or math.isinf(rules.cap_price) or micro_per_wh(price) <= micro_per_wh(rules.cap_price)
    )
    lo = -min(p2p_buy_limit(mg, t), quantity) if may_buy else 0.0
    return lo, hi


Fees = tuple[tuple[float, ...] | None, tuple[float, ...] | None]


def rule_fees(mg: Microgrid) -> Fees:
    """The owner's floor and cap as convex costs (per interval, currency/kWh): a kWh sold P2P is charged
    the floor's excess over the MG's feed-in price, a kWh bought the retail price's excess over the cap.
    The marginal cost of selling its surplus becomes max(feed-in, floor) and the marginal value of covering
    its deficit min(retail, cap), so it sells that surplus only at or above its floor and buys only at or
    below its cap, as the rule says, and its response moves with the price by degrees instead of switching a
    whole side on or off. Exact for those kWh only: energy it would shift or produce at another cost is
    charged too (hence `dayjudge.OwnRules.fee_change`). None where the rule never binds."""
    rules, tariff = mg.rules, mg.tariff
    sell = tuple(max(rules.floor_price - f, 0.0) for f in tariff.feed_in)
    buy = tuple(max(r - rules.cap_price, 0.0) for r in tariff.retail)
    return (sell if any(sell) else None, buy if any(buy) else None)


def rules_in_force(mg: Microgrid) -> bool:
    """Whether MG `mg` has a floor or a cap that the allocation judges at the prices found."""
    return mg.rules.floor_price > 0.0 or not math.isinf(mg.rules.cap_price)


def chain_rules(rules: ContractRules) -> dict[str, Any]:
    def price(p: float) -> int:
        return int(PRICE.high) if math.isinf(p) else min(micro_per_wh(p), int(PRICE.high))

    def quantity(q: float) -> int:
        return int(QUANTITY.high) if math.isinf(q) else min(wh(q), int(QUANTITY.high))

    return {
        "floor_price": price(rules.floor_price),
        "cap_price": price(rules.cap_price),
        "max_quantity": quantity(rules.max_quantity_kwh),
        "clean_only": rules.clean_only,
        "clean_premium": price(rules.clean_premium),
    }


def clean_cap_fees(mg: Microgrid, buy: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """A clean-only buyer's cap fee on a clean session (cleanbook.py: everything it buys is clean): its cap
    on a clean kWh is cap + premium, as `market.acceptable` has it, so the fee is the retail price's excess
    over cap + premium where its cap fee `buy` stands (a dropped one stays dropped). None where none is left.
    The premium is a cap, never a benefit per clean kWh (that made buyers over-import: M4 §1)."""
    if buy is None:
        return None
    cap = mg.rules.cap_price + mg.rules.clean_premium
    raised = tuple(max(r - cap, 0.0) if f > 0 else 0.0 for r, f in zip(mg.tariff.retail, buy, strict=True))
    return raised if any(raised) else None

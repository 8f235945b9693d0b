"""The market contract: offers, bids, the owner's preset rules, and the deterministic clearing of a round.

Promises: `check_offer` and `check_bid` return `Accepted` or `Rejected(reason)` (never None, never raise on bad
input); `clear` turns the accepted offers and bids of one round into trades, deterministically (sorted by name,
pro rata in whole Wh rounded down when a seller is over-subscribed: the ledger's market contract rule). Quantities are kWh in the
interval, prices currency per kWh. The same functions run inside every MGMC (to plan its move) and on the chain
(to judge it), so a dishonest MGMC cannot move past its own rules.
Assumes rules are public to the contract (they are preset in genesis/config), curves and costs are not.
Never reads clocks or I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from peergrid_controller.model import ContractRules
from peergrid_ledger.contracts.market import MAX_DEMANDS, allocate
from peergrid_ledger.contracts.market_state import price_tick as chain_tick

QUANTUM = 0.001  # kWh: the chain records energy in whole Wh
PRICE_TICK = 0.001  # currency per kWh: the chain records prices in micro-units per Wh
MAX_REQUESTS = MAX_DEMANDS  # sellers one bid may name: the contract's own limit, checked here the same


def wh(kwh: float) -> int:
    return round(kwh * 1000)


def micro_per_wh(price_per_kwh: float) -> int:
    """Currency per kWh on the market contract's tick (the ledger's `market_state.price_tick`)."""
    return chain_tick(price_per_kwh)


def within(quantity_kwh: float, limit_kwh: float) -> bool:
    """quantity <= limit, compared in whole Wh as the chain does (an infinite limit is no limit)."""
    return math.isinf(limit_kwh) or wh(quantity_kwh) <= wh(limit_kwh)


def quantize(x: float) -> float:
    """kWh rounded down to whole Wh (an offer or request never grows by rounding)."""
    return math.floor(x * 1000 + 1e-6) / 1000 if math.isfinite(x) else x


def price_tick(price: float) -> float:
    return round(price * 1000) / 1000


@dataclass(frozen=True)
class Offer:
    seller: str
    interval: int
    price: float
    quantity_kwh: float
    clean: bool  # renewable-backed: no genset output behind it


@dataclass(frozen=True)
class Bid:
    buyer: str
    interval: int
    requests: tuple[tuple[str, float], ...]  # (seller, kWh), sorted by seller


@dataclass(frozen=True)
class Trade:
    interval: int
    seller: str
    buyer: str
    quantity_kwh: float
    price: float

    @property
    def trade_id(self) -> str:
        return f"{self.interval}:{self.seller}->{self.buyer}"


@dataclass(frozen=True)
class Accepted:
    pass


@dataclass(frozen=True)
class Rejected:
    reason: str


Verdict = Accepted | Rejected


def check_offer(offer: Offer, rules: ContractRules) -> Verdict:
    if not (math.isfinite(offer.price) and math.isfinite(offer.quantity_kwh)):
        return Rejected("offer price and quantity must be finite")
    if offer.quantity_kwh < 0:
        return Rejected("offer quantity must be >= 0")
    if micro_per_wh(offer.price) < micro_per_wh(rules.floor_price):
        return Rejected(
            f"{offer.seller} offers at {offer.price:.6f} below its floor price {rules.floor_price:.6f}"
        )
    if not within(offer.quantity_kwh, rules.max_quantity_kwh):
        return Rejected(
            f"{offer.seller} offers {offer.quantity_kwh:.6f} kWh, more than its limit {rules.max_quantity_kwh:.6f}"
        )
    return Accepted()


def acceptable(offer: Offer, rules: ContractRules) -> bool:
    """Whether a buyer with `rules` may take this offer at all (cap, clean-only, premium for clean)."""
    if rules.clean_only and not offer.clean:
        return False
    cap = rules.cap_price + (rules.clean_premium if offer.clean else 0.0)
    return math.isinf(cap) or micro_per_wh(offer.price) <= micro_per_wh(cap)


def check_bid(
    bid: Bid, offers: Mapping[str, Offer], rules: ContractRules, cap_on_fills: bool = False
) -> Verdict:
    """The buyer's rules against the standing offers. `cap_on_fills` (the chain's genesis parameter): the
    owner's maximum caps what the closing allocates (`clear`), not the sum of the requests."""
    total = 0.0
    sellers = [seller for seller, _ in bid.requests]
    if sellers != sorted(set(sellers)):
        return Rejected("bid requests must name each seller once, sorted")
    named = sum(1 for _, quantity in bid.requests if not math.isfinite(quantity) or wh(quantity) > 0)
    if named > MAX_REQUESTS:
        return Rejected(f"{bid.buyer} asks {named} sellers, more than the {MAX_REQUESTS} a bid may name")
    for seller, quantity in bid.requests:
        if not math.isfinite(quantity) or quantity < 0:
            return Rejected(f"request from {seller} must be a finite quantity >= 0")
        if seller == bid.buyer:
            return Rejected("a buyer cannot buy from itself")
        offer = offers.get(seller)
        if offer is None or offer.interval != bid.interval:
            return Rejected(f"{bid.buyer} asks {seller}, who has no offer in interval {bid.interval}")
        if not within(quantity, offer.quantity_kwh):
            return Rejected(
                f"{bid.buyer} asks {quantity:.6f} kWh from {seller}, who offered only {offer.quantity_kwh:.6f}"
            )
        if quantity > 0 and not acceptable(offer, rules):
            return Rejected(f"{bid.buyer}'s rules (cap, clean-only) do not allow buying {seller}'s offer")
        total += quantity
    if not cap_on_fills and not within(total, rules.max_quantity_kwh):
        return Rejected(
            f"{bid.buyer} asks {total:.6f} kWh in all, more than its limit {rules.max_quantity_kwh:.6f}"
        )
    return Accepted()


def clear(
    offers: Sequence[Offer],
    bids: Sequence[Bid],
    caps: Mapping[str, float] | None = None,
    premiums: Mapping[str, float] | None = None,
) -> list[Trade]:
    """Trades of one round: every request filled, or pro rata to the requests when a seller is over-asked, in
    whole Wh rounded down — the ledger contract's own allocation (`contracts.market.allocate`). With `caps`
    (each buyer's maximum, kWh; the chain's `cap_on_fills`) a buyer keeps its grants in its own effective-price
    order (price minus its clean premium from `premiums` on a clean offer) up to its cap; offers of one
    effective price share the rest of the cap pro rata, so ties never depend on names here or keys there."""
    by_seller: dict[str, list[tuple[str, int]]] = {}
    for bid in sorted(bids, key=lambda b: b.buyer):
        for seller, quantity in bid.requests:
            if wh(quantity) > 0:
                by_seller.setdefault(seller, []).append((bid.buyer, wh(quantity)))
    standing = {o.seller: o for o in offers if o.seller in by_seller}
    positions = {
        s: {"price": micro_per_wh(o.price), "quantity": wh(o.quantity_kwh), "clean": o.clean}
        for s, o in standing.items()
    }
    limits = None
    if caps is not None:
        top = 2**62  # no cap: more than any offer
        limits = {b.buyer: top if math.isinf(caps[b.buyer]) else wh(caps[b.buyer]) for b in bids}
    premium_micro = {b: micro_per_wh(p) for b, p in (premiums or {}).items()}
    grants = allocate(positions, {s: by_seller[s] for s in standing}, limits, premium_micro)
    trades: list[Trade] = []
    for seller in sorted(standing):
        for buyer, filled_wh in grants[seller]:
            if filled_wh > 0:
                offer = standing[seller]
                trades.append(Trade(offer.interval, seller, buyer, filled_wh / 1000, offer.price))
    return trades


def net_positions(trades: Sequence[Trade]) -> dict[str, tuple[float, float]]:
    """Per MG: (kWh exported to peers minus imported, money received minus paid)."""
    out: dict[str, tuple[float, float]] = {}
    for t in trades:
        q, m = out.get(t.seller, (0.0, 0.0))
        out[t.seller] = (q + t.quantity_kwh, m + t.quantity_kwh * t.price)
        q, m = out.get(t.buyer, (0.0, 0.0))
        out[t.buyer] = (q - t.quantity_kwh, m - t.quantity_kwh * t.price)
    return out

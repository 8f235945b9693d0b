"""What the bargaining reads off the MGMC chain of an interval (split from `chain_bargaining.py`): its offers
and bids, an MG's trades, net export and money (`position`), the previous interval's agreed price
(`previous_price`) and where sellers open from it (`opening_price`), the buyers' clean premium, the
interval's market terms (`market_terms`) and what each seller left unsold (`unsold`).

Promises: only public data is read (positions, public rules, the latest closing, the genesis), and every MGMC
reads the same from the same chain state, so all decide alike. Pure functions of the state they are given:
no transactions, no waits, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peergrid_controller.market import price_tick
from peergrid_ledger import query
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.schema import PRICE


def offers_on_chain(state: Any, t: int) -> dict[bytes, tuple[int, int, bool, int]]:
    out = {}
    for seller in contract.members(state, t, "sellers"):
        o = contract.offer(state, t, seller)
        if o is not None:
            out[seller] = (o["price"], o["quantity"], o["clean"], o["round"])
    return out


def bids_on_chain(state: Any, t: int) -> dict[bytes, tuple[tuple[tuple[bytes, int], ...], int]]:
    out = {}
    for buyer in contract.members(state, t, "buyers"):
        b = contract.bid(state, t, buyer)
        if b is not None:
            out[buyer] = (tuple((d["seller"], d["quantity"]) for d in b["demands"]), b["round"])
    return out


def position(state: Any, t: int, me: bytes) -> tuple[list[tuple[bytes, dict[str, Any]]], float, float]:
    """This MG's trades of interval t's latest closing (id, trade), its net P2P export (kWh) and money."""
    mine = [(tid, tr) for tid, tr in query.trades(state, t) if me in (tr["seller"], tr["buyer"])]
    net_kwh = money = 0.0
    for _, tr in mine:
        sign = 1.0 if tr["seller"] == me else -1.0
        net_kwh += sign * tr["quantity"] / 1000
        money += sign * tr["price"] * tr["quantity"] / 1e6
    return mine, net_kwh, money


def previous_price(
    state: Any, t: int, counted: Callable[[dict[str, Any]], bool] | None = None
) -> float | None:
    """The price (per kWh, on the chain's tick) of interval t - 1's agreed trades, weighted by their quantities:
    public, the latest closing's; None when that interval holds no trades (none yet, none agreed, or t is 0).
    `counted`: which trades count (the guard's forecast: `peer_forecast.anonym_trades`; None: all)."""
    if t <= 0:
        return None
    trades = [tr for _, tr in query.trades(state, t - 1) if counted is None or counted(tr)]
    volume = sum(tr["quantity"] for tr in trades)
    if volume <= 0:
        return None
    return price_tick(sum(tr["price"] * tr["quantity"] for tr in trades) / volume / 1000)


def opening_price(state: Any, t: int, feed_in: float, upper: float) -> float | None:
    """Where interval t's sellers open without a price call on the chain (`moves.interval_price` is not one):
    the previous interval's agreed price (`previous_price`, public), held within the interval's own band
    [feed-in, `upper`]: the trader passes the interval's retail price, as the simulation's call is held
    within [feed-in, retail] (`bargain` holds each seller's opening there too: `seller_ceiling`); each seller
    then clips it to its own bounds and steps two ticks from there, as `bargaining.bargain` does from the
    interval's price. None: no previous price; sellers open mid-bounds. Every MGMC reads the same closed
    interval, so all open from the same price.

    Roles stay at the mid price (`moves.role_at_mid`): taken at this price, a seller whose cost lies between
    the cheap sellers' trade prices and the clearing price sat the interval out (measured on a 12-hour day of
    the 5-MG owner-rules case: 3 intervals with half the volume), while at the mid price every interval traded
    what it trades from the interval's price. Measured rounds: tests/edge/test_edge_owner_rules.py."""
    last = previous_price(state, t)
    if last is None:
        return None
    return min(max(last, price_tick(feed_in)), price_tick(upper))


def buyers_premium(state: Any, t: int, buyers: set[bytes]) -> float:
    """The largest clean premium (per kWh) in the public rules of interval t's `buyers`; 0.0 for none."""
    return max((query.rules(state, b, t)["clean_premium"] / 1000 for b in sorted(buyers)), default=0.0)


@dataclass(frozen=True)
class MarketTerms:
    """What decides a buyer's moves in one interval beyond the positions, read off the chain: `ranked_apart`
    (some member's owner rules rank the same offers apart: a clean premium, clean-only or a price cap; only
    then does a short buyer use `spare`, as in `bargaining.bargain`) and `fills_capped` (genesis
    `cap_on_fills`: the contract caps what a buyer is allocated, so its requests may exceed its maximum)."""

    ranked_apart: bool
    fills_capped: bool


def market_terms(state: Any, genesis: Any, t: int, members: set[bytes]) -> MarketTerms:
    """The interval's terms from the public rules of its `members` (at interval t) and the chain's genesis."""

    def ranks(key: bytes) -> bool:
        rules = query.rules(state, key, t)
        return rules["clean_premium"] > 0 or bool(rules["clean_only"]) or rules["cap_price"] < PRICE.high

    return MarketTerms(any(ranks(k) for k in sorted(members)), bool(genesis.params.cap_on_fills))


def unsold(
    offers: dict[bytes, tuple[int, int, bool, int]], asked_by: dict[bytes, int], tolerance_kwh: float
) -> dict[str, float]:
    """What each seller left unsold this round (kWh, by hex key; offered minus asked, public): a short buyer's
    extra request is sent next round only there (`make_bid`'s `spare`)."""
    left = {s: (q - asked_by.get(s, 0)) / 1000 for s, (_, q, _, _) in offers.items()}
    return {s.hex(): kwh for s, kwh in left.items() if kwh > tolerance_kwh}

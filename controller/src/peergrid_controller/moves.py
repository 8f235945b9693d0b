"""One MGMC's moves in the iterative bargaining: what a participant decides from what it can see.

Public API shared by the in-memory bargaining (`bargaining.py`) and the edge's bargaining on the MGMC chain:
- `interval_price(net_at, lo, hi)` — the interval's indicative price from quantities alone (a call: MGMCs answer
  posted prices with net quantities, bisection on the chain's tick), and `role(participant, price)` from it;
- `open_seller` and `adjust` — a seller's price: start, then raise when sold out, lower when unsold (never
  below what still covers what it sells, never outside its bounds, the upper one `seller_ceiling`);
- `make_offer` and `make_bid` — the moves themselves (an offer of zero kWh is a withdrawal);
- `ExpectedFill` — the fill per seller a buyer counts on, smoothed across rounds from public positions only.
Individual rationality: a seller's lowest price is the highest of its floor, the DSO's feed-in price and its own
first unit's cost; a buyer asks only what its own curve (built with the DSO at retail beside it) still wants at
the offer's effective price. With a curve whose future has the DSO only, no accepted move leaves the MG worse off
than its conventional alternative. Pure and deterministic: no clocks, no randomness, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from peergrid_controller.curve import ResponseCurve
from peergrid_controller.market import MAX_REQUESTS, Bid, Offer, acceptable, price_tick, quantize
from peergrid_controller.model import ContractRules

__all__ = [
    "MAX_REQUESTS",
    "BargainingConfig",
    "ExpectedFill",
    "Participant",
    "SellerState",
    "adjust",
    "interval_price",
    "make_bid",
    "make_offer",
    "open_seller",
    "price_band",
    "prices_kept",
    "role",
    "role_at_mid",
    "same_requests",
    "seller_ceiling",
    "served",
    "settled_fills",
    "split_roles",
]


@dataclass(frozen=True)
class Participant:
    name: str
    curve: ResponseCurve  # private: never leaves the MGMC
    rules: ContractRules  # public: the contract enforces them
    clean: bool  # its energy for sale is renewable-backed this interval


@dataclass(frozen=True)
class BargainingConfig:
    price_tolerance: float = 0.001  # one price tick on the chain
    quantity_tolerance: float = 0.01  # kWh
    max_rounds: int = 50
    price_band: float = 0.002  # offers this close in price are one level to a buyer
    patience: int = 8  # rounds after which buyers widen that band by one more tick
    settle_after: int = 25  # rounds after which a seller that sells all it offers no longer raises its price


@dataclass
class SellerState:
    """A seller's private bargaining state: its posted price and what the responses taught it."""

    price: float
    step: float
    lower: float
    upper: float
    sold_out_at: float | None = None  # highest price at which it last sold out (excess demand)
    unsold_at: float | None = None  # lowest price at which it last sold less than it offered
    sold: dict[float, float] = field(default_factory=dict)  # kWh asked at the bracket's ends
    rounds: int = 0  # responses seen so far
    seen: dict[float, int] = field(default_factory=dict)  # the response (`rounds`) each `sold` figure is from
    tried_again: set[float] = field(default_factory=set)  # upper ends of a bracket tried once more


def capped(p: Participant, price: float) -> float:
    """Net export the participant would offer (+) or ask (-) at `price`, within its owner's quantity limit."""
    q = p.curve.at(price)
    limit = p.rules.max_quantity_kwh
    return max(min(q, limit), -limit)


def interval_price(net_at: Callable[[float], float], lo: float, hi: float, tick: float = 0.001) -> float:
    """The lowest price on the tick grid of [lo, hi] at which the summed net export is >= 0 (hi when none).

    `net_at` sums the participants' answers to one posted price; the sum never falls as the price rises, so
    bisection needs about log2((hi - lo) / tick) answers. Only quantities at posted prices are revealed.
    """
    a, b = round(lo / tick), round(hi / tick)
    if b <= a or net_at(a * tick) >= 0:
        return price_tick(a * tick)
    if net_at(b * tick) < 0:
        return price_tick(b * tick)
    while b - a > 1:  # net(a) < 0 <= net(b)
        m = (a + b) // 2
        if net_at(m * tick) >= 0:
            b = m
        else:
            a = m
    return price_tick(b * tick)


def role(p: Participant, price: float, tolerance: float = 0.0) -> str:
    """'seller', 'buyer' or 'neither' at the interval's price."""
    q = capped(p, price)
    if q > tolerance:
        return "seller"
    if q < -tolerance:
        return "buyer"
    return "neither"


def split_roles(
    participants: Sequence[Participant], feed_in: float, retail: float, price: float | None = None
) -> tuple[list[Participant], list[Participant]]:
    """Sellers and buyers at `price` (default: the mid price), sorted by name."""
    at = (feed_in + retail) / 2 if price is None else price
    sellers, buyers = [], []
    for p in sorted(participants, key=lambda p: p.name):
        r = role(p, at)
        if r == "seller":
            sellers.append(p)
        elif r == "buyer":
            buyers.append(p)
    return sellers, buyers


def open_seller(
    seller: Participant, feed_in: float, upper: float, cfg: BargainingConfig, start: float | None = None
) -> SellerState:
    """A seller's bounds and first price: never below its floor, feed-in or first unit's cost (IR)."""
    first_unit = seller.curve.marginal_price(cfg.quantity_tolerance)
    lower = min(max(seller.rules.floor_price, first_unit, feed_in), upper)
    if start is None:
        return SellerState(price=(lower + upper) / 2, step=(upper - lower) / 4, lower=lower, upper=upper)
    price = min(max(price_tick(start), lower), upper)
    return SellerState(price=price, step=2 * cfg.price_tolerance, lower=lower, upper=upper)


def seller_ceiling(seller: Participant, retail: float, paid: float) -> float:
    """The highest price `seller` asks in an interval: the DSO's retail price (the highest of the MGs'), at
    which a buyer is at best indifferent between a peer and the DSO; past it by `paid`, the largest clean
    premium among the interval's buyers, only when its own energy is clean, since nobody else buys above
    retail; never below its own floor, where the contract refuses an offer (above the ceiling it offers at
    its floor and sells nothing). U4 F3: with the ceiling at retail + the largest premium of any MG, a
    seller's own premium included, sellers opening at the previous price in the lab's two rounds stepped
    past retail (0.220 -> 0.222 at interval 56) with no buyer to pay it, and all six MGs traded nothing."""
    return max(retail + (paid if seller.clean else 0.0), seller.rules.floor_price)


def make_offer(seller: Participant, price: float, interval: int) -> Offer:
    quantity = min(seller.curve.supply(price), seller.rules.max_quantity_kwh)
    return Offer(seller.name, interval, price_tick(price), quantize(quantity), seller.clean)


def make_bid(
    buyer: Participant,
    offers: Sequence[Offer],
    interval: int,
    band: float = 0.0,
    fill: Mapping[str, float] | None = None,
    spare: Mapping[str, float] | None = None,
    fills_capped: bool = False,
    mine: Mapping[str, float] | None = None,
) -> Bid:
    """Follower's best response: cheapest effective price first, up to the demand at that price.

    Offers whose effective prices lie within `band` of each other count as one price level, and the demand
    at that level is spread over them in proportion to what each offers: otherwise every buyer would crowd
    the seller one tick cheaper, who must ration, while the next one's energy goes unsold. `fill` is the
    share of requests each seller could serve last round (public: from the chain's positions); the buyer
    counts on getting only that share and asks the next level for the rest. A level is priced at its dearest
    offer, so no request is ever made at a price the buyer's own curve refuses, and the expected fills never
    exceed the demand at that price (IR). The owner's maximum bounds the sum of the requests, as the chain
    checks it.

    With `spare` (what each seller left unsold last round, public too; empty before any round) two
    refinements for buyers whose rules rank offers apart: a level never reaches a price at which the buyer
    wants nothing more (it would be refused whole, its cheaper offers with it), and what the level's rationed
    sellers will withhold is asked of its sellers that served in full and left energy unsold. Without it the
    moves are the ones before these refinements (rule-free markets, and an agent that does not pass it).
    `fills_capped` (the venue's `cap_on_fills`): the owner's maximum bounds the expected fills instead of the
    requests, which may then ask rationed sellers for more than the maximum in all.
    `mine` (this buyer's own requests last round, with `spare`): such a seller is asked for this buyer's part
    of its spare (in proportion to what this buyer asked of it) on top of what this buyer asked of it before,
    so the buyers that top up take the spare between them and keep it while the seller serves in full;
    without it (None) the top-up may ask such a seller for all of its offer, as before.
    """
    rules = buyer.rules

    def effective(o: Offer) -> float:
        return o.price - (rules.clean_premium if o.clean else 0.0)

    usable = [o for o in offers if o.seller != buyer.name and acceptable(o, rules) and o.quantity_kwh > 0]
    usable.sort(key=lambda o: (effective(o), o.seller))
    bought = requested = 0.0
    requests: dict[str, float] = {}
    k = 0
    while k < len(usable):
        level = [usable[k]]
        while (
            k + len(level) < len(usable) and effective(usable[k + len(level)]) <= effective(usable[k]) + band
        ):
            level.append(usable[k + len(level)])
        # priced at its dearest offer, a level would be refused whole when that price is above what the
        # buyer still wants, its cheaper offers with it: the dearest go to the next level instead (measured:
        # a buyer left short with energy unsold a tick above its rationed sellers, on an owner-rules feeder)
        while spare is not None and len(level) > 1 and buyer.curve.demand(effective(level[-1])) <= bought:
            level.pop()
        k += len(level)
        # the chain takes at most MAX_REQUESTS sellers per bid: keep the largest offers of a crowded level
        room = MAX_REQUESTS - len(requests)
        if room <= 0:
            break
        if len(level) > room:
            level = sorted(level, key=lambda o: (-o.quantity_kwh, o.seller))[:room]
        worst = max(effective(o) for o in level)
        # expected fills count against the demand; the requests themselves against the owner's limit, unless
        # the venue caps what a buyer is allocated (`fills_capped`): then the expected fills count against it
        want = buyer.curve.demand(worst) - bought
        limit_left = rules.max_quantity_kwh - requested
        if fills_capped:
            want = min(want, rules.max_quantity_kwh - bought)
            limit_left = math.inf
        available = sum(o.quantity_kwh for o in level)
        if want <= 0 or limit_left <= 0 or available <= 0:
            continue
        share = min(want / available, limit_left / available, 1.0)
        asks = {o.seller: quantize(o.quantity_kwh * share) for o in level}
        expected = sum(q * _fill(fill, s) for s, q in asks.items())
        # what the level's rationed sellers will withhold, asked of its sellers that served every request
        # last round (their fill is 1), up to what they offer: otherwise the buyer ends short while energy
        # at this price stays unsold. Rationed sellers are asked no more than their share, so the crowd
        # does not pile onto them (measured: scaling every request up broke convergence)
        short = min(want - expected, limit_left - sum(asks.values()))
        if mine is not None and spare is not None:
            # only the spare is there to take, and every short buyer at the level sees it: a top-up of the
            # seller's whole offer asked past its spare, rationed it, and next round (no spare, fill below 1)
            # the buyer asked its share alone, so it had spare again: a two-round cycle to the round cap
            # (measured: the 20-MG owner-rules day, strict, interval 32; off, interval 32 in the same cycle
            # ended at round 50 by chance). Each buyer takes its part of the spare, in proportion to what it
            # asked of the seller, and what it took before stays its own to ask while the seller serves in
            # full, so the top-ups fill the spare between them and then stand.
            serving: dict[str, float] = {}
            for o in level:
                unsold, had = spare.get(o.seller, 0.0), mine.get(o.seller, 0.0)
                asked = o.quantity_kwh - unsold  # by every buyer last round (public: offered minus unsold)
                part = unsold * min(had / asked, 1.0) if asked > 1e-9 else unsold
                left = part + had - asks[o.seller]
                if _fill(fill, o.seller) >= 1.0 and left > 1e-9:
                    serving[o.seller] = min(o.quantity_kwh - asks[o.seller], left)
        else:
            serving = {
                o.seller: o.quantity_kwh - asks[o.seller]
                for o in level
                if spare is not None and _fill(fill, o.seller) >= 1.0 and spare.get(o.seller, 0.0) > 0.0
            }
        free = sum(serving.values())
        if short > 0 and free > 0:
            top_up = min(short / free, 1.0)
            for seller, left in serving.items():
                asks[seller] = quantize(asks[seller] + left * top_up)
        for seller, q in asks.items():
            if q > 0:
                requests[seller] = q
                requested += q
                bought += q * _fill(fill, seller)
    return Bid(buyer.name, interval, tuple(sorted(requests.items())))


def price_band(number: int, cfg: BargainingConfig) -> float:
    """How far apart in effective price offers may be and still count as one level to a buyer in round
    `number` (from 1): buyers widen it by a tick every `patience` rounds, since sellers a tick or two apart
    would otherwise trade the whole demand back and forth (Bertrand-Edgeworth cycling)."""
    return cfg.price_band + cfg.price_tolerance * (number // cfg.patience)


def same_requests(a: Bid, b: Bid, cfg: BargainingConfig) -> bool:
    """Two bids ask every seller for the same quantity, within the quantity tolerance."""
    left, right = dict(a.requests), dict(b.requests)
    return all(
        abs(left.get(s, 0.0) - right.get(s, 0.0)) <= cfg.quantity_tolerance
        for s in left.keys() | right.keys()
    )


def prices_kept(before: Mapping[str, float], after: Mapping[str, float]) -> bool:
    """Every seller posts the same price (per kWh) in the later round as in the earlier one, and none joined or
    left: since `adjust` is content exactly when the posted price stays on its tick, this is how anyone who
    sees only the offers tells that every seller was content (`ExpectedFill.observe`'s `content`)."""
    return before.keys() == after.keys() and all(
        price_tick(after[s]) == price_tick(p) for s, p in before.items()
    )


def _fill(fill: Mapping[str, float] | None, seller: str) -> float:
    return fill.get(seller, 1.0) if fill else 1.0


@dataclass
class ExpectedFill:
    """The share of its requests a buyer expects each seller to serve (`make_bid`'s `fill`), across rounds.

    Public inputs only: each round's offered and asked kWh per seller, and whether every seller kept its price
    for the next round (`adjust` is content exactly when the posted price stays on the same tick, so anyone
    can tell it from two rounds' offers). Acting on last round's fill alone makes the crowd of buyers swing
    from one seller to the next and back while prices move (a cobweb), so the estimate is the mean of the
    previous one (1 before any) and the fill just seen; once every seller has been content for two rounds in
    a row, prices stand still and buyers count on the fill they actually got. Every buyer that observes the
    same rounds holds the same estimate (the in-memory bargaining and the edge agents on the chain alike).
    """

    share: dict[str, float] = field(default_factory=dict)
    quiet: int = 0  # rounds in a row in which every seller was content

    def observe(
        self, offered: Mapping[str, float], asked: Mapping[str, float], content: bool
    ) -> dict[str, float]:
        """Take in one round (kWh offered and asked per seller that posted) and return the estimate to
        bid with next round. `content`: no seller moves its price after this round."""
        self.quiet = self.quiet + 1 if content else 0
        exact = served(offered, asked)
        if self.quiet >= 2:
            self.share = exact
        else:
            self.share = {s: 0.5 * self.share.get(s, 1.0) + 0.5 * f for s, f in exact.items()}
        return self.share


def served(offered: Mapping[str, float], asked: Mapping[str, float]) -> dict[str, float]:
    """The share of its requests each seller served in one round (kWh offered and asked per seller): what
    `ExpectedFill` settles on once prices stand still."""
    return {s: min(1.0, q / asked[s]) if asked.get(s, 0.0) > 0 else 1.0 for s, q in offered.items()}


def settled_fills(
    spare: Mapping[str, float] | None,
    expected: ExpectedFill,
    seen: tuple[Mapping[str, float], Mapping[str, float]] | None,
) -> dict[str, float] | None:
    """The fills a buyer's estimate will settle on (`served`, last round's offered and asked: what
    `ExpectedFill` counts on once prices have stood still for two rounds), where a buyer's bid must also stand
    on them before the bargaining stops: with owner rules (`spare` not None) while prices have stood still for
    fewer than two rounds. None where the estimate itself is all it must stand on.

    M18 (28d79d6): a seller rationed in an early round keeps a smoothed fill below 1 (0.98) though it has
    left energy unsold since, and `make_bid` asks only a seller whose fill is 1 for a short buyer's rest; the
    market that stopped there left premium buyers short beside unsold clean energy (the 20-MG owner-rules
    day's interval 72: mg016 short by 2.52 kWh, taker gain 0.068, not stable). `bargain` and the edge's
    chain bargaining (tests/edge/test_e13_settled_fill.py) both stop on it."""
    if spare is None or expected.quiet >= 2 or seen is None:
        return None
    return served(*seen)


def adjust(
    state: SellerState, seller: Participant, offered: float, asked: float, cfg: BargainingConfig
) -> bool:
    """Move the seller's price for the next round; True when it is content (no move it still wants).

    Steps until the response brackets the price (sold out below, unsold above), then bisection on the chain's
    price tick; once the bracket is one tick wide it posts the end that pays it more. A bracket that later
    observations contradict is dropped. Steps double while the response keeps pointing the same way. After
    `cfg.settle_after` responses it only ever lowers its price (a sold-out seller is content), which ends
    cycles among near-equal sellers. A seller that settled on the lower end of a one-tick bracket, still sold
    out there with buyers asking more than it offers, tries the upper end once more if its curve supplies
    more there and what it was asked there is older than its last response but one (it then settles on
    the fresh figure).
    """
    tick, tol_q, price = cfg.price_tolerance, cfg.quantity_tolerance, state.price
    # the contract lets nobody ask for more than is offered, so "sold out" is how excess demand shows
    sold_out = offered > tol_q and asked >= offered - tol_q
    state.rounds += 1
    if sold_out:
        # after `settle_after` rounds a seller that sells all it offers stays put: prices then only fall,
        # so near-equal sellers can no longer trade places with the buyers for ever (measured: 100 MGs and
        # owner-rule feeders hit the 50-round cap with sellers a tick or two apart swapping the crowd)
        if price >= state.upper - 1e-12 or state.rounds > cfg.settle_after:
            return True
        if state.sold_out_at is not None and state.unsold_at is None and state.sold_out_at < price:
            state.step *= 2
        state.sold_out_at = price
        state.sold[price] = offered
        state.seen[price] = state.rounds
        if state.unsold_at is not None and state.unsold_at <= price:
            state.unsold_at = None
    elif asked < offered - tol_q:
        # lower only while the lower price still covers what buyers take now
        need = min(asked, offered) - tol_q
        if price <= state.lower + 1e-12 or seller.curve.supply(max(price - tick, state.lower)) < need:
            return True
        if state.unsold_at is not None and state.sold_out_at is None and state.unsold_at > price:
            state.step *= 2
        state.unsold_at = price
        state.sold[price] = asked
        state.seen[price] = state.rounds
        if state.sold_out_at is not None and state.sold_out_at >= price:
            state.sold_out_at = None
    else:
        return True
    lo, hi = state.sold_out_at, state.unsold_at
    if lo is not None and hi is not None:
        if hi - lo <= tick + 1e-9:
            # settle on the end that pays the seller more (ties: the upper end, which serves all it is asked)
            def payoff(p: float) -> float:
                q = state.sold.get(p, 0.0)
                return p * q - seller.curve.cost_of_export(q)

            state.price = lo if payoff(lo) > payoff(hi) + 1e-9 else hi
            # what it was asked at the upper end may be from rounds ago, when its rivals were cheaper and the
            # buyers took them first; sold out at the lower end since, buyers asking more than it offers, a
            # seller whose curve supplies more one tick up tries that tick once more before it settles
            # (measured: the 20-MG rule-free day, guard off, 07:30-07:45: genset and battery MGs a tick below
            # their step, content on a response 3-6 rounds old, the buyers 13.6 kWh short in interval 30)
            if (
                state.price == lo
                and sold_out
                and asked > offered + tol_q
                and seller.curve.supply(hi) > offered + tol_q
                and hi not in state.tried_again
                and state.seen.get(hi, state.rounds) < state.rounds - 1
            ):
                state.tried_again.add(hi)
                state.price = hi
            return price_tick(price) == price_tick(state.price)
        target = price_tick((lo + hi) / 2)
        target = min(max(target, lo + tick), hi - tick)
    else:
        target = price_tick(price + state.step if sold_out else price - state.step)
    if not sold_out:
        need = min(asked, offered) - tol_q
        while seller.curve.supply(max(target, state.lower)) < need and price - target > tick:
            target = price_tick((target + price) / 2)
    state.price = min(max(target, state.lower), state.upper)
    return price_tick(state.price) == price_tick(price)


def role_at_mid(p: Participant, feed_in: float, retail: float) -> str:
    """A participant's role when no interval price call is available (the mid price between the DSO's
    feed-in and retail prices stands in for it)."""
    return role(p, (feed_in + retail) / 2)

"""The MGMC's moves in the iterative bargaining, played on the MGMC chain (split from `trader.py`).

Promises: `bargain(agent, t, ...)` joins interval t (an `offer` for round 1, or an empty `bid` for round 0),
then per round lets sellers `move` (`peergrid_controller.moves.adjust`) and buyers `move`
(`moves.make_bid`), each phase waiting until every expected peer's move of that round is in a FINAL block,
so every MGMC decides from the same chain state; a round that repeats the previous one ends it (or
`max_rounds`); then `close_interval` (`chain_closing.py`) has the lowest-keyed seller submit `trade` (anyone after a timeout;
the lowest buyer when every seller dropped out), each waiting until the chain takes one (the genesis' close rule:
with `close_quiet_ms` once the book stood still, so it is never refused for closing early). A peer that misses a phase is left out of the interval's later
phases. Returns the public price history per round. `rebargain` plays more rounds of a reopened interval
(`market.reopen` by the DSO, design step 6) the same way; the rest of the DSO's loop (its contracts, the
revised injection) is `dso_answers.py`. Reads only public positions from the chain; never reveals the curve.
A buyer moves as `peergrid_controller.bargaining.bargain` has it move (`market_terms`): with what each seller
left unsold last round (`spare`, offered minus asked on the chain) when some member's owner rules (public, on the
chain) rank offers apart, and with its maximum capping its expected fills rather than its requests when the
chain's genesis says the contract caps allocations (`cap_on_fills`); an agent without them kept the moves and
the instability those fixes removed. It counts on the fill each seller gave as `bargain` does, smoothed across
rounds (`moves.ExpectedFill`; "every seller content" is read off the chain as "every posted price kept"), and
a buyer whose last bid still stands (prices kept, same asks in last round's band) posts it again unchanged, so
a round that repeats the last is `bargain`'s stop one round later. With owner rules a bid stands only if it
also stands on the fills the estimate settles on (`settled_fills`, as `bargain` stops since M18); a buyer whose
bid stands on the estimate alone and whose new bid would repeat its last asks with the settled fills at once:
`bargain` repeats that round before it asks so, and on the chain a repeat ends the interval, buyers short beside
unsold energy (tests/edge/test_e13_settled_fill.py). From there the edge plays `bargain`'s rounds a round early,
its band a round narrower where the band widens in between; where another buyer still moves in that round,
`bargain`'s buyer does not ask so yet and the edge parts from it (5-MG seed 14: one round more, the same
trades). Opened at the same price (`opening`), the rounds are mostly `bargain`'s move for move, not always: the
re-post test uses last round's band, so a bid still standing there is posted again in a round where
`bargain`'s buyer, its band widened, bids anew. The hand-built
case and seeded 5-MG owner-rules markets 1-3 match (tests/edge/test_edge_owner_rules.py; 8 of seeds 4-12 in
notes/review5.md F6); seed 9 parts at round 16 as the buyers' band widens (27 rounds against 23), and still
stops on a repeated round with a stable outcome (that test; docs/market.md). With no price call on the chain
the trader opens sellers at the previous interval's agreed price (`opening_price`, public), within the
interval's [feed-in, retail]; a seller asks past retail only where the interval's buyers include a clean premium
that pays for its clean energy (`seller_ceiling`).
The opening offer is cut to the connection capacity standing as it is built, and one refused because a capacity
landed ahead of it is offered once more at that capacity (`standing`, `_open`; the MG sat the interval out).
A buyer that owes (`debts.barring_debt`: the chain refuses a debtor's purchases) joins with its empty bid and
moves asking nothing, logging why once per interval; a move refused while it owes is posted again asking
nothing. Either way every peer's barrier sees its move and no phase waits a timeout out for it; it sells as
ever (a sale's payment pays its debts first) and buys again once it is paid off.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from peergrid_controller.market import Bid, Offer, micro_per_wh, wh
from peergrid_controller.moves import (  # the controller's public per-MGMC moves
    ExpectedFill,
    Participant,
    SellerState,
    adjust,
    make_bid,
    make_offer,
    open_seller,
    price_band,
    prices_kept,
    same_requests,
    seller_ceiling,
    settled_fills,
)
from peergrid_edge import debts

# `x as x`: the names moved there stay importable here, where other modules and tests import them
from peergrid_edge.chain_book import MarketTerms as MarketTerms
from peergrid_edge.chain_book import bids_on_chain as bids_on_chain
from peergrid_edge.chain_book import buyers_premium
from peergrid_edge.chain_book import market_terms as market_terms
from peergrid_edge.chain_book import offers_on_chain as offers_on_chain
from peergrid_edge.chain_book import opening_price as opening_price
from peergrid_edge.chain_book import position as position
from peergrid_edge.chain_book import previous_price as previous_price
from peergrid_edge.chain_book import unsold as unsold
from peergrid_edge.chain_closing import close_interval
from peergrid_edge.connection import connected_rules
from peergrid_ledger import query
from peergrid_ledger.contracts import market as contract

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent

log = logging.getLogger("peergrid.edge.trader")


def _bounded(seller_state: SellerState, me: Participant, feed_in: float, ceiling: float, cfg: Any) -> None:
    """`seller_state`'s bounds set to `ceiling` (`seller_ceiling`), its posted price kept: once the interval's
    buyers are known, a clean seller may step past retail for the premium one of them pays."""
    bounds = open_seller(me, feed_in, ceiling, cfg, seller_state.price)
    seller_state.lower, seller_state.upper = bounds.lower, bounds.upper


async def _barrier(agent: MarketAgent, t: int, side: str, r: int, expected: set[bytes]) -> set[bytes]:
    """Wait for every expected peer's move of round r in a final block; those that missed the phase are
    left out of the interval's later phases (a dead MGMC costs one phase timeout, not one per phase)."""

    def moved(state: Any) -> set[bytes]:
        positions = offers_on_chain(state, t) if side == "sellers" else bids_on_chain(state, t)
        return {k for k in expected if k in positions and positions[k][-1] >= r}

    await agent.ledger.wait_for("mgmc", lambda state: moved(state) == expected, agent.s.phase_timeout_s)
    return moved(agent.ledger.state("mgmc")) | {agent.anonym.public} & expected


async def bargain(
    agent: MarketAgent,
    t: int,
    me: Participant,
    role: str,
    feed_in: float,
    retail: float,
    opening: float | None = None,
) -> list[dict[str, Any]]:
    """`opening`: where a seller opens, two ticks a step: the trader passes the previous interval's price
    (`opening_price`); at the interval's price (`moves.interval_price`, what `bargaining.bargain` opens at) the
    rounds are the simulation's move for move. None: the middle of its bounds, a quarter of them a step.
    A seller opens within [its lower bound, retail] (`seller_ceiling` with no premium: its offer is its join,
    before any buyer is known) and moves past retail only once the interval's buyers include one whose clean
    premium pays for its clean energy: its ceiling is its buyers' premium (`buyers_premium`), not the
    feeder's."""
    agent.phase = "join"
    cfg = agent.cfg
    seller_state: SellerState | None = None
    me = standing(agent, me, t)  # a capacity the DSO posted since the trader read its rules (`standing`)
    if role == "seller":
        seller_state = open_seller(me, feed_in, seller_ceiling(me, retail, 0.0), cfg, opening)
        if wh(make_offer(me, seller_state.price, t).quantity_kwh) <= 0:
            role, seller_state = "neither", None
        else:
            me = await _open(agent, t, me, seller_state.price)
    if role != "seller":
        await _join(agent, t, "bid", {"interval": t, "round": 0, "demands": []})
    everyone = {a.key for a in agent.ledger.replicas["mgmc"].app.genesis.accounts if "anonym" in a.roles}

    def joined(state: Any) -> bool:
        members = set(contract.members(state, t, "sellers")) | set(contract.members(state, t, "buyers"))
        return everyone <= members

    await agent.ledger.wait_for("mgmc", joined, agent.s.phase_timeout_s)
    state = agent.ledger.state("mgmc")
    sellers = set(contract.members(state, t, "sellers"))
    buyers = set(contract.members(state, t, "buyers"))
    # from its join on the chain takes no newer capacity for t: the rounds move within the one standing now
    # (a buyer's empty bid joined whatever the capacity; its moves' totals are checked against it)
    me = standing(agent, me, t)
    if seller_state is not None:
        _bounded(seller_state, me, feed_in, seller_ceiling(me, retail, buyers_premium(state, t, buyers)), cfg)
    return await _rounds(agent, t, me, seller_state, sellers, buyers, 1)


def standing(agent: MarketAgent, me: Participant, t: int) -> Participant:
    """`me` with its rules cut to the connection capacity standing for its trading key in interval t on the chain
    now (`connection.connected_rules`): the trader cut them where it read its rules, before its solves, and the
    DSO may post a capacity since (the chain refuses an offer, or a buyer's move total, above it). Only ever
    tighter: a capacity raised meanwhile is met at the figure read first. `me` itself where nothing changed."""
    rules = connected_rules(me.rules, agent.ledger.state("mgmc"), agent.anonym.public, t)
    return me if rules is me.rules else replace(me, rules=rules)


async def _open(agent: MarketAgent, t: int, me: Participant, price: float) -> Participant:
    """The seller's opening offer of interval t at `price`, cut to the capacity standing as it is built. One the
    chain refused because a capacity landed ahead of it in the chain's order (the offer above it; the chain
    takes a newer capacity for t only until this MG's first position there) is offered once more, cut to that
    capacity, and never again: a second refusal is `_join`'s warning, as any first move that did not land.
    Returns the participant the interval's rounds move with."""

    def body(offer: Offer) -> dict[str, Any]:
        return {"interval": t, "round": 1, "price": micro_per_wh(offer.price), "quantity": wh(offer.quantity_kwh),
                "clean": offer.clean}  # fmt: skip

    first = body(make_offer(me, price, t))
    if await agent._submit("mgmc", agent.anonym, "offer", first):
        return me
    cut = standing(agent, me, t)
    again = body(make_offer(cut, price, t))
    # the chain's own rule read on its state: refused for the capacity where one now stands below the offer;
    # any other refusal is not the capacity's (offered again, the same offer would meet it again)
    if not 0 < again["quantity"] < first["quantity"]:
        _not_joined(t, "offer")
        return me
    log.warning(
        "interval %d: this MG's offer of %d Wh was refused above the connection capacity of %.0f Wh the DSO "
        "posted meanwhile: offered once more at %d Wh",
        t, first["quantity"], cut.rules.max_quantity_kwh * 1000, again["quantity"],
    )  # fmt: skip
    await _join(agent, t, "offer", again)
    return cut


async def _join(agent: MarketAgent, t: int, kind: str, body: dict[str, Any]) -> None:
    """This MG's first move of interval t; one that did not land (the chain's reason is the replica's warning
    just before) is logged by name (`_not_joined`)."""
    if not await agent._submit("mgmc", agent.anonym, kind, body):
        _not_joined(t, kind)


def _not_joined(t: int, kind: str) -> None:
    """The MG sits the interval out and its peers' join waits for it (review19 F5: it went unsaid)."""
    log.warning(
        "interval %d: this MG's %s (its first move) did not land: unless it lands late it sits the interval out",
        t,
        kind,
    )


async def rebargain(
    agent: MarketAgent, t: int, me: Participant, feed_in: float, retail: float
) -> list[dict[str, Any]]:
    """Bargain again in interval t after a `market.reopen` in a FINAL block: the same sides as before (the
    contract keeps them), each from its standing position, rounds numbered on from the reopening's `round`
    (the same number for every MGMC), then the interval closes again. `me` carries this MG's curve now — held
    within its DSO limit when it has one (`peergrid_controller.rebargain`)."""
    agent.phase = "rebargain"
    state = agent.ledger.state("mgmc")
    reopened = contract.reopening(state, t)
    assert reopened is not None and not contract.closed(state, t), "rebargain needs a reopened interval"
    sellers = set(contract.members(state, t, "sellers"))
    buyers = set(contract.members(state, t, "buyers"))
    seller_state: SellerState | None = None
    standing = contract.offer(state, t, agent.anonym.public)
    if standing is not None:
        ceiling = seller_ceiling(me, retail, buyers_premium(state, t, buyers))
        seller_state = open_seller(me, feed_in, ceiling, agent.cfg, standing["price"] / 1000)
    return await _rounds(agent, t, me, seller_state, sellers, buyers, int(reopened["round"]) + 1)


async def _rounds(
    agent: MarketAgent,
    t: int,
    me: Participant,
    seller_state: SellerState | None,
    sellers: set[bytes],
    buyers: set[bytes],
    first: int,
) -> list[dict[str, Any]]:
    """Rounds `first`, `first + 1`, ... (at most `max_rounds`): sellers move, barrier, buyers move, barrier;
    until a round repeats the previous one; then the interval is closed. Returns the price history."""
    cfg = agent.cfg
    history: list[dict[str, Any]] = []
    prev_offers: dict[bytes, tuple[int, int, bool, int]] | None = None
    prev_bids: dict[bytes, tuple[tuple[tuple[bytes, int], ...], int]] | None = None
    # the fill each seller is expected to serve, smoothed as `bargaining.bargain` smooths it: a round's
    # offered and asked, taken in once the next round's offers show whether every seller kept its price
    expected = ExpectedFill()
    fill: dict[str, float] = {}
    seen: tuple[dict[str, float], dict[str, float]] | None = None
    posted: Bid | None = None  # this buyer's last bid
    prev_prices: dict[str, float] | None = None
    # read once the interval has sellers (nothing to bid on otherwise): every MGMC reads the same members'
    # rules and the same genesis, so all move by the same terms
    genesis = agent.ledger.replicas["mgmc"].app.genesis if sellers else None  # no sellers: no round is played
    terms = (
        market_terms(agent.ledger.state("mgmc"), genesis, t, sellers | buyers)
        if sellers
        else MarketTerms(False, False)
    )
    spare: dict[str, float] | None = {} if terms.ranked_apart else None
    for r in range(first, first + cfg.max_rounds):
        agent.phase = f"round {r}"
        if not sellers:
            break
        if r > 1 and seller_state is not None:
            # every seller moves in every round after the first (its opening offer is round 1); the first
            # round after a reopening posts the new curve's quantity at the standing price
            if r > first and prev_offers is not None and prev_bids is not None:
                mine = prev_offers.get(agent.anonym.public)
                offered = mine[1] / 1000 if mine else 0.0
                asked = sum(q for dem, _ in prev_bids.values() for s, q in dem if s == agent.anonym.public)
                adjust(seller_state, me, offered, asked / 1000, cfg)
            offer = make_offer(me, seller_state.price, t)
            await agent._submit("mgmc", agent.anonym, "move", {
                "interval": t, "round": r, "price": micro_per_wh(offer.price),
                "quantity": wh(offer.quantity_kwh)})  # fmt: skip
        sellers = await _barrier(agent, t, "sellers", r, sellers)
        offers = offers_on_chain(agent.ledger.state("mgmc"), t)
        prices = {s.hex(): p / 1000 for s, (p, _, _, _) in offers.items()}
        held = prev_prices is not None and prices_kept(prev_prices, prices)
        if seen is not None:
            fill = expected.observe(*seen, held)
        owed = debts.barring_debt(agent.ledger.state("mgmc"), genesis, agent.anonym.public)
        if agent.anonym.public in buyers and owed:
            # the chain refuses a debtor's purchase: it asks for nothing (an empty move, accepted), so the
            # round's barrier does not wait for it; the DSO covers what it would have bought
            debts.note(agent, t, owed)
            posted = None
            await _move_demands(agent, t, r, [])
        elif agent.anonym.public in buyers:
            public = [Offer(s.hex(), t, p / 1000, q / 1000, c) for s, (p, q, c, _) in offers.items()]
            # `bargain` stops once no seller moves and no buyer would ask differently in the round's band
            # (with owner rules, nor with the fills its estimate settles on: `settled_fills`); here that shows
            # as a round that repeats the last one, so a buyer whose last bid still stands (prices held, same
            # asks in last round's band) posts it again as it was
            # what this buyer asked last round: a short buyer's extra request takes its part of a seller's
            # spare and keeps what it took (`make_bid`'s `mine`, as `bargain` passes it)
            asked_before = None if spare is None else dict(posted.requests) if posted is not None else {}
            bid = None
            settled: dict[str, float] | None = None
            if held and posted is not None:
                band = price_band(r - first, cfg)
                again = make_bid(me, public, t, band, fill, spare, terms.fills_capped, asked_before)
                if same_requests(again, posted, cfg):
                    settled = settled_fills(spare, expected, seen)
                    if settled is None or same_requests(
                        make_bid(me, public, t, band, settled, spare, terms.fills_capped, asked_before),
                        posted,
                        cfg,
                    ):
                        bid, settled = posted, None
            if bid is None:
                band = price_band(r - first + 1, cfg)
                bid = make_bid(me, public, t, band, fill, spare, terms.fills_capped, asked_before)
                if settled is not None and posted is not None and _wanted(bid) == _wanted(posted):
                    # its bid stands on the smoothed estimate, not on the settled one: `bargain` plays this
                    # bid once more (a round that repeats, the chain's stop) and asks with the settled fills
                    # only the round after; here the buyer makes that move now
                    bid = make_bid(me, public, t, band, settled, spare, terms.fills_capped, asked_before)
            posted = bid
            wanted = _wanted(bid)
            demands = [{"seller": seller, "quantity": quantity} for seller, quantity in wanted]
            if not await _move_demands(agent, t, r, demands):
                posted = None  # not on the chain: the next round bids anew
        buyers = await _barrier(agent, t, "buyers", r, buyers)
        bids = bids_on_chain(agent.ledger.state("mgmc"), t)
        asked_by: dict[bytes, int] = {}
        for dem, _ in bids.values():
            for s, q in dem:
                asked_by[s] = asked_by.get(s, 0) + q
        seen = ({s.hex(): q / 1000 for s, (_, q, _, _) in offers.items()},
                {s.hex(): q / 1000 for s, q in asked_by.items()})  # fmt: skip
        if spare is not None:
            spare = unsold(offers, asked_by, cfg.quantity_tolerance)
        history.append(
            {
                "round": r,
                "prices": {s.hex()[:8]: p / 1000 for s, (p, q, _, _) in offers.items()},
                "offered_kwh": sum(q for _, q, _, _ in offers.values()) / 1000,
                "asked_kwh": sum(asked_by.values()) / 1000,
            }
        )
        same = (
            prev_offers is not None
            and prev_bids is not None
            and {k: v[:3] for k, v in offers.items()} == {k: v[:3] for k, v in prev_offers.items()}
            and {k: v[0] for k, v in bids.items()} == {k: v[0] for k, v in prev_bids.items()}
        )
        prev_offers, prev_bids, prev_prices = offers, bids, prices
        if same:
            break
    # the lowest-keyed seller still here closes; if every seller dropped out, the lowest buyer (an interval
    # left open would hold no trades for some MGs and others' trades later)
    await close_interval(agent, t, min(sellers) if sellers else min(buyers, default=None))
    return history


def _wanted(bid: Bid) -> list[tuple[bytes, int]]:
    """A bid's demands as its move puts them on the chain: (seller key, Wh) above 0 Wh, by seller key; two
    bids with the same are a round that repeats, to every MGMC."""
    return sorted((bytes.fromhex(s), wh(q)) for s, q in bid.requests if wh(q) > 0)


async def _move_demands(agent: MarketAgent, t: int, r: int, demands: list[dict[str, Any]]) -> bool:
    """Post this buyer's move of round r asking `demands`; True once it landed as asked. Refused while this
    MG owes anything (a debt landed after it read its own, or the contract's limit is below the genesis's),
    it posts the round's move asking nothing instead, so no peer waits its barrier out for this MG."""
    body = {"interval": t, "round": r, "demands": demands}
    if await agent._submit("mgmc", agent.anonym, "move", body) or not demands:
        return True
    owed = query.owed(agent.ledger.state("mgmc"), agent.anonym.public)
    if owed > 0:
        debts.note(agent, t, owed)
        await agent._submit("mgmc", agent.anonym, "move", {**body, "demands": []})
    return False

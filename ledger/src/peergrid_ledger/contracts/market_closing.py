"""The market contract's closing: agreed trades from the final positions and their settlement (the `trade` and
`settle` handlers of `market.KINDS`; when a `trade` may come is `market_close_time`'s rule, the DSO's
`market.reopen` is `market_reopen`).

Promises: `agree_trades` closes an interval and records its trades, computed only from the final positions
(`market_state.allocate`: pro rata when a seller is over-asked, capped per buyer with genesis `cap_on_fills`
at min(max_quantity, its connection capacity `market.capacity`)), never before
`market_close_time.earliest_close` (genesis `close_on_clock`); `settle` pays one trade once, for the energy
delivered, within the genesis credit limit: on the first party's word, or with genesis `settle_by_both` on
what both parties state (each once; they agree within `settle_tolerance_wh` and the lower is paid, else the
trade is disputed and only the DSO settles it - no other authority, since on the MGMC chain each MGMC's node
key is one; the DSO may settle any trade first; a party that stated settles on its lone statement by sending
it again once `settle_wait_ms` passed after it), never on one party's statement alone before that deadline
(with genesis `sealed_statements` each is committed first and revealed later: `market_sealed`), and with the
genesis' interval clock (`settle_interval_ms`) nobody's `settle` before the trade's interval ended, so no word
given before the delivery starts the other party's wait; on a trade both of whose parties the DSO priced
(`market.tariff`) the same settlement moves the imbalance compensation (`market_state.compensation`;
`settle_pay`: what the payer can within its credit limit, the rest recorded as `owed`, never holding the
energy payment back) from the shortfalls stated: each party's own (`short`, none: 0), a silent party's the
undelivered rest the other does not own (none if it owns it all), the DSO's word on both sides
(`seller_short`, `buyer_short`) final; statements that leave part of the undelivered energy owned by nobody
(beyond the tolerance) dispute the trade; a reopened interval's superseded trades never settle. An exchange
session's forward trades (`exchange_clearing.clear`) are recorded in the same records. Assumes the positions
were admitted by `market`'s handlers, which own the bargaining rules. The whole flow is in `market`'s
docstring and docs/ledger-format.md.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay
from ..tx import Tx
from .market_clock import fix_clock, interval_end
from .market_close_time import check_close
from .market_sealed import check_body, check_reveal, commit, withheld
from .market_state import (
    allocate,
    bid,
    buyer_limit,
    capacity,
    closed,
    closings,
    cover_prices,
    interval_key,
    members,
    offer,
    rules_for,
    trade,
    trade_id,
    trade_key,
)
from .market_vouch import hold, release
from .settle_pay import other_side, pay


def agree_trades(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """Close the interval and record its agreed trades, computed only from the final positions."""
    interval = tx.body["interval"]
    require(not closed(view, interval), Reason.CLOSED, f"interval {interval} is already cleared")
    sellers = members(view, interval, "sellers")
    require(bool(sellers), Reason.NOT_FOUND, f"no offers in interval {interval}")
    taking_part = offer(view, interval, tx.sender) is not None or bid(view, interval, tx.sender) is not None
    require(
        taking_part or sender.has(ks.ROLE_AUTHORITY),
        Reason.FORBIDDEN,
        "only its participants or an authority close an interval",
    )
    check_close(view, ctx, interval)  # market_close_time: not before the book stood still
    demand_by_seller: dict[bytes, list[tuple[bytes, int]]] = {}
    for buyer in members(view, interval, "buyers"):
        rules = rules_for(view, buyer, interval)
        position = bid(view, interval, buyer) or {"demands": []}
        seen = {seller: price for seller, price in position.get("stamps", [])}
        for demand in position["demands"]:
            standing = offer(view, interval, demand["seller"])
            if standing is None or standing["price"] > buyer_limit(rules, standing["clean"]):
                continue  # the seller's final price is beyond this buyer's cap: no trade
            if standing["price"] > seen.get(demand["seller"], standing["price"]):
                continue  # the seller raised its price since the buyer asked (market_positions._stamp_demands)
            if rules["clean_only"] and not standing["clean"]:
                continue
            demand_by_seller.setdefault(demand["seller"], []).append((buyer, demand["quantity"]))
    standing_offers: dict[bytes, dict[str, Any]] = {}
    for seller in demand_by_seller:
        standing = offer(view, interval, seller)
        assert standing is not None  # a demand counts only on a standing offer
        standing_offers[seller] = standing
    limits: dict[bytes, int] | None = None
    premiums: dict[bytes, int] = {}
    if ctx.genesis.params.cap_on_fills:
        limits = {}
        for b in members(view, interval, "buyers"):
            rules = rules_for(view, b, interval)
            cap = capacity(view, b, interval)  # the connection's (market_capacity), where the DSO posted one
            top = int(rules["max_quantity"]) if cap is None else min(int(rules["max_quantity"]), cap)
            limits[b], premiums[b] = top, int(rules["clean_premium"])
    grants = allocate(standing_offers, demand_by_seller, limits, premiums)
    events: list[Event] = []
    trade_ids: list[bytes] = []
    closing = closings(view, interval)
    for seller in sorted(demand_by_seller):
        standing = standing_offers[seller]
        for buyer, granted in grants[seller]:
            if granted <= 0:
                continue
            tid = trade_id(interval, seller, buyer, closing)
            agreed = {
                "buyer": buyer,
                "clean": standing["clean"],
                "interval": interval,
                "price": standing["price"],
                "quantity": granted,
                "seller": seller,
                "settlement": None,
            }
            view.put_obj(trade_key(tid), agreed)
            trade_ids.append(tid)
            events.append(
                (
                    "trade",
                    {
                        "id": tid,
                        "seller": seller,
                        "buyer": buyer,
                        "price": standing["price"],
                        "quantity": granted,
                    },
                )
            )
    view.put_obj(interval_key(interval), {"closed": True, "trades": trade_ids})
    return events


def settle(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """`settle` {trade, delivered[, short | seller_short, buyer_short]}: with genesis `settle_by_both` a
    party's is its statement (`_state`), the DSO's the final word, nobody's before the trade's interval
    ended; without it the first one pays. Shortfalls only on a priced trade (`_stated_shorts`)."""
    tid = tx.body["trade"]
    agreed = _unsettled(view, tid)
    party = _party(agreed, tx.sender)
    dso = sender.has(ks.ROLE_DSO)
    require(
        party is not None or dso or sender.has(ks.ROLE_AUTHORITY),
        Reason.FORBIDDEN,
        f"trade {_short(tid)}: {tx.sender.hex()[:16]}… is not a party to the trade, the DSO or an authority",
    )
    who = party or ("DSO" if dso else "authority")
    sealed = bool(ctx.genesis.params.sealed_statements)
    check_body(tx.body, sealed, party, who, tid)
    if "seal" in tx.body:  # check_body: a party's, on a sealed (so settle_by_both) chain
        assert party is not None
        _ended(view, ctx, tid, agreed, who)
        return commit(view, ctx, tx, tid, agreed, party)
    delivered = tx.body["delivered"]
    require(
        delivered <= agreed["quantity"],
        Reason.INVALID,
        f"trade {_short(tid)}: the {who}'s delivered {delivered} exceeds agreed {agreed['quantity']}",
    )
    shorts = _stated_shorts(view, tx.body, tid, agreed, party, who)
    if not ctx.genesis.params.settle_by_both:
        pay(view, ctx, tx, tid, agreed, delivered, None)
        return [("settled", {"trade": tid, "amount": agreed["settlement"]["amount"]})]
    # only the DSO meters the feeder: any other authority may be a party's own node key (the MGMC chain)
    require(
        party is not None or dso,
        Reason.FORBIDDEN,
        f"trade {_short(tid)}: {tx.sender.hex()[:16]}… is an authority, not a party or the DSO: on a "
        "settle_by_both chain only the DSO settles a trade its parties do not agree on",
    )
    _ended(view, ctx, tid, agreed, who)
    if party is not None:  # a party's word is a statement, even when its key is also an authority's
        if sealed and party not in agreed.get("statements", {}):
            check_reveal(ctx, tx, tid, agreed, party)  # its first statement opens its commitment
        return _state(view, ctx, tx, tid, agreed, party, delivered)
    return pay(view, ctx, tx, tid, agreed, delivered, "dso", shorts)


def _ended(view: Overlay, ctx: BlockContext, tid: bytes, agreed: dict[str, Any], who: str) -> None:
    """No settle before the trade's interval ended on the chain's clock (`market_clock`); one taken fixes a
    posted clock."""
    ended = interval_end(view, ctx.genesis.params, agreed["interval"])
    require(
        ended is None or ctx.time >= ended,
        Reason.RULE_VIOLATION,
        f"trade {_short(tid)}: the {who}'s settle comes before interval {agreed['interval']} ended at "
        f"{ended} (block time {ctx.time}): nothing is metered before the delivery",
    )
    fix_clock(view, ctx, int(agreed["interval"]), "settle")


def _stated_shorts(
    view: Overlay, body: dict[str, Any], tid: bytes, agreed: dict[str, Any], party: str | None, who: str
) -> tuple[int, int]:
    """(seller's, buyer's) shortfall the DSO's settle names (both 0 when the trade was delivered in full and
    it names none); a party's own `short` checked against what it says was delivered. Shortfalls only on a
    trade whose parties the DSO priced (`market.tariff`), a party its own, the DSO both."""
    quantity, delivered = agreed["quantity"], body["delivered"]
    given = "short" in body or "seller_short" in body
    priced = cover_prices(view, agreed) is not None
    if given and not priced:
        raise RuleError(
            Reason.INVALID,
            f"trade {_short(tid)}: the DSO priced no cover for both its parties in interval "
            f"{agreed['interval']} (market.tariff): it carries no compensation, state only what was delivered",
        )
    if party is not None:
        require("seller_short" not in body, Reason.INVALID, f"the {party} states its own side's `short` only")
        short = body.get("short", 0)
        require(
            delivered + short <= quantity,
            Reason.INVALID,
            f"trade {_short(tid)}: the {party}'s delivered {delivered} and own shortfall {short} exceed "
            f"agreed {quantity}",
        )
        return (short, 0) if party == "seller" else (0, short)
    require("short" not in body, Reason.INVALID, f"the {who} names both sides' shortfalls, not `short`")
    sides = (body.get("seller_short", 0), body.get("buyer_short", 0))
    require(
        not priced or max(sides) == quantity - delivered,
        Reason.INVALID,
        f"trade {_short(tid)}: the {who} settles {delivered} of {quantity} Wh delivered, so the larger "
        f"shortfall is {quantity - delivered} Wh, not {max(sides)} (seller_short, buyer_short)",
    )
    return sides


def _unsettled(view: Overlay, tid: bytes) -> dict[str, Any]:
    """The trade that a settlement may still pay: agreed, not settled, not superseded."""
    agreed = trade(view, tid)
    require(agreed is not None, Reason.NOT_FOUND, f"no agreed trade {_short(tid)}")
    assert agreed is not None
    done = agreed["settlement"]
    if done is not None:
        raise RuleError(
            Reason.ALREADY_SETTLED, f"trade {_short(tid)} already settled for {done['delivered']} Wh"
        )
    require(
        "superseded" not in agreed,
        Reason.CLOSED,
        f"trade {_short(tid)} was superseded when its interval was reopened; only the latest closing's "
        "trades settle",
    )
    return agreed


def _party(agreed: dict[str, Any], key: bytes) -> str | None:
    if key == agreed["buyer"]:
        return "buyer"
    return "seller" if key == agreed["seller"] else None


def _short(tid: bytes) -> str:
    return tid.hex()[:16] + "…"


def _state(
    view: Overlay, ctx: BlockContext, tx: Tx, tid: bytes, agreed: dict[str, Any], party: str, delivered: int
) -> list[Event]:
    """Record a party's statement; on the second, pay the lower of two that agree, or mark the dispute."""
    statements: dict[str, Any] = agreed.setdefault("statements", {})
    other = other_side(party)
    if party in statements:
        return _lapse(view, ctx, tx, tid, agreed, party, delivered)
    if other in statements:
        require(
            ctx.time < agreed["deadline"],
            Reason.CLOSED,
            f"trade {_short(tid)}: the {party}'s statement comes after the deadline {agreed['deadline']} "
            f"(block time {ctx.time}); the {other}'s {statements[other]['delivered']} Wh settles it "
            f"when the {other} sends its settle again",
        )
    elif "seals" not in agreed:  # sealed: the commitments set the deadline (market_sealed.commit)
        agreed["deadline"] = ctx.time + ctx.genesis.params.settle_wait_ms
    statements[party] = {"delivered": delivered, "time": ctx.time, "txid": tx.txid}
    stated: dict[str, Any] = {"trade": tid, "party": party, "delivered": delivered}
    if "short" in tx.body:  # only then: a statement without it keeps its old bytes
        statements[party]["short"] = stated["short"] = tx.body["short"]
    events: list[Event] = [("stated", stated)]
    if other not in statements:
        view.put_obj(trade_key(tid), agreed)
        return events
    buyer, seller = int(statements["buyer"]["delivered"]), int(statements["seller"]["delivered"])
    tolerance, unowned_tolerance = _tolerances(ctx, int(agreed["quantity"]))
    shorts = (int(statements["seller"].get("short", 0)), int(statements["buyer"].get("short", 0)))
    # on a priced trade somebody's own shortfall must account for what was not delivered, or the side at
    # fault would owe nothing by keeping quiet about it: the DSO's metering settles it
    unowned = agreed["quantity"] - min(buyer, seller) - max(shorts) if _priced(view, agreed) else 0
    if abs(buyer - seller) <= tolerance and unowned <= unowned_tolerance:
        return events + hold(view, ctx, tx, tid, agreed, min(buyer, seller), shorts)
    agreed["disputed"] = True
    view.put_obj(trade_key(tid), agreed)
    disputed = {"trade": tid, "buyer": buyer, "seller": seller}
    if unowned > unowned_tolerance:
        disputed["unowned"] = unowned
    return [*events, ("disputed", disputed)]


def _tolerances(ctx: BlockContext, quantity: int) -> tuple[int, int]:
    """(Wh two statements may differ by, Wh of undelivered energy they may leave unowned) and still agree:
    the absolute `settle_tolerance_wh` for both, or with `settle_tolerance_permille` the lower of it and that
    ‰ of the trade, and none unowned (review13 F3: an absolute allowance is one side's to take). With
    `seller_vouched` and only the absolute tolerance an agreement may leave up to it unowned: the DSO's vouch
    then names that part the seller's (review14 K7, dso-server `disputes._vouch`), which `_stated_shorts`
    takes, since its larger shortfall is the whole gap."""
    params = ctx.genesis.params
    if not params.settle_tolerance_permille:
        return params.settle_tolerance_wh, params.settle_tolerance_wh
    return min(params.settle_tolerance_wh, quantity * params.settle_tolerance_permille // 1000), 0


def _priced(view: Overlay, agreed: dict[str, Any]) -> bool:
    return cover_prices(view, agreed) is not None


def _lapse(
    view: Overlay, ctx: BlockContext, tx: Tx, tid: bytes, agreed: dict[str, Any], party: str, delivered: int
) -> list[Event]:
    """A party's `settle` after its own statement: refused (`duplicate`: a statement is final) unless the
    other party stayed silent until the deadline and it repeats its statement: then it settles on it, so a
    silent counterparty cannot hold the payment back for ever."""
    if "vouch" in agreed:  # both agreed; the seller's side waits for the DSO (seller_vouched)
        return release(view, ctx, tx, tid, agreed, party, delivered)
    statements = agreed["statements"]
    stated, other = int(statements[party]["delivered"]), other_side(party)
    said = f"trade {_short(tid)}: the {party} already stated {stated} Wh"
    if other in statements:
        raise RuleError(
            Reason.DUPLICATE,
            f"{said}; the {other} stated {statements[other]['delivered']} Wh: the trade is disputed, "
            "only the DSO settles it",
        )
    if ctx.time < agreed["deadline"]:
        raise RuleError(
            Reason.DUPLICATE,
            f"{said}; the {other} may state until {agreed['deadline']} (block time {ctx.time}), then the "
            f"{party}'s settle of {stated} Wh again settles on it",
        )
    require(delivered == stated, Reason.DUPLICATE, f"{said}, not {delivered}: a statement is final")
    own = int(statements[party].get("short", 0))
    require(
        tx.body.get("short", 0) == own, Reason.DUPLICATE, f"{said} with its own shortfall {own}: it is final"
    )
    # what was not delivered is the larger shortfall: one the stating party does not own is the silent
    # party's; one it owns leaves the silent party's unknown, and without its word none is presumed, so the
    # party at fault cannot shift what it owes onto a counterparty that is down; a silent party that
    # committed and kept its reveal back is taken at its worst instead (market_sealed.withheld)
    terms = withheld(agreed, other, own)
    gap = int(agreed["quantity"]) - stated
    silent = gap if own < gap else 0
    shorts = (own, silent) if party == "seller" else (silent, own)
    if terms is not None and ctx.genesis.params.seller_vouched:
        # a party that committed and is down past the reveal window (a reboot) did not choose to keep its
        # statement back: the DSO meters the seller before the penalty pays (review14 K3, market_vouch).
        # Either withheld party is held as having delivered all (the buyer its own shortfall kept), so the
        # seller's meter alone decides, min(its share, the quantity), and the stater's word moves nothing
        # (review15 M4: held at the buyer's word, a buyer that stated 0 took a crashed seller's export free)
        if other == "buyer":
            return hold(view, ctx, tx, tid, agreed, terms[0], terms[1], "withheld")
        return hold(view, ctx, tx, tid, agreed, int(agreed["quantity"]), (0, own), "withheld", terms)
    if terms is not None:
        return pay(view, ctx, tx, tid, agreed, terms[0], "withheld", terms[1])
    return pay(view, ctx, tx, tid, agreed, stated, "lapsed", shorts)

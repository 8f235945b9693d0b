"""The market contract's positions: `offer`, `bid` and `move`, a participant's place in one interval's
bargaining, each checked against the sender's own rules and the interval's standing offers.

Promises: `post_offer` opens a seller's position and `post_bid` a buyer's, each once per interval and
participant, never both sides, never in a cleared or reopened interval; `move` revises either in a later
round (a seller's move of zero quantity withdraws its offer, keeping the standing price; a seller's raise
stamps the standing demands on it, `_stamp_demands`, so a buyer must ask again at the new price). Each
refuses (`RuleError`) a seller below its floor, a buyer above its cap (plus the clean premium), a clean-only
buyer taking non-clean energy, more than the maximum quantity, the connection capacity or what a seller
offers, a round that skips ahead of the interval's highest (`_check_round`), a non-anonym where the chain
trades by anonym (`_trader`), and a debtor raising what it buys (`funds.refuse_debtor`); every accepted one
tells `market_close_time` (`note_move`). The kinds table that routes to them is `market`'s, which
re-exports `OPENING_SLACK`. Pure; no I/O; split from market.py, the byte layout of every write unchanged.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..codec import head
from ..machine import BlockContext, require, require_participant
from ..results import Reason, RuleError
from ..state import Overlay
from ..tx import Tx
from .funds import refuse_debtor
from .market_capacity import within_capacity
from .market_close_time import check_rounds, note_move
from .market_state import (
    bid,
    bid_key,
    buyer_limit,
    closed,
    encode_position,
    last_interval_key,
    members,
    members_key,
    offer,
    offer_key,
    reopen_key,
    require_anonym,
    rules_for,
)


def _trader(sender: ks.AccountRecord, tx: Tx, ctx: BlockContext) -> None:
    """A participant, and on a `settle_by_both` or `anonyms_only` chain an anonym (`market_state.require_anonym`)."""
    require_participant(sender, tx.kind)
    params = ctx.genesis.params
    if params.settle_by_both or params.anonyms_only:  # only these refuse a non-anonym: name it only here
        who = f"{tx.sender.hex()[:16]}…"
        require_anonym(params.settle_by_both, sender.roles, who, tx.kind, anonyms_only=params.anonyms_only)


_KEY_HEAD = head(2, 32)  # a 32-byte byte string's head


def _open_interval(view: Overlay, interval: int, sender: bytes, side: str) -> None:
    """Record `sender` as a new seller or buyer of `interval` (a position on the other side forbids it)."""
    # Hot path (every offer and bid): plain `if`s, so that no error message is formatted unless needed.
    if closed(view, interval):
        raise RuleError(Reason.CLOSED, f"interval {interval} is already cleared")
    if view.get(reopen_key(interval)) is not None:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"interval {interval} was reopened: only its first closing's members bargain",
        )
    other_key = bid_key(interval, sender) if side == "sellers" else offer_key(interval, sender)
    if view.get(other_key) is not None:
        other = "buyers" if side == "sellers" else "sellers"
        raise RuleError(Reason.RULE_VIOLATION, f"already one of the {other} in this interval")
    count_key = members_key(interval, side)
    count = ks.decode_int(view.get(count_key))
    # = put_obj(members_key(interval, side, count), sender), spelled out: a sender's key is 32 bytes (decode_tx)
    view.put(count_key + count.to_bytes(4, "big"), _KEY_HEAD + sender)
    view.put(count_key, ks.encode_int(count + 1))
    last_key = last_interval_key(sender)
    last = view.get(last_key)
    if last is None or interval > ks.decode_int(last):
        view.put(last_key, ks.encode_int(interval))


def _check_offer(view: Overlay, tx: Tx, interval: int, price: int, quantity: int, opening: bool) -> None:
    """The seller's own rules: price at or above its floor, quantity within its maximum and its connection
    capacity (a move may withdraw to zero; an opening offer must sell something)."""
    rules = rules_for(view, tx.sender, interval)
    if opening and quantity <= 0:
        raise RuleError(Reason.INVALID, "an offer needs a positive quantity")
    if price < rules["floor_price"]:
        raise RuleError(
            Reason.RULE_VIOLATION, f"price {price} below the seller's floor {rules['floor_price']}"
        )
    if quantity > rules["max_quantity"]:
        raise RuleError(
            Reason.RULE_VIOLATION, f"quantity {quantity} above the seller's maximum {rules['max_quantity']}"
        )
    within_capacity(view, tx.sender, interval, (quantity,), "the seller's quantity")


def _check_demands(
    view: Overlay, tx: Tx, interval: int, demands: list[dict[str, Any]], cap_on_fills: bool
) -> None:
    """The buyer's rules against the current offers: each seller has an offer, no more than it offers, the
    clean-only preference, its price within the cap (plus the clean premium), the total within the maximum
    and the connection capacity (unless genesis `cap_on_fills`: then both cap what the closing allocates)."""
    rules = rules_for(view, tx.sender, interval)
    if len({d["seller"] for d in demands}) != len(demands):
        raise RuleError(Reason.INVALID, "a seller appears twice in the bid")
    total = 0
    for demand in demands:
        seller, quantity = demand["seller"], demand["quantity"]
        if seller == tx.sender:
            raise RuleError(Reason.INVALID, "cannot buy from oneself")
        standing = offer(view, interval, seller)
        if standing is None:
            raise RuleError(Reason.NOT_FOUND, f"no offer from {seller.hex()[:16]}… in interval {interval}")
        if quantity <= 0:
            raise RuleError(Reason.INVALID, "each demand needs a positive quantity")
        if quantity > standing["quantity"]:
            raise RuleError(
                Reason.RULE_VIOLATION, f"demand {quantity} exceeds the {standing['quantity']} offered"
            )
        if rules["clean_only"] and not standing["clean"]:
            raise RuleError(
                Reason.RULE_VIOLATION, "buyer accepts only clean energy and this offer is not clean"
            )
        limit = buyer_limit(rules, standing["clean"])
        if standing["price"] > limit:
            raise RuleError(Reason.RULE_VIOLATION, f"price {standing['price']} above the cap {limit}")
        total += quantity
    if cap_on_fills:
        return  # the closing caps what it allocates the buyer, capacity and all
    if total > rules["max_quantity"]:
        raise RuleError(
            Reason.RULE_VIOLATION, f"total demand {total} above the buyer's maximum {rules['max_quantity']}"
        )
    within_capacity(view, tx.sender, interval, (total,), "the buyer's total demand")


OPENING_SLACK = 1000  # rounds an opening may lead the interval's highest (simulators open at 2 or 5)


def _check_round(view: Overlay, interval: int, round_: int, own: int | None) -> None:
    """A move's round is at most one past the interval's highest round so far, an opening's (`own` None) at
    most OPENING_SLACK past it: one position at the schema's last round would otherwise push every
    re-bargaining move, numbered on from the highest (the reopening's `round`), out of range (review13 F5).
    So the highest round grows by at most 1 a move and OPENING_SLACK a member: the schema's 1,000,000 takes
    a thousand members or a million transactions. A move one past its own last round, or a round within the
    slack, needs no look at the others (the common case)."""
    step = 1 if own is not None else OPENING_SLACK
    if round_ <= (own if own is not None else 0) + step:
        return
    top = 0
    for side, read in (("sellers", offer), ("buyers", bid)):
        for member in members(view, interval, side):
            top = max(top, int((read(view, interval, member) or {"round": 0})["round"]))
    if round_ > top + step:
        raise RuleError(
            Reason.RULE_VIOLATION,
            f"round {round_} skips ahead: interval {interval}'s highest round is {top}, so at most {top + step}",
        )


def post_offer(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    _trader(sender, tx, ctx)
    b = tx.body
    interval, price, quantity, round_ = b["interval"], b["price"], b["quantity"], b["round"]
    key = offer_key(interval, tx.sender)
    if view.get(key) is not None:
        raise RuleError(Reason.DUPLICATE, "offer already open: use a move")
    _check_offer(view, tx, interval, price, quantity, opening=True)
    _check_round(view, interval, round_, None)
    _open_interval(view, interval, tx.sender, "sellers")
    check_rounds(view, ctx, interval, round_)
    view.put(key, encode_position(b["clean"], price, quantity, round_))
    note_move(view, ctx, interval)


def post_bid(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    _trader(sender, tx, ctx)
    b = tx.body
    key = bid_key(b["interval"], tx.sender)
    if view.get(key) is not None:
        raise RuleError(Reason.DUPLICATE, "bid already open: use a move")
    if b["demands"]:  # an empty bid buys nothing: a debtor may still join the interval's bargaining with one
        refuse_debtor(view, tx.sender, f"a bid in interval {b['interval']}", ctx.genesis.params.owed_limit)
    _check_round(view, b["interval"], b["round"], None)
    _open_interval(view, b["interval"], tx.sender, "buyers")
    check_rounds(view, ctx, b["interval"], b["round"])
    _check_demands(view, tx, b["interval"], b["demands"], bool(ctx.genesis.params.cap_on_fills))
    view.put_obj(key, {"demands": b["demands"], "round": b["round"]})
    note_move(view, ctx, b["interval"])


def move(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    _trader(sender, tx, ctx)
    b = tx.body
    interval = b["interval"]
    require(
        not closed(view, interval),
        Reason.CLOSED,
        f"interval {interval} is already cleared",
    )
    if "price" in b:
        position = offer(view, interval, tx.sender)
        require(position is not None, Reason.NOT_FOUND, "no open offer to revise")
        assert position is not None
        require(b["round"] > position["round"], Reason.RULE_VIOLATION, "a move must be for a later round")
        _check_round(view, interval, b["round"], position["round"])
        check_rounds(view, ctx, interval, b["round"])
        if b["quantity"] == 0:
            # a withdrawal: nothing is for sale, so its price means nothing and the standing price stays
            # (a price below the floor never stands); buyers' demands on it are granted nothing
            position.update(quantity=0, round=b["round"])
        else:
            _check_offer(view, tx, interval, b["price"], b["quantity"], opening=False)
            if b["price"] > position["price"]:
                _stamp_demands(view, interval, tx.sender, int(position["price"]))
            position.update(price=b["price"], quantity=b["quantity"], round=b["round"])
        view.put_obj(offer_key(interval, tx.sender), position)
    else:
        position = bid(view, interval, tx.sender)
        require(position is not None, Reason.NOT_FOUND, "no open bid to revise")
        assert position is not None
        require(b["round"] > position["round"], Reason.RULE_VIOLATION, "a move must be for a later round")
        _check_round(view, interval, b["round"], position["round"])
        check_rounds(view, ctx, interval, b["round"])
        standing = {d["seller"]: d["quantity"] for d in position["demands"]}
        if any(d["quantity"] > standing.get(d["seller"], 0) for d in b["demands"]):
            limit = ctx.genesis.params.owed_limit
            refuse_debtor(view, tx.sender, f"a move raising a demand in interval {interval}", limit)
        _check_demands(view, tx, interval, b["demands"], bool(ctx.genesis.params.cap_on_fills))
        view.put_obj(bid_key(interval, tx.sender), {"demands": b["demands"], "round": b["round"]})
    note_move(view, ctx, interval)


def _stamp_demands(view: Overlay, interval: int, seller: bytes, before: int) -> None:
    """A seller raises its price: every standing demand on it that did not see a raise yet keeps, in its
    bid's `stamps` ([seller, price] pairs, by seller), the price `before` the raise - at most the price standing
    when the demand landed (only cuts came between). `agree_trades` counts the demand only while the seller's
    price is back at or below it: the buyer must ask again at the new price (review13 F1: a seller could raise
    to the buyer's cap and close in one block). A bid or move writes its record afresh, without stamps, so
    bargaining where buyers answer every round ends with none; a chain where no seller raises keeps its bytes."""
    for buyer in members(view, interval, "buyers"):
        position = bid(view, interval, buyer)
        if position is None or all(d["seller"] != seller for d in position["demands"]):
            continue
        stamps = position.get("stamps", [])
        if any(s == seller for s, _ in stamps):
            continue  # stamped at an earlier raise: that price is the lower one
        position["stamps"] = sorted([*stamps, [seller, before]])
        view.put_obj(bid_key(interval, buyer), position)

"""The market contract: each MGMC's preset rules, iterative bargaining, agreed trades and settlement.

Units: quantities in Wh, prices in currency micro-units per Wh, amounts = price × quantity in micro-units.
Flow for one trading interval (see docs/ledger-format.md):
  `market.rules` presets a participant's rules (floor price for selling, cap price for buying, maximum
      quantity, clean-only preference with the premium it will pay for clean energy), effective from an
      interval it has not yet traded in; genesis may preset them too. No rules: no limits.
  `offer` opens a seller's position (price, quantity, clean); `bid` opens a buyer's position (a quantity from
      each accepted offer); `move` revises either in a later round (a seller's move of zero quantity
      withdraws its offer at any price, keeping the standing price; a later move may offer again). The
      chain checks every one against the sender's rules and the current offers: a seller below its floor, a buyer above its cap (plus premium for
      clean offers), a clean-only buyer taking non-clean energy, more than the maximum quantity or more than
      a seller offered: all rejected.
  `trade` closes the interval and computes the agreed trades deterministically from the final positions (an
      oversubscribed seller is shared pro rata, rounded down; with genesis `close_on_clock` not before the
      interval's start + `close_after_ms`, and with `close_quiet_ms` only once its book stood still that long
      or its end came: `market_close_time`, which every offer, bid and move tells, and whose `max_rounds`
      caps one bargaining's rounds on any chain whose genesis names it); `settle` pays one trade once, for
      the energy delivered, from buyer to seller, within the genesis credit limit: on the first party's word,
      or with genesis `settle_by_both` on both parties' statements (`market_closing.settle`: the DSO or an
      authority decides a dispute; a lone statement settles after a deadline). With genesis `cap_on_fills`
      a buyer's maximum quantity caps what the closing allocates it instead of the sum of its requests
      (its pro-rata grants kept in its own effective-price order, clean premium counted, up to the
      maximum): it may ask several sellers, some of them rationed, and still be filled up to it.
  `market.tariff` (the DSO only, on a `settle_by_both` chain): an account's retail and feed-in prices for a
      run of intervals, each set once and only while its interval is open, so they are terms of the trades
      agreed in it. A trade both of whose parties are priced carries an imbalance compensation: each party's
      statement may add its own side's shortfall (`short`), and the settlement moves, once, price x delivered
      from buyer to seller and `market_state.compensation` from the side that fell short more to the other
      (`market_closing.settle`).
  `market.capacity` (the DSO only, any chain): an account's connection capacity, Wh per interval, standing
      from an interval it has not traded in: bounds what it trades wherever max_quantity does, and its
      make-whole gain (`uplift.gain_bound`; market_capacity).
  `market.reopen` (design step 6: the DSO's adjustment contract makes the MGs re-bargain) reopens a closed
      interval. Only the DSO sends it (the `dso` role: the MGMCs cannot reopen a bargain on their own), for
      the next iteration (last + 1), at most genesis `max_reopens` times (0, the default, disables it), while
      none of the interval's trades is settled and not after the reopening's own deadline `until` (block
      time). The closed trades stay, marked superseded (never deleted, never settled); positions stand,
      moves continue in later rounds, no new member may join, `trade` closes it again with new trade ids.
  On a `settle_by_both` chain only an anonym trades (`offer`, `bid`, `move`, and an exchange session's
      members: `market_state.require_anonym`, review14 K1/K2): the DSO meters, prices and holds debts by
      anonym, so an MGMC's node key (role `mgmc`) is refused `forbidden`; so too with genesis `anonyms_only`
      (review17 K-B: no MGMC trades with itself through its node key); elsewhere any participant trades.
  A member that owes (a priced settlement's `owed` it has not paid yet: `funds`) may not buy: a `bid` with
      any demand, and a `move` that asks any seller for more than its standing bid did, are refused
      `insufficient-funds` naming the debt; it may join with an empty bid, sell (`offer`, `move`) and cut
      its demands, since a sale's payment is what pays its debts (FIFO, `funds.collect`).
The positions' handlers are here; the closing's (`trade`, `settle`) in `market_closing`, when a `trade` may
come in `market_close_time`, `market.reopen` in `market_reopen`.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..codec import head
from ..machine import BlockContext, KindSpec, require, require_participant, require_role
from ..results import Event, Reason, RuleError
from ..schema import HASH, INTERVAL, KEY, PRICE, QUANTITY, ROUND, Bool, Int, List, Map, OneOf, check
from ..state import Overlay, read_obj
from ..tx import Tx
from .funds import refuse_debtor
from .market_capacity import KIND as CAPACITY_KIND
from .market_capacity import within_capacity
from .market_clock import KIND as CLOCK_KIND
from .market_close_time import check_rounds, note_move
from .market_closing import agree_trades, settle
from .market_reopen import reopen
from .market_sealed import SETTLE_SHAPE
from .market_state import (  # re-exported: callers import the contract's records from here
    DEMANDS,
    MAX_DEMANDS,
    MAX_TARIFF_INTERVALS,
    NO_RULES,
    RULES_SHAPE,
    allocate,
    bid,
    bid_key,
    buyer_limit,
    capacity,
    closed,
    compensation,
    encode_position,
    interval_record,
    last_interval_key,
    members,
    members_key,
    offer,
    offer_key,
    reopen_key,
    reopening,
    require_anonym,
    rules_for,
    rules_key,
    settlement,
    tariff,
    tariff_key,
    trade,
    trade_id,
)

__all__ = [
    "DEMANDS",
    "END_BLOCK",
    "KINDS",
    "MAX_DEMANDS",
    "NO_RULES",
    "RULES_OVERTAKEN",
    "RULES_SHAPE",
    "allocate",
    "bid",
    "buyer_limit",
    "capacity",
    "closed",
    "compensation",
    "genesis_writes",
    "interval_record",
    "members",
    "offer",
    "reopening",
    "rules_for",
    "settlement",
    "tariff",
    "trade",
    "trade_id",
]

# the refusal's own words for rules a participant's position overtook (the edge's rules poster sends
# them again from the interval after it on them)
RULES_OVERTAKEN = "rules can change only after interval"


# ---------------------------------------------------------------------------------------------- handlers


def set_rules(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    start = tx.body["from_interval"]
    last = read_obj(view, last_interval_key(tx.sender))
    require(last is None or start > last, Reason.RULE_VIOLATION, f"{RULES_OVERTAKEN} {last}")
    entries = [e for e in read_obj(view, rules_key(tx.sender)) or [] if e[0] < start]
    view.put_obj(rules_key(tx.sender), [*entries, [start, tx.body["rules"]]])


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


def set_tariff(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """The DSO prices an account's cover for a run of intervals: retail (what it charges for energy a trade
    did not deliver) and feed-in (what it pays for energy a trade's buyer did not take), micro-units per Wh.
    Once per interval, before the interval closes: a trade's cover prices are fixed when it is agreed."""
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    b = tx.body
    account, first, retail, feed_in = b["account"], b["first_interval"], b["retail"], b["feed_in"]
    require(
        bool(ctx.genesis.params.settle_by_both),
        Reason.RULE_VIOLATION,
        "cover prices need genesis settle_by_both: each party states its own shortfall",
    )
    require(view.get(ks.account(account)) is not None, Reason.NOT_FOUND, "the account is not a known account")
    require(
        len(retail) == len(feed_in) > 0,
        Reason.INVALID,
        f"{len(retail)} retail and {len(feed_in)} feed-in prices: one of each per interval, at least one",
    )
    for interval in range(first, first + len(retail)):
        if closed(view, interval):
            raise RuleError(
                Reason.CLOSED, f"interval {interval} is closed: its trades were agreed without these prices"
            )
        set_before = tariff(view, account, interval)
        if set_before is not None:
            raise RuleError(
                Reason.DUPLICATE,
                f"interval {interval}: the account's prices are set already (retail {set_before[0]}, "
                f"feed-in {set_before[1]})",
            )
    for k, prices in enumerate(zip(retail, feed_in, strict=True)):
        view.put_obj(tariff_key(account, first + k), list(prices))
    return [("tariff", {"account": account, "first_interval": first, "intervals": len(retail)})]


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    from ..codec import encode

    writes: dict[bytes, bytes | None] = {}
    for acct in genesis.accounts:
        if acct.rules is not None:
            check(RULES_SHAPE, acct.rules, "genesis rules")
            writes[rules_key(acct.key)] = encode([[0, acct.rules]])
    return writes


KINDS: dict[str, KindSpec] = {
    "market.rules": KindSpec(Map({"rules": RULES_SHAPE, "from_interval": INTERVAL}), set_rules),
    "offer": KindSpec(
        Map({"interval": INTERVAL, "round": ROUND, "price": PRICE, "quantity": QUANTITY, "clean": Bool()}),
        post_offer,
    ),
    "bid": KindSpec(Map({"interval": INTERVAL, "round": ROUND, "demands": DEMANDS}), post_bid),
    "move": KindSpec(
        OneOf(
            (
                Map({"interval": INTERVAL, "round": ROUND, "price": PRICE, "quantity": QUANTITY}),
                Map({"interval": INTERVAL, "round": ROUND, "demands": DEMANDS}),
            )
        ),
        move,
    ),
    "trade": KindSpec(Map({"interval": INTERVAL}), agree_trades),
    # a party may add its own side's shortfall, the DSO both sides' (only on a trade the DSO priced); on a
    # sealed_statements chain a party commits ({trade, seal}) and then reveals (with its salt): market_sealed
    "settle": KindSpec(SETTLE_SHAPE, settle),
    "market.tariff": KindSpec(
        Map(
            {
                "account": KEY,
                "first_interval": INTERVAL,
                "retail": List(PRICE, MAX_TARIFF_INTERVALS),
                "feed_in": List(PRICE, MAX_TARIFF_INTERVALS),
            }
        ),
        set_tariff,
    ),
    "market.capacity": CAPACITY_KIND,  # the DSO's connection capacity of an account: market_capacity
    "market.clock": CLOCK_KIND,  # the DSO's interval clock on a settle_by_both chain: market_clock
    "market.reopen": KindSpec(
        Map({"interval": INTERVAL, "iteration": Int(1, 1_000_000), "ref": HASH, "until": Int(0, 2**63 - 1)}),
        reopen,
    ),
}
END_BLOCK = None

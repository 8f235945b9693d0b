"""The market contract's records: where offers, bids, rules, interval membership, trades, reopenings and the
DSO's cover prices (`tariff`) live in state, and how to read them; `compensation`, the settlement's
imbalance-compensation rule; `allocate`, the closing's allocation rule on those records, is
market_allocation.py's, re-exported here. Shared by the contract's handlers (`market`), by `query`, and
(`allocate`, `compensation`) by the controller's mirror of the clearing and of the delivery (delivery.py), so
both compute the same figure to the micro-unit.
Pure; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from .. import keyspace as ks
from ..codec import decode
from ..results import Reason, RuleError
from ..schema import KEY, PRICE, QUANTITY, Bool, List, Map
from ..state import StateReader, read_obj
from .market_allocation import allocate as allocate  # re-exported: market and market_closing import it here

RULES_SHAPE = Map(
    {
        "floor_price": PRICE,
        "cap_price": PRICE,
        "max_quantity": QUANTITY,
        "clean_only": Bool(),
        "clean_premium": PRICE,
    }
)
NO_RULES: Mapping[str, Any] = MappingProxyType(
    {
        "floor_price": 0,
        "cap_price": PRICE.high,
        "max_quantity": QUANTITY.high,
        "clean_only": False,
        "clean_premium": 0,
    }
)


def price_tick(price_per_kwh: float) -> int:
    """A price in currency per kWh (a scenario's, an owner's rule, a tariff file's) on the market contract's tick,
    micro-units per Wh (x 1000, rounded half to even): the one conversion, used by the controller's market
    (`market.micro_per_wh`) and the DSO's cover prices (dso-server `tariff.py`)."""
    return round(price_per_kwh * 1000)


MAX_TARIFF_INTERVALS = 1024  # intervals one `market.tariff` may price (a day of one-minute intervals fits)
MAX_DEMANDS = 64  # sellers one bid or move may name (the controller's in-memory check uses it too)
DEMANDS = List(Map({"seller": KEY, "quantity": QUANTITY}), MAX_DEMANDS)


ANONYMS_ONLY = "only an MGMC's anonym trades on this chain"


def require_anonym(
    settle_by_both: int, roles: frozenset[str], who: str, kind: str, *, anonyms_only: int = 0
) -> None:
    """On a chain with genesis `settle_by_both` or `anonyms_only` 1 only an anonym holds a position or takes part
    in a trade. With `settle_by_both` (review14 K1, K2): the DSO, which alone settles a dispute and vouches for a
    seller there, meters and prices each MG by its anonym, and a debt is its anonym's; an MGMC's node key (role
    `mgmc`) that traded would escape the metering (its trades unsettleable or settled on its own word) and buy
    while its anonym owes. With `anonyms_only` (review17 K-B): the genesis names each MGMC's anonym, so a node
    key's trade could only be an MGMC trading with itself to set the price the others forecast from. Refused
    `forbidden`, naming the flag. Otherwise every participant trades, as before (nobody meters, nobody owes).
    A caller that passes no `anonyms_only` checks `settle_by_both` alone."""
    if (settle_by_both or anonyms_only) and ks.ROLE_ANONYM not in roles:
        why = (
            "settle_by_both: the DSO meters and prices each MG by its anonym"
            if settle_by_both
            else "anonyms_only: each MGMC trades under the anonym its genesis names"
        )
        raise RuleError(
            Reason.FORBIDDEN, f"{kind}: {ANONYMS_ONLY} ({why}); {who} has the roles {sorted(roles)}"
        )


# ---------------------------------------------------------------------------------------------- keys & reads


def rules_key(key: bytes) -> bytes:
    return b"mkt/rules/" + key


def interval_key(interval: int) -> bytes:
    return b"mkt/ivl/" + ks.u64(interval)


def offer_key(interval: int, seller: bytes) -> bytes:
    return b"mkt/offer/" + ks.u64(interval) + seller


def bid_key(interval: int, buyer: bytes) -> bytes:
    return b"mkt/bid/" + ks.u64(interval) + buyer


def last_interval_key(key: bytes) -> bytes:
    return b"mkt/last/" + key


def trade_key(trade_id: bytes) -> bytes:
    return b"mkt/trade/" + trade_id


def trade_id(interval: int, seller: bytes, buyer: bytes, closing: int = 0) -> bytes:
    """A trade's id; `closing` counts the interval's earlier closings (0 until it is reopened), so a pair that
    trades again after a reopening gets a new id and the superseded trade keeps its record."""
    tail = b"" if closing == 0 else ks.u64(closing)
    return hashlib.sha256(b"peergrid/trade" + ks.u64(interval) + seller + buyer + tail).digest()


def tariff_key(account: bytes, interval: int) -> bytes:
    return b"mkt/tariff/" + account + ks.u64(interval)


def capacity_key(account: bytes) -> bytes:
    return b"mkt/capacity/" + account


def reopen_key(interval: int) -> bytes:
    return b"mkt/reopen/" + ks.u64(interval)


def superseded_key(interval: int, closing: int) -> bytes:
    return b"mkt/superseded/" + ks.u64(interval) + closing.to_bytes(4, "big")


@lru_cache(maxsize=1024)
def _rules_entries(raw: bytes) -> tuple[tuple[int, Mapping[str, Any]], ...]:
    """Decoded rule entries, memoised by their bytes (read on every offer and bid; never mutated)."""
    return tuple((int(effective), MappingProxyType(rules)) for effective, rules in decode(raw))


def rules_for(state: StateReader, key: bytes, interval: int) -> Mapping[str, Any]:
    """The rules that govern `key` in `interval` (the latest entry effective at or before it)."""
    raw = state.get(rules_key(key))
    current: Mapping[str, Any] = NO_RULES
    for effective, rules in _rules_entries(raw) if raw is not None else ():
        if effective <= interval:
            current = rules
    return current


_SIDE_PREFIXES = {"sellers": b"mkt/sellers/", "buyers": b"mkt/buyers/"}  # every offer and bid builds two


def members_key(interval: int, side: str, index: int | None = None) -> bytes:
    """`mkt/<side>/<interval>` holds how many joined; `.../<index>` the key of each, in arrival order. One
    small record per participant, so joining costs the same however many joined before."""
    base = (_SIDE_PREFIXES.get(side) or b"mkt/" + side.encode() + b"/") + ks.u64(interval)
    return base if index is None else base + index.to_bytes(4, "big")


def members(state: StateReader, interval: int, side: str) -> list[bytes]:
    """The sellers or buyers of an interval, sorted by key."""
    count = ks.decode_int(state.get(members_key(interval, side)))
    return sorted(read_obj(state, members_key(interval, side, i)) for i in range(count))


def closed(state: StateReader, interval: int) -> bool:
    return state.get(interval_key(interval)) is not None


def interval_record(state: StateReader, interval: int) -> dict[str, Any]:
    """The interval's latest closing (its trades are the ones that count) and, once it was reopened, its
    reopening record and the superseded closings (oldest first)."""
    record = read_obj(state, interval_key(interval)) or {"closed": False, "trades": []}
    out = {
        **record,
        "buyers": members(state, interval, "buyers"),
        "sellers": members(state, interval, "sellers"),
    }
    reopened = reopening(state, interval)
    if reopened is not None:
        out["reopened"] = reopened
        out["superseded"] = [read_obj(state, superseded_key(interval, k)) for k in range(reopened["reopens"])]
    return out


def reopening(state: StateReader, interval: int) -> dict[str, Any] | None:
    """`{iteration, reopens, round, ref, by}` of the interval's last reopening, or None if never reopened."""
    value: dict[str, Any] | None = read_obj(state, reopen_key(interval))
    return value


def closings(state: StateReader, interval: int) -> int:
    """How many times the interval was reopened: the index of its current (or next) closing."""
    reopened = reopening(state, interval)
    return 0 if reopened is None else int(reopened["reopens"])


def offer(state: StateReader, interval: int, seller: bytes) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, offer_key(interval, seller))
    return value


def encode_position(clean: bool, price: int, quantity: int, round_: int) -> bytes:
    """A seller's position record, `encode({"clean", "price", "quantity", "round"})`, spelled out: every offer
    writes one. Its four keys in canonical order (shorter first, then bytewise); the values as the schema
    admits them (a bool, and integers in [0, 2**64))."""
    return b"".join(
        (
            b"\xa4\x65clean",
            b"\xf5" if clean else b"\xf4",
            b"\x65price",
            ks.encode_int(price),
            b"\x65round",
            ks.encode_int(round_),
            b"\x68quantity",
            ks.encode_int(quantity),
        )
    )


def bid(state: StateReader, interval: int, buyer: bytes) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, bid_key(interval, buyer))
    return value


def trade(state: StateReader, tid: bytes) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, trade_key(tid))
    return value


def tariff(state: StateReader, account: bytes, interval: int) -> tuple[int, int] | None:
    """(retail, feed-in) in micro-units per Wh: the DSO's prices for `account` in `interval`, or None."""
    value = read_obj(state, tariff_key(account, interval))
    return None if value is None else (int(value[0]), int(value[1]))


@lru_cache(maxsize=1024)
def _capacity_entries(raw: bytes) -> tuple[tuple[int, int], ...]:
    """Decoded capacity entries, memoised by their bytes (read on every position; never mutated)."""
    return tuple((int(effective), int(wh)) for effective, wh in decode(raw))


def capacities(state: StateReader, account: bytes) -> tuple[tuple[int, int], ...]:
    """The account's `market.capacity` entries ((from_interval, wh), oldest first), () when none is posted:
    read once for a position over many intervals, each interval's figure by `standing_capacity`."""
    raw = state.get(capacity_key(account))
    return () if raw is None else _capacity_entries(raw)


def standing_capacity(entries: tuple[tuple[int, int], ...], interval: int) -> int | None:
    """The capacity of `entries` (`capacities`) standing in `interval`: the latest effective by then."""
    current = None
    for effective, wh in entries:
        if effective <= interval:
            current = wh
    return current


def capacity(state: StateReader, account: bytes, interval: int) -> int | None:
    """The connection capacity (Wh per interval) the DSO posted for `account` that stands in `interval` (the
    latest `market.capacity` entry effective at or before it), or None: none posted, no bound but the
    account's own rules."""
    return standing_capacity(capacities(state, account), interval)


def cover_prices(state: StateReader, agreed: Mapping[str, Any]) -> tuple[int, int] | None:
    """(buyer's retail, seller's feed-in) in the trade's interval: what the DSO charges the buyer for energy
    the seller did not deliver and pays the seller for energy the buyer did not take. None unless the DSO
    priced both parties for the interval: then the trade carries no imbalance compensation."""
    buyer = tariff(state, agreed["buyer"], agreed["interval"])
    seller = tariff(state, agreed["seller"], agreed["interval"])
    return None if buyer is None or seller is None else (buyer[0], seller[1])


def compensation(
    price: int, seller_short: int, buyer_short: int, buyer_retail: int, seller_feed_in: int
) -> tuple[str, int]:
    """(the side that pays, micro-units) of one trade's imbalance compensation: the side whose own shortfall
    (Wh of its own side it did not deliver or take) is the larger pays the other, for the excess only, the
    DSO's price of the cover less the trade's price — per Wh not delivered the buyer's retail less the
    price, per Wh not taken the price less the seller's feed-in — never below zero. Integer; exact."""
    if seller_short > buyer_short:
        return "seller", (seller_short - buyer_short) * max(0, buyer_retail - price)
    if buyer_short > seller_short:
        return "buyer", (buyer_short - seller_short) * max(0, price - seller_feed_in)
    return "seller", 0


SETTLEMENT_STATES = ("open", "stated", "disputed", "vouching", "settled", "superseded")


def settlement(state: StateReader, tid: bytes) -> dict[str, Any] | None:
    """Where a trade's settlement stands, or None when there is no such trade: `state` (one of
    `SETTLEMENT_STATES`: no statement yet, one, two that disagree, two that agree and wait for the DSO's
    word (genesis `seller_vouched`: then also `vouch` {delivered, seller_short, buyer_short, until, and `basis`
    "withheld" on a lone statement whose counterparty kept its seal's reveal back, with `release`
    {delivered, seller_short, buyer_short} when that was the seller}), paid, or
    superseded by a reopening),
    the parties' `statements` ({"buyer"/"seller": {delivered, time, txid, short?}}, `settle_by_both`),
    the `deadline` from which a lone statement settles it (sent again by its party; None before any)
    and the `settlement` ({amount, delivered, txid}, with `basis` under `settle_by_both` and, on a trade
    whose parties the DSO priced, `compensation` {payer, amount (what was moved), seller_short, buyer_short}
    and, where the payer could not pay all of it within its credit limit, `owed` {payer, amount} (the rest: a
    debt, kept as written here while later credits collect it: `funds.debts`); None unpaid)."""
    record = trade(state, tid)
    if record is None:
        return None
    statements = record.get("statements", {})
    if "superseded" in record:
        where = "superseded"
    elif record["settlement"] is not None:
        where = "settled"
    elif "disputed" in record:
        where = "disputed"
    elif "vouch" in record:
        where = "vouching"
    else:
        where = "stated" if statements else "open"
    out = {
        "state": where,
        "statements": statements,
        "deadline": record.get("deadline"),
        "settlement": record["settlement"],
    }
    if "vouch" in record:  # only then (seller_vouched): every other answer keeps its keys
        out["vouch"] = record["vouch"]
    return out


def buyer_limit(rules: Mapping[str, Any], clean: bool) -> int:
    return int(rules["cap_price"] + (rules["clean_premium"] if clean else 0))

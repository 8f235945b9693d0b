"""Read-only questions about a chain's state, by domain name (no key layouts needed by callers).

Every function takes any `StateReader` (a `StateTree`, a `LocalChain.view`, an `Overlay`) and returns plain
values (decoded maps, ints, lists) or None when there is no such record. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from . import keyspace as ks
from .contracts import auction as _auction
from .contracts import funds as _funds
from .contracts import market as _market
from .core import authorities_at as authorities_at
from .state import StateReader, read_obj


def balance(state: StateReader, key: bytes) -> int:
    return ks.decode_int(state.get(ks.balance(key)))


def last_nonce(state: StateReader, key: bytes) -> int:
    return ks.decode_int(state.get(ks.nonce(key)))


def account(state: StateReader, key: bytes) -> ks.AccountRecord | None:
    raw = state.get(ks.account(key))
    return None if raw is None else ks.AccountRecord.decode(raw)


def rules(state: StateReader, key: bytes, interval: int) -> dict[str, Any]:
    return dict(_market.rules_for(state, key, interval))


def interval(state: StateReader, number: int) -> dict[str, Any]:
    """{"sellers": [...], "buyers": [...], "closed": bool, "trades": [trade ids]} for one trading interval."""
    return _market.interval_record(state, number)


def offer(state: StateReader, number: int, seller: bytes) -> dict[str, Any] | None:
    return _market.offer(state, number, seller)


def bid(state: StateReader, number: int, buyer: bytes) -> dict[str, Any] | None:
    return _market.bid(state, number, buyer)


def trade(state: StateReader, trade_id: bytes) -> dict[str, Any] | None:
    return _market.trade(state, trade_id)


def settlement(state: StateReader, trade_id: bytes) -> dict[str, Any] | None:
    """Where one trade's settlement stands: {state: open | stated | disputed | vouching | settled | superseded,
    statements: {buyer/seller: {delivered, time, txid, short?}}, deadline (ms or None), settlement (or None):
    {amount, delivered, txid, basis?, compensation?}}. `short` is the party's own shortfall in Wh where its
    statement gave one; `compensation` {payer: seller | buyer, amount (micro-units, moved in the same
    settlement), seller_short, buyer_short} is there on a trade whose parties the DSO priced (market.tariff);
    `owed` {payer, amount} where the payer could not pay all of it then: what was owed at the settlement, kept
    as written however much of it was collected since (`debts` says what is still owed); `unpaid` (genesis
    unpaid_as_debt) the part of the energy payment the buyer owes. `vouching` (genesis seller_vouched): both
    parties agreed and the trade waits for the DSO; then `vouch` {delivered, seller_short, buyer_short, until}
    is there too (`vouching` below)."""
    return _market.settlement(state, trade_id)


def vouching(state: StateReader, number: int) -> list[tuple[bytes, dict[str, Any]]]:
    """The trades of closed interval `number` whose agreeing statements wait for the DSO's word on the seller's
    side (genesis seller_vouched, contracts/market_vouch.py), as (trade id, trade) pairs in agreed order: each
    unsettled with a `vouch` {delivered, seller_short, buyer_short, until (block time, ms)}. The DSO's
    `settle` {trade, delivered[, seller_short, buyer_short]} before `until` is final; after it either party's
    repeated statement pays the vouch's figures. [] on an open interval or any other chain."""
    if not _market.closed(state, number):
        return []
    return [
        (tid, t)
        for tid, t in trades(state, number)
        if "vouch" in t and t["settlement"] is None and "superseded" not in t
    ]


def debts(state: StateReader, key: bytes) -> list[dict[str, Any]]:
    """What the account still owes, oldest first (the order later credits pay them): each {amount
    (micro-units still unpaid), creditor, trade (the settlement that recorded it)}; [] when it owes nothing."""
    return _funds.debts(state, key)


def owed(state: StateReader, key: bytes) -> int:
    """The account's unpaid debts in total (micro-units); above 0 it may not buy (contracts/funds.py)."""
    return _funds.owed_total(state, key)


def trades(state: StateReader, number: int) -> list[tuple[bytes, dict[str, Any]]]:
    """The agreed trades of a closed interval as (trade id, trade) pairs, in the order they were agreed."""
    out = []
    for tid in _market.interval_record(state, number)["trades"]:
        record = _market.trade(state, tid)
        assert record is not None
        out.append((tid, record))
    return out


def auction(state: StateReader, auction_id: str) -> dict[str, Any] | None:
    return _auction.auction(state, auction_id)


def der_commitment(state: StateReader, sender: bytes, number: int) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, ks.der_commitment(sender, number))
    return value


def equivalent_injection(state: StateReader, sender: bytes, number: int) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, ks.injection(sender, number))
    return value


def adjustment_contracts(state: StateReader, to: bytes, number: int) -> list[dict[str, Any]]:
    """Adjustment contracts addressed to `to` for an interval: each with its ciphertext and hash."""
    txids = read_obj(state, ks.adjustment_index(to, number)) or []
    return [read_obj(state, ks.adjustment(to, number, txid)) for txid in txids]


def switching_plan(state: StateReader, plan: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, ks.switching_plan(plan))
    return value


def evidence(state: StateReader, signer: bytes, height: int, round_: int, step: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, ks.evidence(signer, height, round_, step))
    return value

"""The auction contract: an English auction with escrow that settles itself, with no auctioneer.

`auction.open` (seller: id, quantity, reserve price, closing height); `auction.bid` (any other participant: an
amount at or above the reserve, held in escrow from the bidder's balance; a higher re-bid carries the old
escrow into the new one, the raise taken from the balance). At the end of the block at the closing height
the chain itself picks the highest bid (earliest wins a tie), pays the escrow to the seller and returns the
losers' escrow. Amounts in currency micro-units; escrow needs real funds (no credit).
Debts (`funds`): a bid is a purchase, refused `insufficient-funds` naming the debt while the bidder owes more
than genesis `owed_limit` (`funds.refuse_debtor`, as the market's bid). What the close credits - a loser's
refund, the seller's proceeds - pays the account's oldest debts first (`funds.collect`; `owed_paid` events
after `auction-closed`, the refunds' in bid order, then the proceeds'): escrow parked before its bidder came
to owe comes back to its creditors, not to it (review14 K6). A re-bid's old escrow is never a credit: it
stays escrowed in the new bid. An auction among accounts that owe nothing keeps its bytes (one lookup each).
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..codec import UINT64_MAX
from ..machine import BlockContext, KindSpec, require, require_participant
from ..results import Event, Reason
from ..schema import LABEL, PRICE, QUANTITY, Int, Map
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from .funds import collect, refuse_debtor


def auction_key(auction_id: str) -> bytes:
    return b"auc/" + auction_id.encode()


def closing_key(height: int) -> bytes:
    return b"aucx/" + ks.u64(height)


def auction(state: StateReader, auction_id: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, auction_key(auction_id))
    return value


def _add_balance(view: Overlay, key: bytes, delta: int) -> int:
    new = ks.decode_int(view.get(ks.balance(key))) + delta
    view.put(ks.balance(key), ks.encode_int(new))
    return new


def open_auction(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    b = tx.body
    require(auction(view, b["auction"]) is None, Reason.DUPLICATE, "auction id already used")
    require(b["close_height"] > ctx.height, Reason.INVALID, "closing height must be in the future")
    require(b["quantity"] > 0, Reason.INVALID, "nothing to sell")
    record = {
        "bids": [],
        "close_height": b["close_height"],
        "quantity": b["quantity"],
        "reserve": b["reserve"],
        "result": None,
        "seller": tx.sender,
    }
    view.put_obj(auction_key(b["auction"]), record)
    closing = read_obj(view, closing_key(b["close_height"])) or []
    view.put_obj(closing_key(b["close_height"]), sorted([*closing, b["auction"]]))


def place_bid(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    b = tx.body
    record = auction(view, b["auction"])
    require(record is not None, Reason.NOT_FOUND, "no such auction")
    assert record is not None
    require(
        record["result"] is None and ctx.height < record["close_height"], Reason.CLOSED, "auction is over"
    )
    require(tx.sender != record["seller"], Reason.FORBIDDEN, "a seller cannot bid in its own auction")
    refuse_debtor(view, tx.sender, f"a bid in auction {b['auction']!r}", ctx.genesis.params.owed_limit)
    require(b["amount"] >= record["reserve"], Reason.RULE_VIOLATION, f"below the reserve {record['reserve']}")
    previous = [amount for bidder, amount in record["bids"] if bidder == tx.sender]
    escrowed = previous[0] if previous else 0  # carried into the new bid: never a credit to the balance
    if previous:
        require(b["amount"] > escrowed, Reason.RULE_VIOLATION, "a new bid must exceed one's previous bid")
    funds = ks.decode_int(view.get(ks.balance(tx.sender))) + escrowed
    require(funds >= b["amount"], Reason.INSUFFICIENT_FUNDS, f"escrow of {b['amount']} needs the funds")
    _add_balance(view, tx.sender, escrowed - b["amount"])
    record["bids"] = [[bidder, amount] for bidder, amount in record["bids"] if bidder != tx.sender]
    record["bids"].append([tx.sender, b["amount"]])
    view.put_obj(auction_key(b["auction"]), record)


def close_due_auctions(view: Overlay, ctx: BlockContext) -> list[Event]:
    """End-of-block hook: settle every auction whose closing height is this block."""
    events: list[Event] = []
    due = read_obj(view, closing_key(ctx.height)) or []
    for auction_id in due:
        record = auction(view, auction_id)
        assert record is not None, "closing index names a missing auction"
        winner: list[Any] | None = None
        for entry in record["bids"]:  # earliest first: a later bid must be strictly higher to win
            if winner is None or entry[1] > winner[1]:
                winner = entry
        seller_balance = ks.decode_int(view.get(ks.balance(record["seller"])))
        if winner is not None and seller_balance + winner[1] > UINT64_MAX:
            winner = None  # paying would overflow the seller's balance: no sale, every bidder is refunded
        # each refund and the proceeds are credits like a settlement's: they pay their account's debts first
        collected: list[Event] = []
        for bidder, amount in record["bids"]:
            if winner is None or bidder != winner[0]:
                _add_balance(view, bidder, amount)  # release the losers' escrow
                collected += collect(view, bidder, amount)
        if winner is not None:
            _add_balance(view, record["seller"], winner[1])
            collected += collect(view, record["seller"], winner[1])
            record["result"] = {"amount": winner[1], "winner": winner[0]}
        else:
            record["result"] = {"amount": 0, "winner": None}
        view.put_obj(auction_key(auction_id), record)
        events += [("auction-closed", {"auction": auction_id, **record["result"]}), *collected]
    if due:
        view.delete(closing_key(ctx.height))
    return events


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    return {}


KINDS: dict[str, KindSpec] = {
    "auction.open": KindSpec(
        Map({"auction": LABEL, "quantity": QUANTITY, "reserve": PRICE, "close_height": Int(1)}), open_auction
    ),
    "auction.bid": KindSpec(Map({"auction": LABEL, "amount": Int(1, 10**15)}), place_bid),
}
END_BLOCK = close_due_auctions

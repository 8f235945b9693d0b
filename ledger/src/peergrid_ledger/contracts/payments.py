"""The payments contract: a plain signed payment from one account to another, once per reference.

`pay` (a participant: payee, amount, ref): moves `amount` currency micro-units from the sender's balance to
the payee's, the way `market.settle` moves them (`funds.transfer`) (the payer may go below zero down to the genesis
`credit_limit`, no further). `ref` says what the payment is for (e.g. the day and reason of a make-whole
uplift payment); a second payment with the same (payer, payee, ref) is refused, so a payment that is sent
twice — a retry, a replay under a new nonce — moves money once. Refused: an amount outside
[1, MAX_AMOUNT] (by the body's shape), paying oneself, a payee that is not a known account or whose key was
revoked, a payer without the funds or credit. Each payment is kept under its key (`payment_key`) with its
amount and txid, and announced by a `paid` event. A payee that owes (a settlement's `owed`) has its oldest
debts paid from the payment first (`funds.collect`: `owed_paid` events after `paid`, never more than the
amount paid); the payment is recorded as made to the payee all the same.
A payer that owes pays its own debts first (`funds.pay_own_debts`, review14 K6): what it can pay within its
credit goes to its creditors, oldest first (their `owed_paid` events right after `paid`, before the payee's),
and the payment is refused `insufficient-funds`, naming the debt, unless that clears every debt (and then
`transfer` needs room for the amount as ever). The leak it closes: a debtor holding money its creditors did
not get (kept through an auction's escrow, or handed back round a cycle of debts) paid it elsewhere while its
creditor waited. Not "a debtor pays only its creditors" (it could pay a later creditor ahead of an older one,
and would be refused an honest payment to anyone else though it had the money for its debts and it) nor "no
payment while owing" (the same refusal): this rule refuses only what its creditors are owed first, as every
credit to it does; a debtor with the money for both pays both in one transaction. The day-ahead uplift (`ref`
`uplift/day-<d>`, controller chain_venue.pay) is such a payment; its venue's credit limit (10^15) lets nobody
owe, so it is untouched. One that owes nothing pays as before, byte for byte (one lookup).
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, KindSpec, require, require_participant
from ..results import Event, Reason
from ..schema import KEY, LABEL, Int, Map
from ..state import Overlay, StateReader, read_obj
from ..tx import Tx
from .funds import pay_own_debts, transfer

MAX_AMOUNT = 10**15  # micro-units (10^9 currency units): far beyond a day's uplift, well inside 64 bits


def payment_key(payer: bytes, payee: bytes, ref: str) -> bytes:
    """Fixed-width keys first, the one variable-length part (the reference) last."""
    return b"pay/" + payer + payee + ref.encode()


def payment(state: StateReader, payer: bytes, payee: bytes, ref: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = read_obj(state, payment_key(payer, payee, ref))
    return value


def pay(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_participant(sender, tx.kind)
    payee, amount, ref = tx.body["payee"], tx.body["amount"], tx.body["ref"]
    require(payee != tx.sender, Reason.INVALID, "cannot pay oneself")
    require(view.get(ks.account(payee)) is not None, Reason.NOT_FOUND, "the payee is not a known account")
    require(view.get(ks.revoked(payee)) is None, Reason.FORBIDDEN, "the payee's key was revoked")
    key = payment_key(tx.sender, payee, ref)
    require(view.get(key) is None, Reason.DUPLICATE, f"already paid this payee for {ref!r}")
    own = pay_own_debts(view, ctx, tx.sender, f"a payment of {amount} to {payee.hex()[:16]}… for {ref!r}")
    collected = transfer(view, ctx, tx.sender, payee, amount, "payer")
    view.put_obj(key, {"amount": amount, "txid": tx.txid})
    return [("paid", {"payer": tx.sender, "payee": payee, "amount": amount, "ref": ref}), *own, *collected]


def genesis_writes(genesis: Any) -> dict[bytes, bytes | None]:
    return {}


KINDS: dict[str, KindSpec] = {
    "pay": KindSpec(Map({"payee": KEY, "amount": Int(1, MAX_AMOUNT), "ref": LABEL}), pay),
}
END_BLOCK = None

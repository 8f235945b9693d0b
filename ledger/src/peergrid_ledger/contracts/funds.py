"""Moving money between two accounts' balances, for the contracts that do it (market settlement, payments).

Promises: `transfer(view, ctx, payer, payee, amount, who)` debits `amount` micro-units from the payer's balance
and credits the payee's, or raises (`insufficient-funds`, naming `who` and the amount) if the payer would go
below −`credit_limit` of the genesis; it writes nothing then. `room(view, ctx, account)` is that bound: the most
the account can pay now (balance + `credit_limit`, negative when it is already past it). Auctions escrow without credit and do not use it.
Pure; no I/O.
"""

from __future__ import annotations

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Reason
from ..state import Overlay


def room(view: Overlay, ctx: BlockContext, account: bytes) -> int:
    """The most `account` can pay now without going below −`credit_limit`: its balance + the credit limit
    (negative where it is already below, e.g. a lower limit than its balance was made under)."""
    return ks.decode_int(view.get(ks.balance(account))) + ctx.genesis.params.credit_limit


def transfer(view: Overlay, ctx: BlockContext, payer: bytes, payee: bytes, amount: int, who: str) -> None:
    require(amount <= room(view, ctx, payer), Reason.INSUFFICIENT_FUNDS, f"{who} cannot pay {amount}")
    payer_balance = ks.decode_int(view.get(ks.balance(payer)))
    payee_balance = ks.decode_int(view.get(ks.balance(payee)))
    view.put(ks.balance(payer), ks.encode_int(payer_balance - amount))
    view.put(ks.balance(payee), ks.encode_int(payee_balance + amount))

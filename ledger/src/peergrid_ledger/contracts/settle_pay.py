"""The money a trade's settlement moves (`market_closing.settle`'s paying step, on every basis).

Promises: `pay` moves price × delivered from the buyer to the seller, once, within the genesis
`credit_limit`, or refuses the whole settlement (`insufficient-funds`) and writes nothing; the trade is then
still unsettled and the same `settle` may be sent again. With genesis `unpaid_as_debt` (settle_by_both) it
refuses nothing: the buyer pays what it can and the rest is the settlement's `unpaid`, recorded as the
buyer's debt to the seller (`funds.record_debt`: collected from its next credits; it may not buy meanwhile),
so an agreeing statement is never lost for the buyer's want of money (review13 F6). On a trade whose parties the DSO priced
(`market.tariff`) it then moves the imbalance compensation (`market_state.compensation`) from the side that
fell short more - as much of it as that payer can pay within its credit limit after the energy payment - and
records the rest in the settlement as `owed` {payer, amount} (absent when nothing is owed, so a settlement
that pays in full keeps its bytes). The energy payment is never held hostage by the compensation (review12
F3): a seller that delivered is paid whenever the buyer can pay for the energy, however short the buyer is of
the compensation, and a payer that drains its balance cannot block its counterparty's settlement.

An `owed` on the trade record says what was owed at the settlement and stays as written (the venue reads
moved + owed as the compensation due); the debt itself goes to the payer's debt list (`funds.record_debt`),
paid off FIFO from every later credit the payer receives - this settlement's energy payment or
compensation to it included, so a debtor that sells pays its older debts first (`funds.collect`, events
`owed_paid` after `settled`) - and the payer may not buy while it owes (`funds.refuse_debtor`). Read it
with `query.debts` / `query.owed`. A debt (unpaid energy, owed compensation) is recorded before the part
paid moves (N6): where the payee owes the payer, the new debt is set off against the payee's
(`funds.set_off`, if each is its debtor's oldest), and what the payment lets the payee pay its creditors
and comes back to the payer is collected for the payer's debts; before, recorded after, it came straight
back to a payer that did not owe yet, which then kept it owing, its creditor waiting.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from ..machine import BlockContext
from ..results import Event
from ..state import Overlay
from ..tx import Tx
from .funds import record_debt, room, transfer
from .market_state import compensation, cover_prices, trade_key


def other_side(party: str) -> str:
    """The trade's other party: "seller" for "buyer" and back."""
    return "seller" if party == "buyer" else "buyer"


def payable(view: Overlay, ctx: BlockContext, payer: bytes, amount: int) -> int:
    """The part of `amount` the payer can pay now without going below −`credit_limit` (`funds.room`, the
    bound `funds.transfer` enforces), never negative."""
    return max(0, min(amount, room(view, ctx, payer)))


def pay(
    view: Overlay,
    ctx: BlockContext,
    tx: Tx,
    tid: bytes,
    agreed: dict[str, Any],
    delivered: int,
    basis: str | None,
    shorts: tuple[int, int] = (0, 0),
) -> list[Event]:
    """The buyer pays price × delivered, once (`insufficient-funds` refuses the settlement if it cannot);
    `basis` (settle_by_both) says on whose word. On a trade whose parties the DSO priced, the side that fell
    short more then pays the other the compensation for the excess (`shorts` the seller's and buyer's Wh),
    what it can within its credit limit, the rest recorded as `owed`."""
    amount = agreed["price"] * delivered
    unpaid = 0
    if basis is not None and ctx.genesis.params.unpaid_as_debt:
        # the energy is delivered and its figure agreed: what the buyer cannot pay within its credit is its
        # debt to the seller, not a refusal that loses the statement (review13 F6)
        unpaid = amount - payable(view, ctx, agreed["buyer"], amount)
    collected: list[Event] = []
    if unpaid:  # the debt first, then the money: see the module's docstring (N6)
        collected += record_debt(view, agreed["buyer"], agreed["seller"], unpaid, tid)
    if amount > unpaid or not unpaid:  # a buyer with no room left pays nothing now: all of it is owed
        collected += transfer(view, ctx, agreed["buyer"], agreed["seller"], amount - unpaid, "buyer")
    agreed["settlement"] = {"amount": amount, "delivered": delivered, "txid": tx.txid}
    if basis is None:  # the rule before settle_by_both: its record keeps its bytes (and nobody owes there)
        view.put_obj(trade_key(tid), agreed)
        return collected
    agreed["settlement"]["basis"] = basis
    settled: dict[str, Any] = {"trade": tid, "amount": amount, "delivered": delivered, "basis": basis}
    if unpaid:  # only then: a settlement paid in full keeps its bytes
        agreed["settlement"]["unpaid"] = settled["unpaid"] = unpaid
    prices = cover_prices(view, agreed)
    if prices is not None:  # only then: an unpriced trade's record keeps its bytes
        payer, due = compensation(agreed["price"], shorts[0], shorts[1], *prices)
        paid = payable(view, ctx, agreed[payer], due)
        if due > paid:  # the debt first, then the money (N6)
            collected += record_debt(view, agreed[payer], agreed[other_side(payer)], due - paid, tid)
        if paid:
            collected += transfer(
                view, ctx, agreed[payer], agreed[other_side(payer)], paid, f"{payer} (compensation)"
            )
        agreed["settlement"]["compensation"] = {
            "payer": payer,
            "amount": paid,
            "seller_short": shorts[0],
            "buyer_short": shorts[1],
        }
        settled |= {"compensation": paid, "payer": payer}
        if due > paid:  # only then: a settlement that pays in full keeps its bytes
            agreed["settlement"]["owed"] = {"payer": payer, "amount": due - paid}
            settled["owed"] = due - paid
    view.put_obj(trade_key(tid), agreed)
    return [("settled", settled), *collected]

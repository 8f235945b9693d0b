"""The model of a chain's debts that test_debts_model.py runs against the contracts, written apart from them:
balances, debt lists (oldest first), what auctions hold in escrow, and the events a step must announce
(`owed_paid`, `owed_set_off`, `paid`, `auction-closed`). Each method is one step as the contracts should take
it; a refused step leaves the model as it was. test_debts_collect.py uses its `collect` on a bare state.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import event
from test_debts import CREDIT, A, B, C
from test_settle_both import PRICE
from test_settle_compensation import FEED_IN, RETAIL

from peergrid_ledger.contracts.market_state import compensation
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

PARTIES = (A, B, C)
Events = list[tuple[str, dict[str, Any]]]


class Model:
    """What the contracts should do, written apart from them: balances, debt lists, auctions' escrow and the
    events (`owed_paid`, `paid`, `auction-closed`)."""

    def __init__(self, held: list[int], parties: tuple[Keypair, ...] = PARTIES) -> None:
        self.balance = {k.public: b for k, b in zip(parties, held, strict=True)}
        self.debts: dict[bytes, list[list[Any]]] = {k.public: [] for k in parties}
        # what reached each account in a collection after its own turn (it keeps it: once per credit)
        self.kept: dict[bytes, int] = {k.public: 0 for k in parties}
        self.auctions: dict[str, dict[str, Any]] = {}  # id -> seller, close (height), bids [[bidder, amount]]

    def room(self, k: bytes) -> int:
        return self.balance[k] + CREDIT

    def owes(self, k: bytes) -> int:
        return sum(d[1] for d in self.debts[k])

    def escrow(self) -> int:
        return sum(
            a for auction in self.auctions.values() if not auction["closed"] for _, a in auction["bids"]
        )

    def move(self, payer: bytes, payee: bytes, amount: int) -> Events:
        """`amount` from payer to payee; then each account in turn, in the order money first reached it,
        pays its oldest debts from all it received before its turn, once (`collect`)."""
        self.balance[payer] -= amount
        self.balance[payee] += amount
        return self.collect(payee, amount)

    def record(self, debtor: bytes, creditor: bytes, amount: int, tid: bytes) -> Events:
        """A new debt, paid after the debtor's older ones; then the cycles of oldest debts it closes, set off."""
        self.debts[debtor].append([creditor, amount, tid])
        return self.set_off(debtor)

    def set_off(self, start: bytes) -> Events:
        """While following oldest debts from an account (its oldest debt's creditor, that one's, ...) comes
        back to it, each debt on that round is reduced by the smallest of them, no money moving; an account
        whose oldest debt so ends is looked at again (its next debt is the oldest now)."""
        out: Events = []
        look = [start]
        while look:
            first = look.pop(0)
            cycle = [first]
            while self.debts[cycle[-1]] and self.debts[cycle[-1]][0][0] not in cycle:
                cycle.append(self.debts[cycle[-1]][0][0])
            if not self.debts[cycle[-1]] or self.debts[cycle[-1]][0][0] != first:
                continue
            smallest = min(self.debts[k][0][1] for k in cycle)
            # the debt on the round owed to k (its creditor is k) is what cancelled k's: its trade
            owed_to = {self.debts[k][0][0]: self.debts[k][0][2] for k in cycle}
            for k in cycle:
                creditor, _, tid = self.debts[k][0]
                self.debts[k][0][1] -= smallest
                if self.debts[k][0][1] == 0:
                    self.debts[k].pop(0)
                    look.append(k)
                out.append(("owed_set_off", {"debtor": k, "creditor": creditor, "amount": smallest,
                                             "trade": tid, "counter_trade": owed_to[k],
                                             "owed": self.owes(k)}))  # fmt: skip
        return out

    def collect(self, payee: bytes, amount: int) -> Events:
        paid: Events = []
        order, received, turn = [payee], {payee: amount}, 0
        while turn < len(order):
            debtor = order[turn]
            turn += 1
            left, queue = received[debtor], self.debts[debtor]
            while queue and left > 0:
                creditor, owed, tid = queue[0]
                part = min(left, owed)
                self.balance[debtor] -= part
                self.balance[creditor] += part
                left -= part
                queue[0][1] -= part
                ended = queue[0][1] == 0
                if ended:
                    queue.pop(0)
                total = sum(d[1] for d in queue)
                paid.append(("owed_paid", {"debtor": debtor, "creditor": creditor, "amount": part,
                                           "trade": tid, "owed": total}))  # fmt: skip
                if creditor not in order:
                    order.append(creditor)
                    received[creditor] = 0
                if order.index(creditor) >= turn:  # its turn is still to come (one that paid keeps it)
                    received[creditor] += part
                else:
                    self.kept[creditor] += part
                if ended and queue:  # a new oldest debt: the cycle it may close is set off first
                    paid += self.set_off(debtor)
        return paid

    def pay(self, payer: bytes, payee: bytes, amount: int, ref: str) -> Events | None:
        """`pay`: a payer that owes first pays its debts from all it can pay (its room); refused (None, the model
        unchanged) if it still owes then, or has no room left for the amount; the payee's debts collected."""
        saved = copy.deepcopy((self.balance, self.debts))
        own = self.collect(payer, self.room(payer)) if self.debts[payer] else []
        if self.debts[payer] or amount > self.room(payer):
            self.balance, self.debts = saved
            return None
        paid = ("paid", {"payer": payer, "payee": payee, "amount": amount, "ref": ref})
        return [paid, *own, *self.move(payer, payee, amount)]

    def settle(
        self, seller: bytes, buyer: bytes, energy: int, shorts: tuple[int, int], tid: bytes, as_debt: bool
    ) -> Any:
        """The DSO's settlement: None when the buyer cannot pay the energy (refused; with `as_debt`, genesis
        unpaid_as_debt, what it cannot pay is its debt to the seller instead), else the events after
        `settled`, what the energy left unpaid and what is owed (the compensation's payer pays what its room
        allows, the rest a debt). A debt is recorded before the money moves (N6)."""
        if not as_debt and energy > self.room(buyer):
            return None
        unpaid = energy - max(0, min(energy, self.room(buyer))) if as_debt else 0
        expected = self.record(buyer, seller, unpaid, tid) if unpaid else []
        if energy > unpaid or not unpaid:
            expected += self.move(buyer, seller, energy - unpaid)
        side, due = compensation(PRICE, *shorts, RETAIL, FEED_IN)
        payer, payee = (seller, buyer) if side == "seller" else (buyer, seller)
        paid = max(0, min(due, self.room(payer)))
        if due > paid:
            expected += self.record(payer, payee, due - paid, tid)
        if paid:
            expected += self.move(payer, payee, paid)
        return expected, unpaid, due - paid

    def bid(self, bidder: bytes, auction_id: str, amount: int, height: int) -> Reason | None:
        """`auction.bid` in a block at `height`: the refusal's reason, or None (escrowed: the raise over the
        bidder's previous bid from its balance, the bid moved to the end)."""
        auction = self.auctions[auction_id]
        if auction["closed"] or height >= auction["close"]:
            return Reason.CLOSED
        if bidder == auction["seller"]:
            return Reason.FORBIDDEN
        if self.debts[bidder]:
            return Reason.INSUFFICIENT_FUNDS  # a purchase: refused while it owes (owed_limit 0)
        previous = [a for b, a in auction["bids"] if b == bidder]
        escrowed = previous[0] if previous else 0
        if previous and amount <= escrowed:
            return Reason.RULE_VIOLATION
        if self.balance[bidder] + escrowed < amount:
            return Reason.INSUFFICIENT_FUNDS
        self.balance[bidder] -= amount - escrowed
        auction["bids"] = [[b, a] for b, a in auction["bids"] if b != bidder] + [[bidder, amount]]
        return None

    def close_due(self, height: int) -> Events:
        """The end of the block at `height`: each auction due (by id) goes to its highest bid (the earliest of
        a tie); each loser's refund, then the seller's proceeds, pay their account's debts first."""
        out: Events = []
        for auction_id in sorted(a for a, auction in self.auctions.items() if auction["close"] == height):
            auction = self.auctions[auction_id]
            winner: list[Any] | None = None
            for entry in auction["bids"]:
                if winner is None or entry[1] > winner[1]:
                    winner = entry
            collected: Events = []
            for bidder, amount in auction["bids"]:
                if winner is None or bidder != winner[0]:
                    if self.debts[bidder]:
                        event("escrow refunded to a debtor (review14 K6)")
                    self.balance[bidder] += amount
                    collected += self.collect(bidder, amount)
            if winner is not None:
                self.balance[auction["seller"]] += winner[1]
                collected += self.collect(auction["seller"], winner[1])
            result = {"amount": winner[1], "winner": winner[0]} if winner else {"amount": 0, "winner": None}
            out += [("auction-closed", {"auction": auction_id, **result}), *collected]
            auction["closed"] = True
        return out

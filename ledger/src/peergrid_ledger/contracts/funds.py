"""Moving money between two accounts' balances, and the debts a settlement records, for the contracts that
do it (market settlement, payments).

Promises: `transfer(view, ctx, payer, payee, amount, who)` debits `amount` micro-units from the payer's balance
and credits the payee's, or raises (`insufficient-funds`, naming `who` and the amount) if the payer would go
below −`credit_limit` of the genesis; it writes nothing then. `room(view, ctx, account)` is that bound: the most
the account can pay now (balance + `credit_limit`, negative when it is already past it). Auctions escrow
without credit and do not use it.
Debts: `record_debt` appends what a payer could not pay within its credit (a settlement's `owed`) to the
payer's debt list (`debts_key`, oldest first). Every credit `transfer` makes to a debtor first pays its
oldest debts (`collect`: FIFO in the order they were recorded, never more than the credit received, so the
debtor's balance never ends below where it was before the credit), each part moved to its creditor and
announced by an `owed_paid` event; a debt paid in full leaves the list, an empty list leaves the state, so
an account that never owed (every chain before debts) has no record and keeps its bytes. Money that reaches
a creditor that owes too pays that creditor's debts in turn, but each account pays at most once per credit:
a cycle of debts (A owes B, B owes A) would otherwise pass the same micro-units round it step by step, with
no bound on one transaction's work; what comes back to an account that already paid stays with it until its
next credit. `refuse_debtor` is the admission rule of the market and exchange contracts: a member owing
more than a limit (OWED_LIMIT) may not take a new purchase.
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay, StateReader, read_obj

# A member owing more than this (micro-units) may not buy (`refuse_debtor`). 0: any debt. Meant to become
# the genesis param `owed_limit` (default 0, so chains where nobody owes keep their bytes either way).
OWED_LIMIT = 0


def room(view: Overlay, ctx: BlockContext, account: bytes) -> int:
    """The most `account` can pay now without going below −`credit_limit`: its balance + the credit limit
    (negative where it is already below, e.g. a lower limit than its balance was made under)."""
    return ks.decode_int(view.get(ks.balance(account))) + ctx.genesis.params.credit_limit


def _move(view: Overlay, payer: bytes, payee: bytes, amount: int) -> None:
    payer_balance = ks.decode_int(view.get(ks.balance(payer)))
    payee_balance = ks.decode_int(view.get(ks.balance(payee)))
    view.put(ks.balance(payer), ks.encode_int(payer_balance - amount))
    view.put(ks.balance(payee), ks.encode_int(payee_balance + amount))


def transfer(
    view: Overlay, ctx: BlockContext, payer: bytes, payee: bytes, amount: int, who: str
) -> list[Event]:
    """Pay `amount` within the payer's room, then collect the payee's debts from it (`collect`)."""
    require(amount <= room(view, ctx, payer), Reason.INSUFFICIENT_FUNDS, f"{who} cannot pay {amount}")
    _move(view, payer, payee, amount)
    return collect(view, payee, amount)


def debts_key(debtor: bytes) -> bytes:
    return b"owed/" + debtor


def debts(state: StateReader, debtor: bytes) -> list[dict[str, Any]]:
    """The debtor's unpaid debts, oldest first: each {amount (micro-units still owed), creditor, trade}."""
    value: list[dict[str, Any]] = read_obj(state, debts_key(debtor)) or []
    return value


def owed_total(state: StateReader, debtor: bytes) -> int:
    return sum(int(d["amount"]) for d in debts(state, debtor))


def record_debt(view: Overlay, debtor: bytes, creditor: bytes, amount: int, trade: bytes) -> None:
    """Append a debt of `amount` > 0 from `debtor` to `creditor` for `trade`: it is paid after the older ones."""
    if amount <= 0 or debtor == creditor:  # a contract bug, never a transaction's data
        raise AssertionError(f"a debt of {amount} from {debtor.hex()[:16]}… to {creditor.hex()[:16]}…")
    entries = debts(view, debtor)
    view.put_obj(debts_key(debtor), [*entries, {"amount": amount, "creditor": creditor, "trade": trade}])


def collect(view: Overlay, debtor: bytes, credit: int) -> list[Event]:
    """Pay the debtor's oldest debts from a `credit` it just received, at most the credit, one `owed_paid`
    event per debt (part) paid, `owed` what the payer still owes after it. A creditor so paid that owes too
    pays its own debts from what it received, in turn (breadth-first, in the order the parts were paid, an
    account's receipts added up while it waits); each account pays at most once per credit, so a cycle of
    debts ends where it comes back to an account that already paid, and the work is bounded by the debts."""
    if credit <= 0 or view.get(debts_key(debtor)) is None:  # the common case: no debts, one lookup
        return []
    events: list[Event] = []
    waiting: dict[bytes, int] = {debtor: credit}  # insertion-ordered: the order the credits arrived
    done: set[bytes] = set()
    while waiting:
        account = next(iter(waiting))
        left = waiting.pop(account)
        done.add(account)
        for creditor, part in _pay_oldest(view, account, left, events):
            if creditor not in done and view.get(debts_key(creditor)) is not None:
                waiting[creditor] = waiting.get(creditor, 0) + part
    return events


def _pay_oldest(view: Overlay, debtor: bytes, credit: int, events: list[Event]) -> list[tuple[bytes, int]]:
    """One account's turn of `collect`: its oldest debts paid from `credit`; the (creditor, part)s paid."""
    entries: list[dict[str, Any]] = debts(view, debtor)
    if not entries:
        return []
    owed = sum(int(d["amount"]) for d in entries)
    left = credit
    paid: list[tuple[bytes, int]] = []
    while entries and left > 0:
        oldest = entries[0]
        part = min(left, int(oldest["amount"]))
        _move(view, debtor, oldest["creditor"], part)
        left, owed = left - part, owed - part
        oldest["amount"] -= part
        record = {"debtor": debtor, "creditor": oldest["creditor"], "amount": part, "trade": oldest["trade"]}
        events.append(("owed_paid", {**record, "owed": owed}))
        paid.append((oldest["creditor"], part))
        if oldest["amount"] == 0:
            entries.pop(0)
    if entries:
        view.put_obj(debts_key(debtor), entries)
    else:
        view.delete(debts_key(debtor))
    return paid


def barring_debt(state: StateReader, account: bytes, limit: int = OWED_LIMIT) -> int:
    """What `account` owes when that is more than `limit`, so it may not buy; 0 while it may. The one rule the
    contracts refuse by (`refuse_debtor`) and an MGMC reads before it bids (edge `debts.barring_debt`)."""
    if state.get(debts_key(account)) is None:  # the common case: one lookup
        return 0
    total = owed_total(state, account)
    return total if total > limit else 0


def refuse_debtor(state: StateReader, account: bytes, what: str, limit: int = OWED_LIMIT) -> None:
    """Refuse (`insufficient-funds`, naming the debt) `what` - a new purchase - when `account` owes more
    than `limit` (`barring_debt`). Selling stays open: a sale's payment is what collects the debt."""
    total = barring_debt(state, account, limit)
    if total:
        entries = debts(state, account)
        oldest = entries[0]
        raise RuleError(
            Reason.INSUFFICIENT_FUNDS,
            f"{what}: {account.hex()[:16]}… owes {total} micro-units on {len(entries)} settlement(s) "
            f"(oldest {oldest['amount']} to {oldest['creditor'].hex()[:16]}… for trade "
            f"{oldest['trade'].hex()[:16]}…), more than the {limit} a member may owe and still buy: "
            "it may sell, and every payment to it pays its debts first",
        )

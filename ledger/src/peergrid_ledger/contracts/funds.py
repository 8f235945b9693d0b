"""Moving money between two accounts' balances, and the debts a settlement records, for the contracts that
do it (market settlement, payments, auction refunds and proceeds).

Promises: `transfer(view, ctx, payer, payee, amount, who)` debits `amount` micro-units from the payer's balance
and credits the payee's, or raises (`insufficient-funds`, naming `who` and the amount) if the payer would go
below −`credit_limit` of the genesis; it writes nothing then. `room(view, ctx, account)` is that bound: the most
the account can pay now (balance + `credit_limit`, negative when it is already past it). Auctions escrow
without credit and do not use it; what they give back or pay out is a credit and is collected.
Debts: `record_debt` appends what a payer could not pay within its credit (a settlement's `owed`) to the
payer's debt list (`debts_key`, oldest first). Every credit a contract makes to a debtor - `transfer`'s, an
auction's refund of escrow or its proceeds - first pays its oldest debts (`collect`: FIFO in the order they
were recorded, never more than the credit received, so the debtor's balance never ends below where it was
before the credit), each part moved to its creditor and announced by an `owed_paid` event; a debt paid in
full leaves the list, an empty list leaves the state, so an account that never owed (every chain before
debts) has no record and keeps its bytes. Money that reaches a creditor that owes too pays that creditor's
debts in turn, but each account pays at most once per credit: a cycle of debts (A owes B, B owes A behind
an older debt to C, so not set off) would otherwise pass the same micro-units round it step by step, with no
bound on one transaction's work; what comes back to an account that already paid stays with it until its
next credit. Opposite debts set off (`set_off`, N6): where each of a cycle of accounts' oldest debt is to
the next (A's oldest to B, B's oldest to A; or round three or more), each of those debts is reduced by the
smallest of them, no money moving, an `owed_set_off` event per debt naming its own trade and the
`counter_trade` whose debt cancelled it; checked whenever an account's oldest debt changes (`record_debt` of
a first debt, a debt paid in full by `collect`, a debt set off), so no such cycle stays in the state. Only oldest
debts: that is what `collect` would do with the same value (each pays its oldest creditor from what its
debtor pays it), so no debt skips ahead of an older one to a third party. `refuse_debtor` is the
admission rule of the market, exchange and auction contracts: a member owing more than a limit (genesis
`owed_limit`) may not take a new purchase. `pay_own_debts` is the rule of a debtor's own payment (`pay`):
before it pays anyone, what it can pay (`room`) pays its debts, oldest first (`collect`), and the payment is
refused (`insufficient-funds`, naming the debt) if it still owes after that: no money leaves a debtor past
its creditors (review14 K6).
Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext, require
from ..results import Event, Reason, RuleError
from ..state import Overlay, StateReader, read_obj

# A member owing more than this (micro-units) may not buy (`refuse_debtor`). 0: any debt. The contracts pass
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


def pay_or_owe(
    view: Overlay, ctx: BlockContext, payer: bytes, payee: bytes, amount: int, trade: bytes, who: str
) -> tuple[int, list[Event]]:
    """Pay what of `amount` the payer's room allows and record the rest as its debt to the payee under `trade`:
    the debt first, then the money (settle_pay's order, N6). Returns what was paid now and the events."""
    now = max(0, min(amount, room(view, ctx, payer)))
    events: list[Event] = []
    if amount > now:
        events += record_debt(view, payer, payee, amount - now, trade)
    if now:
        events += transfer(view, ctx, payer, payee, now, who)
    return now, events


def debts_key(debtor: bytes) -> bytes:
    return b"owed/" + debtor


def debts(state: StateReader, debtor: bytes) -> list[dict[str, Any]]:
    """The debtor's unpaid debts, oldest first: each {amount (micro-units still owed), creditor, trade}."""
    value: list[dict[str, Any]] = read_obj(state, debts_key(debtor)) or []
    return value


def owed_total(state: StateReader, debtor: bytes) -> int:
    return sum(int(d["amount"]) for d in debts(state, debtor))


def record_debt(view: Overlay, debtor: bytes, creditor: bytes, amount: int, trade: bytes) -> list[Event]:
    """Append a debt of `amount` > 0 from `debtor` to `creditor` for `trade`: it is paid after the older ones.
    If it is the debtor's oldest and closes a cycle of oldest debts (the creditor's oldest is to the debtor,
    or on round to it), the cycle is set off (`set_off`): its `owed_set_off` events."""
    if amount <= 0 or debtor == creditor:  # a contract bug, never a transaction's data
        raise AssertionError(f"a debt of {amount} from {debtor.hex()[:16]}… to {creditor.hex()[:16]}…")
    entries = debts(view, debtor)
    view.put_obj(debts_key(debtor), [*entries, {"amount": amount, "creditor": creditor, "trade": trade}])
    return set_off(view, debtor)


def _oldest_creditor(view: Overlay, account: bytes) -> bytes | None:
    entries = debts(view, account)
    return entries[0]["creditor"] if entries else None


def _oldest_cycle(view: Overlay, start: bytes) -> list[bytes]:
    """The accounts of the cycle of oldest debts through `start` (start's oldest creditor, its oldest
    creditor, ... back to start), in that order; [] when the links end or close elsewhere."""
    path = [start]
    account = _oldest_creditor(view, start)
    while account is not None and account not in path:
        path.append(account)
        account = _oldest_creditor(view, account)
    return path if account == start else []


def set_off(view: Overlay, start: bytes) -> list[Event]:
    """Cancel every cycle of oldest debts through `start`, and those its cancelling closes: where each
    account's oldest debt is to the next and the last's to the first (A owes B, B owes A), each of those
    debts is reduced by the smallest of them, no money moving, one `owed_set_off` event per debt (as
    `owed_paid`: debtor, creditor, amount, trade, owed after; and `counter_trade`, the trade of the debt owed
    to the debtor that cancelled it - the cycle's previous account's oldest, for A and B each other's - so
    an auditor reading the events pairs each set-off with its counterpart). Why it is fair to every other creditor: it is
    what `collect` would do with the same value - each account pays its oldest debt from what its own debtor
    pays it - so nobody skips ahead of an older creditor; a debt behind an older one to a third party is not
    set off (its turn comes when that one is paid: `_pay_oldest` calls this as a debt leaves a list).
    Why at all: without it a payment along the cycle comes back to its payer, which keeps it while it owes
    (`collect` lets each account pay once per credit), and its creditors wait (N6). Bounded: each cancelling
    ends at least one debt."""
    events: list[Event] = []
    todo = [start]
    while todo:
        cycle = _oldest_cycle(view, todo.pop(0))
        if not cycle:
            continue
        lists = [debts(view, account) for account in cycle]
        amount = min(int(entries[0]["amount"]) for entries in lists)
        # the debt owed to cycle[i] is cycle[i - 1]'s oldest: its trade is the counter-trade of cycle[i]'s
        trades = [entries[0]["trade"] for entries in lists]
        for i, (account, entries) in enumerate(zip(cycle, lists, strict=True)):
            oldest = entries[0]
            oldest["amount"] -= amount
            record = {
                "debtor": account,
                "creditor": oldest["creditor"],
                "amount": amount,
                "trade": oldest["trade"],
                "counter_trade": trades[i - 1],
            }
            if oldest["amount"] == 0:
                entries.pop(0)
                todo.append(account)  # a new oldest debt: it may close another cycle
            _keep(view, account, entries)
            events.append(("owed_set_off", {**record, "owed": sum(int(d["amount"]) for d in entries)}))
    return events


def _keep(view: Overlay, debtor: bytes, entries: list[dict[str, Any]]) -> None:
    if entries:
        view.put_obj(debts_key(debtor), entries)
    else:
        view.delete(debts_key(debtor))


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
    """One account's turn of `collect`: its oldest debts paid from `credit`; the (creditor, part)s paid. A
    debt paid in full leaves its next one the oldest, which may close a cycle: set off (`set_off`) before
    any more money moves."""
    left = credit
    paid: list[tuple[bytes, int]] = []
    while left > 0:
        entries: list[dict[str, Any]] = debts(view, debtor)
        if not entries:
            break
        oldest = entries[0]
        part = min(left, int(oldest["amount"]))
        _move(view, debtor, oldest["creditor"], part)
        left -= part
        oldest["amount"] -= part
        if oldest["amount"] == 0:
            entries.pop(0)
        _keep(view, debtor, entries)
        record = {"debtor": debtor, "creditor": oldest["creditor"], "amount": part, "trade": oldest["trade"]}
        events.append(("owed_paid", {**record, "owed": sum(int(d["amount"]) for d in entries)}))
        paid.append((oldest["creditor"], part))
        if oldest["amount"] == 0 and entries:
            events += set_off(view, debtor)
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
        raise RuleError(
            Reason.INSUFFICIENT_FUNDS,
            f"{_owing(state, account, what, total)}, more than the {limit} a member may owe and still buy: "
            "it may sell, and every payment to it pays its debts first",
        )


def pay_own_debts(view: Overlay, ctx: BlockContext, account: bytes, what: str) -> list[Event]:
    """Before `account` pays anyone (`what`: its payment), its own debts are paid from what it can pay now
    (`room`, its credit limit included), oldest first, as from a credit (`collect`: the `owed_paid`
    events); if it still owes after that, `what` is refused (`insufficient-funds`, naming the debt as it
    stood). A debtor's money goes to its creditors before anyone else; one that owes nothing pays as before
    (one lookup, no write). Money a cycle of debts brings back to it while it pays stays with it
    (`collect`)."""
    if view.get(debts_key(account)) is None:  # the common case: no debts, one lookup
        return []
    owed = owed_total(view, account)
    held = room(view, ctx, account)
    text = _owing(view, account, what, owed)
    events = collect(view, account, held)
    if view.get(debts_key(account)) is not None:
        raise RuleError(
            Reason.INSUFFICIENT_FUNDS,
            f"{text}, and can pay only {max(0, held)} of it: a member that owes pays its debts before it "
            "pays anyone else (every payment to it pays them first)",
        )
    return events


def _owing(state: StateReader, account: bytes, what: str, total: int) -> str:
    """The refusal's words for a debtor: what it owes, on how many settlements, and the oldest debt."""
    entries = debts(state, account)
    oldest = entries[0]
    return (
        f"{what}: {account.hex()[:16]}… owes {total} micro-units on {len(entries)} settlement(s) "
        f"(oldest {oldest['amount']} to {oldest['creditor'].hex()[:16]}… for trade "
        f"{oldest['trade'].hex()[:16]}…)"
    )

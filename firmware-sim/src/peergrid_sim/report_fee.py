"""The fee path of the testbed report's `uplift` section (`report_uplift`), and the day's balance replay.

Promises: `fee_figures(state, session, outcome, name)`: for a session opened with an exchange fee (its
`xch/sess` record's `fee`, nano-currency per kWh per side; the ledger's `uplift_fund` settled it), what the
chain collected and paid from the fund, set beside what its own rule says it should have: each member's cleared
Wh (the clear's standing trades, `uplift.session_trades`, as the settle counted them), the fee due on them
(`market_fee.fee_for`: ceil(fee x Wh / 10^6) micro-units), the fee collected from it (the outcome's charges)
and any part of that left as a debt to the fund, the fund before and after, the refunds above the session's
cap, and `fees_match` (every member charged exactly its fee due, nobody else charged). None for a session
without a fee: the payer path has none of these.
`day_balances(initial, state, outcomes, name)`: each account's balance change over the whole chain (final state
less genesis), split into what its settled trades moved (price x delivered less any unpaid part, buyer ->
seller, and a priced trade's compensation moved), what each settled uplift moved (per account: `fee` paid into
the fund, `charge` paid to a payee on the payer path, `credit` and `refund` received), and `match`: change ==
trades - fee - charge + credit + refund for every account, the fund (`fund`) included. A debt collected later
from a debtor's credits (`funds.collect`) is in neither part, so a chain where one was paid off shows it as a
difference (the lab's credit limit leaves none owed). Pure over state it is given; reads no store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from peergrid_ledger import keyspace as ks
from peergrid_ledger.contracts import exchange_state, uplift
from peergrid_ledger.contracts.market_fee import fee_for, session_fee

FUND = ks.UPLIFT_FUND  # the keyless uplift fund's account id (`uplift_fund`): reported as "fund"
TRADE_PREFIX = b"mkt/trade/"  # an agreed trade's record (`market_state.trade_key`)
Name = Callable[[bytes], str]


def cleared_wh(state: Any, session: str, record: dict[str, Any]) -> dict[bytes, int]:
    """Each member's cleared Wh in the session: both sides of every trade of its clear that still stands."""
    cleared: dict[bytes, int] = {}
    for agreed in uplift.session_trades(state, record, session):
        for party in (agreed["seller"], agreed["buyer"]):
            cleared[party] = cleared.get(party, 0) + int(agreed["quantity"])
    return cleared


def fee_figures(state: Any, session: str, outcome: dict[str, Any], name: Name) -> dict[str, Any] | None:
    """The fee path's figures of one settled session (module contract), by MG name."""
    record = exchange_state.session(state, session)
    if record is None or not session_fee(record):
        return None
    fee = session_fee(record)
    wh = cleared_wh(state, session, record)
    due = {name(m): fee_for(fee, v) for m, v in sorted(wh.items()) if v > 0}
    collected = {name(m): int(v) for m, v in outcome["charges"]}
    fees_owed = {name(p): int(o) for p, q, _, o in outcome["payments"] if q == FUND and int(o)}
    return {
        "fee": fee,
        "fund_cap": int(record.get("fund_cap", 0)),
        "cleared_wh": {name(m): v for m, v in sorted(wh.items())},
        "fees_due": due,
        "collected": collected,
        "collected_total": int(outcome["collected"]),
        "fees_owed": fees_owed,
        "fund_before": int(outcome["fund_before"]),
        "fund_after": int(outcome["fund_after"]),
        "fees_match": collected == due and int(outcome["collected"]) == sum(due.values()),
    }


def trade_moves(items: Iterable[tuple[bytes, bytes]]) -> dict[bytes, int]:
    """What every settled trade moved, per account: the energy payment paid (amount less `unpaid`) buyer ->
    seller, and the compensation moved on a priced trade, its payer -> the other side."""
    from peergrid_ledger.codec import decode

    moved: dict[bytes, int] = {}

    def move(payer: bytes, payee: bytes, amount: int) -> None:
        moved[payer] = moved.get(payer, 0) - amount
        moved[payee] = moved.get(payee, 0) + amount

    for key, raw in items:
        if not key.startswith(TRADE_PREFIX):
            continue
        agreed = decode(raw)
        done = agreed.get("settlement")
        if done is None:
            continue
        move(agreed["buyer"], agreed["seller"], int(done["amount"]) - int(done.get("unpaid", 0)))
        paid = done.get("compensation")
        if paid is not None and int(paid["amount"]):
            other = "seller" if paid["payer"] == "buyer" else "buyer"
            move(agreed[paid["payer"]], agreed[other], int(paid["amount"]))
    return moved


def uplift_parts(outcomes: Iterable[dict[str, Any]]) -> dict[bytes, dict[str, int]]:
    """Per account, what the settled uplifts moved, each payment's part paid (amount less owed): `fee` into the
    fund, `charge` to a payee (the payer path), `credit` a make-whole received, `refund` what the fund paid back
    above a cap (the fund pays a member its credit first, then its refund); the fund's own: `collected` (the
    fees paid in) and `paid_out`."""
    parts: dict[bytes, dict[str, int]] = {}

    def add(key: bytes, part: str, amount: int) -> None:
        if amount:
            entry = parts.setdefault(key, {})
            entry[part] = entry.get(part, 0) + amount

    for done in outcomes:
        credits_left = {
            bytes(k): int(v) for k, v in done["credits"]
        }  # the fund pays the credits, then refunds
        for payer, payee, amount, owed in done["payments"]:
            paid = int(amount) - int(owed)
            if payee == FUND:
                add(payer, "fee", paid)
                add(FUND, "collected", paid)
            elif payer == FUND:
                credit = min(paid, credits_left.get(payee, 0))
                credits_left[payee] = credits_left.get(payee, 0) - credit
                add(FUND, "paid_out", paid)
                add(payee, "credit", credit)
                add(payee, "refund", paid - credit)
            else:
                add(payer, "charge", paid)
                add(payee, "credit", paid)
    return parts


def day_balances(
    initial: Any, items: list[tuple[bytes, bytes]], outcomes: Iterable[dict[str, Any]], name: Name
) -> dict[str, Any]:
    """Each account's balance change over the chain and its parts (module contract): {"accounts": {name:
    {change, trades, fee, charge, credit, refund, ...}}, "match"}; only accounts whose balance or parts moved."""
    final = {key[len(b"bal/") :]: ks.decode_int(raw) for key, raw in items if key.startswith(b"bal/")}
    trades = trade_moves(items)
    parts = uplift_parts(outcomes)
    accounts: dict[str, dict[str, int]] = {}
    match = True
    for key in sorted(final.keys() | trades.keys() | parts.keys()):
        change = final.get(key, 0) - ks.decode_int(initial.get(ks.balance(key)))
        part = parts.get(key, {})
        gets = part.get("credit", 0) + part.get("refund", 0) + part.get("collected", 0)
        pays = part.get("fee", 0) + part.get("charge", 0) + part.get("paid_out", 0)
        expected = trades.get(key, 0) + gets - pays
        if not (change or trades.get(key) or part):
            continue
        match = match and change == expected
        accounts[name(key)] = {"change": change, "trades": trades.get(key, 0), **dict(sorted(part.items()))}
    return {"accounts": dict(sorted(accounts.items())), "match": match}

"""The fee-funded make-whole: `uplift.settle` of an exchange session opened with an exchange fee (`market_fee`).

Promises (amounts in micro-units; the session record's `fee` > 0, nano-currency per kWh per side):
- Collection: each member with cleared trades in the session (`uplift.session_trades`, the clear's standing
  trades: the cleared Wh, not the delivered - the fee is the price of taking part, and a shortfall buys no
  discount) pays `market_fee.fee_for(fee, its cleared Wh)` = ceil(fee x Wh / 10^6) into the uplift fund
  (`keyspace.UPLIFT_FUND`), in key order, within its credit (`funds.transfer`), the part it cannot pay
  recorded first as its debt to the fund under `uplift.uplift_ref` (as a payer's charge was before the fee),
  so a drained member holds up nobody. A payee pays its fee too.
- Payout: owed as without the fee (each claim's gain above its tolerance; the claims' `surplus` is ignored),
  but only to a claimant with cleared Wh in the session (review26 R26-1, in depth: a member that traded
  nothing there took part in nothing the fee paid for; none of study M10's 311 owed MGs traded 0). Funded iff
  the fund's whole balance after this session's collection covers the total owed (`uplift_rule.split` with the
  fund as the one payer); otherwise nobody is paid and the balance stays (all-or-nothing: a part payment makes
  nobody whole, pro rata would reward an over-claim with a share). A defaulted payee's credit is withheld
  (`uplift_rule.withhold`) and stays in the fund. Each credit moves fund -> payee (`funds.transfer`, so the
  payee's debts are collected from it first), drawn from the unreserved balance first, then the reserve.
- Reserve (`keyspace.UPLIFT_RESERVE`, at most the fund's balance): what was owed and not paid - the whole owed of
  a day left unfunded, a withheld credit - is moved out of the refundable balance into the reserve, which only
  pays later sessions' make-whole. So the refund is what it would have been had every owed credit been paid, and
  the balance no refund reads (fund - reserve) follows the same path whether a day was paid or voided: voiding the
  day - a payer claiming a gain beyond the fund - gains a pure payer nothing, neither now nor through a later
  refund (review26 R26-2: the cap's refund handed the payers what the payee was owed). Not closed (review28
  R28-1): a voider itself owed on a later day its fees alone do not cover is paid from this reserve. The reserve
  has no cap of its own (review28 R28-2): every unfunded day moves the whole refundable balance into it, so
  `fund_cap` bounds the refundable part only.
- Cap: after the payout what the fund holds above the reserve and the session's `fund_cap` is refunded to
  this session's fee payers in proportion to their fees (`largest_remainder`, ties to the smaller key), at
  most their total, so no refund exceeds the fee its payer paid. Only to a member that paid its whole fee: one
  that left part of it as a debt to the fund is refunded nothing (a refund would only go to its creditors, the
  fund among them, while the fund is owed the fee that refund would be drawn on). A balance above the cap from
  before (a cap lowered after a fuller fund) is not refunded to this session's payers beyond their fees - it
  was not theirs - and pays later sessions' make-whole.
- Only this module debits the fund, and never below 0 (the payout is checked against its balance, the
  refund is below balance - reserve - cap). Money reaches it otherwise only from a member's fee, now or as a
  debt paid later (`funds.collect`: unreserved).
- The outcome (`uplift.outcome`): {funded, owed, collected (the fees charged, paid or owed), fund_before
  (before the collection), fund_after, fee, credits, charges (each member's fee), withheld, refunds (the cap's),
  payments ([from, to, amount, owed] in the order moved: fees member -> fund with the part owed, credits and
  refunds fund -> member), txid}, and `reserve_before`/`reserve_after` where either is above 0 (absent: both 0,
  the record's bytes as before the reserve; so in `uplift_settled`). Events `uplift_settled`, one `uplift_fee` per member charged (with `owed`
  where part of it became a debt), one `uplift_paid` per credit (payer: the fund), one `uplift_refund` per
  refund.
Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .. import keyspace as ks
from ..machine import BlockContext
from ..results import Event
from ..state import Overlay, StateReader
from . import uplift_rule
from .funds import pay_or_owe, transfer
from .market_fee import fee_for, session_fee
from .pairing import largest_remainder

FUND = ks.UPLIFT_FUND


def fund_balance(state: StateReader) -> int:
    """What the uplift fund holds (micro-units)."""
    return ks.decode_int(state.get(ks.balance(FUND)))


def fund_reserve(state: StateReader) -> int:
    """The part of the fund's balance no refund returns (module contract; micro-units)."""
    return ks.decode_int(state.get(ks.UPLIFT_RESERVE))


def settle_from_fund(
    view: Overlay,
    ctx: BlockContext,
    name: str,
    record: dict[str, Any],
    traded: dict[bytes, int],
    owed: dict[bytes, int],
    defaulted: Collection[bytes],
    ref: bytes,
) -> tuple[dict[str, Any], list[Event]]:
    """Collect the session's fees, pay what is `owed` from the fund, refund above the cap (module contract):
    the outcome record (without `txid`) and the events, `uplift_settled` first."""
    fee = session_fee(record)
    fund_before, reserve_before = fund_balance(view), fund_reserve(view)
    events: list[Event] = []
    payments: list[list[Any]] = []
    fees = {m: fee_for(fee, wh) for m, wh in sorted(traded.items()) if wh > 0}
    paid_in: dict[bytes, int] = {}
    for member, charge in fees.items():  # the collection
        now, moved = pay_or_owe(view, ctx, member, FUND, charge, ref, "member (exchange fee)")
        paid_in[member] = now
        payments.append([member, FUND, charge, charge - now])
        part = {"owed": charge - now} if charge > now else {}
        events += [("uplift_fee", {"session": name, "member": member, "fee": charge, **part}), *moved]
    # the payout: the fund the one payer, all or nothing on its balance after the collection; nothing to a
    # claimant that cleared nothing here
    owed = {m: gain for m, gain in owed.items() if traded.get(m, 0) > 0}
    available = fund_balance(view)
    paid = uplift_rule.withhold(uplift_rule.split(owed, {FUND: available}), defaulted)
    for _, payee, amount in uplift_rule.transfers(paid.credits, paid.charges):
        moved = transfer(view, ctx, FUND, payee, amount, "the uplift fund")
        payments.append([FUND, payee, amount, 0])
        events += [
            ("uplift_paid", {"session": name, "payer": FUND, "payee": payee, "amount": amount}),
            *moved,
        ]
    # the reserve: the credits came from the unreserved balance first; what was owed and not paid is reserved
    credited = sum(paid.credits.values())
    reserve = reserve_before - max(0, credited - (available - reserve_before))
    free = fund_balance(view) - reserve
    kept = min(paid.owed - credited, free)  # the unfunded day's owed, or the withheld credits
    reserve += kept
    # the cap: what is above it and the reserve back to the members that paid their whole fee, by their fees
    above = max(0, free - kept - int(record.get("fund_cap", 0)))
    payers = {m: fees[m] for m, p in paid_in.items() if p == fees[m]}
    refunds = largest_remainder(payers, min(above, sum(payers.values())))
    for member, amount in sorted(refunds.items()):
        if amount:
            moved = transfer(view, ctx, FUND, member, amount, "the uplift fund")
            payments.append([FUND, member, amount, 0])
            events += [("uplift_refund", {"session": name, "member": member, "amount": amount}), *moved]
    if reserve:
        view.put(ks.UPLIFT_RESERVE, ks.encode_int(reserve))
    elif reserve_before:
        view.delete(ks.UPLIFT_RESERVE)
    assert 0 <= reserve <= fund_balance(view), "the reserve is part of the fund's balance"
    reserved = (
        {"reserve_before": reserve_before, "reserve_after": reserve} if reserve_before or reserve else {}
    )
    done = {
        "funded": paid.funded,
        "owed": paid.owed,
        "collected": sum(fees.values()),
        "fund_before": fund_before,
        "fund_after": fund_balance(view),
        "fee": fee,
        "credits": [[k, v] for k, v in sorted(paid.credits.items())],
        "charges": [[k, v] for k, v in fees.items()],
        "withheld": [[k, v] for k, v in sorted(paid.withheld.items())],
        "refunds": [[k, v] for k, v in sorted(refunds.items()) if v],
        "payments": payments,
        **reserved,
    }
    settled = {
        "session": name,
        "funded": paid.funded,
        "owed": paid.owed,
        "collected": done["collected"],
        "paid": sum(paid.credits.values()),
        "withheld": sum(paid.withheld.values()),
        "refunded": sum(refunds.values()),
        "fund_before": fund_before,
        "fund_after": done["fund_after"],
        **reserved,
    }
    return done, [("uplift_settled", settled), *events]

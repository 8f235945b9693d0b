"""The make-whole paid from a fund the exchange fee fills, as the uplift contract does with a fee > 0.

With an exchange fee (exchange_fee.py) nobody's surplus funds the make-whole: the chain collects each
member's fee into a keyless fund, and what is owed is paid from there (notes/m10/design.md §2–5). The rule,
in integer micro-units, the ledger's `contracts/uplift_fund.settle_from_fund` (a Hypothesis property runs both
on the same sessions: tests/controller/test_ctl_uplift_fund_chain.py):
- **Collected**: each member with cleared trades is charged `exchange_fee.due` on its cleared Wh (`fees`) and
  pays what it can (`paid_in`; the simulation's memory venue has no credit limit, so all of it): the rest is
  its debt to the fund (`FundOutcome.unpaid`), which the fund cannot pay out (review26 R26-5).
- **Owed**: as today (uplift.owed_of: each gain above its tolerance, valued at the MG's own rules), but only
  to a member that cleared Wh (with a fee > 0: a fee above 0): the chain owes nothing to a claimant that
  took part in nothing the fee paid for (review26 R26-1, in depth).
- **All or nothing**: paid in full iff the fund's balance after this session's collection (what was paid in,
  not what is owed to it) covers the total owed; otherwise nobody is paid and the balance stays (a part
  payment would reward an over-claim with a share). No payer is charged: `Uplift.charges` is empty and so
  are its payer → payee `payments`; the credits are paid from the fund (simulate_dayahead posts them from
  `FUND`), from its unreserved balance first, then the reserve.
- **Withheld** credits (a payee that did not deliver its commitment: uplift.py) stay in the fund.
- **Reserve**: what was owed and not paid — the whole owed of an unfunded day, a withheld credit — is moved
  into the fund's reserve (at most its balance), which no refund returns and only later days' make-whole
  draws on; so the refund is what it would have been had the owed been paid, and voiding the day (a payer
  claiming a gain beyond the fund) gains no payer anything (review26 R26-2, the ledger's 3dca9fb).
- **Cap**: after the payout, what the fund holds above its reserve and `cap` is refunded to this session's
  fee payers that paid their whole fee, in proportion to their fees (largest remainder, ties by name; by
  chain key on the chain), never more than those fees (the fund's older balance stays). No cap (None):
  nothing is refunded — the chain's cap at its bound 10^15, not its genesis default 0 (which refunds all
  above the reserve).
`fund_make_whole` decides the payout before delivery, `settle_fund` the fund after it. Pure; no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from peergrid_controller.uplift import Uplift, largest_remainder, owed_of

FUND = "upl/fund"  # the fund's account in the simulation's memory venue (the chain keeps it keyless)


@dataclass(frozen=True)
class FundOutcome:
    """The session's fund after the payout (micro-units), what the uplift contract's outcome records."""

    funded: bool
    owed: int
    collected: int  # the fees charged, paid or left owed (the chain's `collected`)
    fund_before: int
    # before + paid in − credits paid − refunds + what they paid back of their receivers' debts to the fund
    fund_after: int
    credits: dict[str, int]  # paid
    withheld: dict[str, int]  # credits not paid (the payee defaulted); kept in the fund, reserved
    fees: dict[str, int]  # each member's fee this session
    # above the reserve and the cap, back to the members that paid their whole fee
    refunds: dict[str, int] = field(default_factory=dict)
    unpaid: dict[str, int] = field(default_factory=dict)  # the part of a fee left as a debt to the fund
    reserve_before: int = 0  # of fund_before, the part no refund returns
    reserve_after: int = 0  # of fund_after


def paid_fees(fees: Mapping[str, int], paid_in: Mapping[str, int] | None) -> dict[str, int]:
    """What each member paid of its fee now (`paid_in`, None: all of it), checked: 0 <= paid <= fee."""
    if any(v < 0 for v in fees.values()):
        raise ValueError(f"every fee must be >= 0 micro-units, got {dict(fees)}")
    if paid_in is None:
        return dict(fees)
    wrong = {n: p for n, p in paid_in.items() if n not in fees or not 0 <= p <= fees[n]}
    if wrong:
        raise ValueError(f"a member pays 0 up to its own fee, got {wrong} of fees {dict(fees)}")
    return {name: paid_in.get(name, 0) for name in fees}


def fund_make_whole(
    gains: Mapping[str, float],
    tolerance: Mapping[str, float],
    fees: Mapping[str, int],
    fund_before: int,
    paid_in: Mapping[str, int] | None = None,
) -> Uplift:
    """The uplift paid from the fund: owed (`owed_of`, to the members with a fee above 0) in full iff
    `fund_before` + what the members pay in (`paid_in`, None: every fee) covers it, else nothing.
    `Uplift.surplus` is the fund available, so `shortfall` says how far it fell short."""
    return fund_payout(owed_of(gains, tolerance), fees, fund_before, paid_in)


def fund_payout(
    owed: Mapping[str, int],
    fees: Mapping[str, int],
    fund_before: int,
    paid_in: Mapping[str, int] | None = None,
) -> Uplift:
    """`fund_make_whole`'s integer rule on what is owed (micro-units, by name), as the uplift contract's fund
    path runs it on the claims' owed."""
    if fund_before < 0:
        raise ValueError(f"the fund ({fund_before}) must be >= 0 micro-units")
    if any(c < 0 for c in owed.values()):
        raise ValueError(f"a credit owed must be >= 0 micro-units, got {dict(owed)}")
    paid = paid_fees(fees, paid_in)
    owed = {name: c for name, c in sorted(owed.items()) if c > 0 and fees.get(name, 0) > 0}
    available = fund_before + sum(paid.values())
    total = sum(owed.values())
    if not owed or total > available:
        return Uplift({}, {}, not owed, total, available)
    return Uplift(owed, {}, True, total, available)


def settle_fund(
    uplift: Uplift,
    defaulted: Collection[str],
    fees: Mapping[str, int],
    fund_before: int,
    cap: int | None,
    paid_in: Mapping[str, int] | None = None,
    reserve_before: int = 0,
    debts: Mapping[str, Sequence[tuple[bool, int]]] | None = None,
) -> tuple[Uplift, FundOutcome]:
    """The fund's uplift as paid after delivery (the defaulted payees' credits withheld, reserved in the
    fund) and the fund after it: what was owed and not paid reserved, the part above the reserve and `cap`
    refunded to this session's full fee payers by their fees (module contract). `paid_in` as
    `fund_make_whole`'s; `reserve_before` the part of `fund_before` an earlier day reserved; `debts` each
    member's debts before the settle, oldest first, (owed to the fund?, micro-units): on the chain a credit or
    refund pays its receiver's oldest debts first (`funds.collect`), so what it owes the fund (its unpaid fee
    among it, the newest) comes back into the fund's unreserved balance. Its other creditors are taken to owe
    nothing (the chain would pass their part on down their own debts; the simulation has no debts at all)."""
    if cap is not None and cap < 0:
        raise ValueError(f"the fund's cap must be >= 0 micro-units, got {cap}")
    if not 0 <= reserve_before <= fund_before:
        raise ValueError(f"the reserve ({reserve_before}) is part of the fund ({fund_before}), >= 0")
    paid = paid_fees(fees, paid_in)
    queue = {name: [[to_fund, amount] for to_fund, amount in owing] for name, owing in (debts or {}).items()}
    if any(amount <= 0 for owing in queue.values() for _, amount in owing):
        raise ValueError(f"a debt is > 0 micro-units, got {dict(debts or {})}")
    for name, f in sorted(fees.items()):
        if paid[name] < f:
            queue.setdefault(name, []).append([True, f - paid[name]])
    withheld = {name: c for name, c in sorted(uplift.credits.items()) if name in defaulted}
    credits = {name: c for name, c in sorted(uplift.credits.items()) if name not in withheld}
    available = fund_before + sum(paid.values())
    credited = sum(credits.values())
    if credited > available:
        raise ValueError(f"credits of {credited} micro-units from a fund of {available}")
    # the credits come from the unreserved balance first, then the reserve; what was owed and not paid (the
    # unfunded day's whole owed, the withheld credits) is reserved, at most what the fund still holds free
    reserve = reserve_before - max(0, credited - (available - reserve_before))
    returned = sum(_collect(queue, name, c) for name, c in credits.items())
    free = available - credited + returned - reserve
    kept = min(uplift.owed - credited, free)
    reserve += kept
    refunds: dict[str, int] = {}
    above = max(0, free - kept - cap) if cap is not None else 0
    payers = {name: f for name, f in sorted(fees.items()) if f > 0 and paid[name] == f}
    back = min(above, sum(payers.values()))
    if back:
        refunds = {name: r for name, r in sorted(largest_remainder(payers, back).items()) if r}
        returned += sum(_collect(queue, name, r) for name, r in refunds.items())
    outcome = FundOutcome(
        uplift.funded,
        uplift.owed,
        sum(fees.values()),
        fund_before,
        available - credited - back + returned,
        credits,
        withheld,
        dict(sorted(fees.items())),
        refunds,
        {name: f - paid[name] for name, f in sorted(fees.items()) if paid[name] < f},
        reserve_before,
        reserve,
    )
    settled = Uplift(credits, {}, uplift.funded, uplift.owed, uplift.surplus, withheld=withheld)
    return settled, outcome


def _collect(queue: dict[str, list[list[Any]]], name: str, amount: int) -> int:
    """`name` receives `amount`: its oldest debts paid from it (`funds.collect`); the part the fund gets back."""
    back, left, owing = 0, amount, queue.get(name, [])
    while left and owing:
        to_fund, debt = owing[0]
        part = min(left, debt)
        left -= part
        back += part if to_fund else 0
        if part == debt:
            owing.pop(0)
        else:
            owing[0][1] = debt - part
    return back

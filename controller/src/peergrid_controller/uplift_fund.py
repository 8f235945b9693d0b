"""The make-whole paid from a fund the exchange fee fills, as the uplift contract does with a fee > 0.

With an exchange fee (exchange_fee.py) nobody's surplus funds the make-whole: the chain collects each
member's fee into a keyless fund, and what is owed is paid from there (notes/m10/design.md §2–5). The rule,
in integer micro-units:
- **Collected**: each member with cleared trades pays `exchange_fee.due` on its cleared Wh (`fees`).
- **Owed**: as today (uplift.owed_of: each gain above its tolerance, valued at the MG's own rules).
- **All or nothing**: paid in full iff the fund's balance after this session's collection covers the total
  owed; otherwise nobody is paid and the balance stays (a part payment would reward an over-claim with a
  share). No payer is charged: `Uplift.charges` is empty and so are its payer → payee `payments`; the
  credits are paid from the fund (simulate_dayahead posts them from `FUND`).
- **Withheld** credits (a payee that did not deliver its commitment: uplift.py) stay in the fund.
- **Cap**: after the payout, what the fund holds above `cap` is refunded to this session's fee payers in
  proportion to their fees (largest remainder, ties by name; by chain key on the chain), never more than
  was collected this session (the fund's older balance stays). No cap (None): nothing is refunded.
`fund_make_whole` decides the payout before delivery, `settle_fund` the fund after it. Pure; no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from peergrid_controller.uplift import Uplift, largest_remainder, owed_of

FUND = "upl/fund"  # the fund's account in the simulation's memory venue (the chain keeps it keyless)


@dataclass(frozen=True)
class FundOutcome:
    """The session's fund after the payout (micro-units), what the uplift contract's outcome records."""

    funded: bool
    owed: int
    collected: int
    fund_before: int
    fund_after: int  # before + collected − credits paid − refunds
    credits: dict[str, int]  # paid
    withheld: dict[str, int]  # credits not paid (the payee defaulted); kept in the fund
    fees: dict[str, int]  # each member's fee this session
    refunds: dict[str, int] = field(default_factory=dict)  # above the cap, back to this session's payers


def fund_make_whole(
    gains: Mapping[str, float], tolerance: Mapping[str, float], fees: Mapping[str, int], fund_before: int
) -> Uplift:
    """The uplift paid from the fund: owed (`owed_of`) in full iff `fund_before` + Σ `fees` covers it, else
    nothing. `Uplift.surplus` is the fund available, so `shortfall` says how far it fell short."""
    if fund_before < 0 or any(v < 0 for v in fees.values()):
        raise ValueError(f"the fund ({fund_before}) and every fee must be >= 0 micro-units")
    owed = owed_of(gains, tolerance)
    available = fund_before + sum(fees.values())
    total = sum(owed.values())
    if not owed or total > available:
        return Uplift({}, {}, not owed, total, available)
    return Uplift(owed, {}, True, total, available)


def settle_fund(
    uplift: Uplift, defaulted: Collection[str], fees: Mapping[str, int], fund_before: int, cap: int | None
) -> tuple[Uplift, FundOutcome]:
    """The fund's uplift as paid after delivery (the defaulted payees' credits withheld, kept in the fund)
    and the fund after it, the part above `cap` refunded to this session's fee payers by their fees."""
    if cap is not None and cap < 0:
        raise ValueError(f"the fund's cap must be >= 0 micro-units, got {cap}")
    withheld = {name: c for name, c in sorted(uplift.credits.items()) if name in defaulted}
    credits = {name: c for name, c in sorted(uplift.credits.items()) if name not in withheld}
    collected = sum(fees.values())
    after = fund_before + collected - sum(credits.values())
    refunds: dict[str, int] = {}
    if cap is not None and after > cap:
        back = min(after - cap, collected)
        refunds = {name: r for name, r in sorted(largest_remainder(dict(fees), back).items()) if r}
        after -= back
    paid = Uplift(
        credits,
        {},
        uplift.funded,
        uplift.owed,
        uplift.surplus,
        withheld=withheld,
    )
    outcome = FundOutcome(
        uplift.funded,
        uplift.owed,
        collected,
        fund_before,
        after,
        credits,
        withheld,
        dict(sorted(fees.items())),
        refunds,
    )
    return paid, outcome

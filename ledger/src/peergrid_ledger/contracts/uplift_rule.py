"""The make-whole (uplift) rule's arithmetic, in exact integers: the one rule the simulation and the chain run.

Promises (amounts in currency micro-units; ids anything that sorts: MG names in the simulation, public keys on
the chain, so both break every tie the same way):
- `split(owed, surplus)`: who pays what is owed. `owed` each payee's credit (> 0), `surplus` each payer's gain
  over the conventional market (at most 0: it pays nothing; a payee is never a payer: it is left out). Funded
  when the payers' total surplus covers the total owed: the charges are the total owed shared in proportion to
  surplus (`largest_remainder`: floors, then one more to the largest remainders, a tie to the smaller id), so
  each is at most its payer's surplus and they sum exactly to the credits. Unfunded: nothing is paid (a part
  payment makes nobody whole).
- `withhold(split, defaulted)`: the split as paid after delivery: a defaulted payee's credit withheld and the
  payers' charges cut by exactly the withheld total, shared in proportion to each charge (largest remainder), so
  no charge grows and the charges still sum to the credits paid.
- `transfers(credits, charges)`: payer -> payee payments whose sums are each payer's charge and each payee's
  credit (north-west corner, both sides in id order: at most payers + payees - 1), ValueError if they differ.
The controller's uplift.py decides `owed` and `surplus` from its floats (its tolerance and rounding) and calls
these; the uplift contract decides them from the members' claims. Pure; no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Generic

from .pairing import P, largest_remainder, north_west


@dataclass(frozen=True)
class Split(Generic[P]):
    credits: dict[P, int]  # owed to each payee and paid (after `withhold`: earned by delivering)
    charges: dict[P, int]  # each payer's charge
    funded: bool  # False: the payers' surplus could not cover what is owed, and nothing is paid
    owed: int  # owed in all (paid when funded, less what is withheld)
    surplus: int  # the payers' surplus in all
    withheld: dict[P, int] = field(default_factory=dict)  # credits forfeited by not delivering
    refunds: dict[P, int] = field(default_factory=dict)  # what each payer was not charged for them


def split(owed: Mapping[P, int], surplus: Mapping[P, int]) -> Split[P]:
    """The funding rule (module contract); a surplus at or below zero funds nothing. ValueError on a negative
    credit owed."""
    if any(v < 0 for v in owed.values()):
        raise ValueError("a credit owed must be non-negative")
    credits = {who: c for who, c in sorted(owed.items()) if c > 0}
    payers = {who: s for who, s in sorted(surplus.items()) if s > 0 and who not in credits}
    total_owed, total_surplus = sum(credits.values()), sum(payers.values())
    if total_owed == 0:
        return Split({}, {}, True, 0, total_surplus)
    if total_owed > total_surplus:
        return Split({}, {}, False, total_owed, total_surplus)
    charges = {who: c for who, c in largest_remainder(payers, total_owed).items() if c > 0}
    return Split(credits, charges, True, total_owed, total_surplus)


def withhold(paid: Split[P], defaulted: Collection[P]) -> Split[P]:
    """`paid` with the credits of the payees in `defaulted` withheld and the charges cut by their total."""
    withheld = {who: c for who, c in sorted(paid.credits.items()) if who in defaulted}
    if not withheld:
        return paid
    credits = {who: c for who, c in paid.credits.items() if who not in withheld}
    refunds = {w: r for w, r in largest_remainder(paid.charges, sum(withheld.values())).items() if r > 0}
    charges = {w: c - refunds.get(w, 0) for w, c in paid.charges.items() if c > refunds.get(w, 0)}
    return Split(credits, charges, paid.funded, paid.owed, paid.surplus, withheld, refunds)


def transfers(credits: Mapping[P, int], charges: Mapping[P, int]) -> list[tuple[P, P, int]]:
    """(payer, payee, amount) payments, north-west corner over both sides in id order (module contract)."""
    if sum(credits.values()) != sum(charges.values()):
        raise ValueError("credits and charges differ: money would not be conserved")
    payees = [(who, a) for who, a in sorted(credits.items()) if a > 0]
    payers = [(who, a) for who, a in sorted(charges.items()) if a > 0]
    return north_west(payers, payees)

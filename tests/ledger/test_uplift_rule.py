"""The make-whole rule's integer arithmetic (`uplift_rule`): exact, bounded by each payer's surplus, deterministic;
the controller's `make_whole` and `withhold` are this rule behind their float front end."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.uplift import make_whole, withhold
from peergrid_ledger.contracts import uplift_rule

NAMES = st.sampled_from([f"mg{i}" for i in range(8)])
AMOUNTS = st.integers(0, 10**9)


@settings(max_examples=300, deadline=None)
@given(
    owed=st.dictionaries(NAMES, st.integers(1, 10**9), max_size=4),
    surplus=st.dictionaries(NAMES, st.integers(-(10**9), 10**9), max_size=8),
    defaulted=st.sets(NAMES, max_size=4),
)
def test_charges_sum_to_credits_no_payer_beyond_its_surplus_and_the_same_twice(
    owed: dict[str, int], surplus: dict[str, int], defaulted: set[str]
) -> None:
    split = uplift_rule.split(owed, surplus)
    assert split == uplift_rule.split(dict(reversed(owed.items())), dict(reversed(surplus.items())))
    payers = {n: s for n, s in surplus.items() if n not in owed and s > 0}
    assert split.owed == sum(owed.values()) and split.surplus == sum(payers.values())
    if split.owed > split.surplus:  # unfunded: nothing moves
        assert not split.funded and split.credits == split.charges == {}
    else:
        assert split.funded and split.credits == {n: c for n, c in owed.items() if c > 0}
        assert sum(split.charges.values()) == sum(split.credits.values())
        assert all(0 < c <= payers[n] for n, c in split.charges.items())  # no payer beyond its surplus
    paid = uplift_rule.withhold(split, defaulted)
    assert sum(paid.charges.values()) == sum(paid.credits.values())
    assert not set(paid.credits) & defaulted
    assert sum(paid.withheld.values()) == sum(c for n, c in split.credits.items() if n in defaulted)
    assert all(paid.charges.get(n, 0) <= c for n, c in split.charges.items())  # no charge grows
    moves = uplift_rule.transfers(paid.credits, paid.charges)
    assert len(moves) <= max(len(paid.credits) + len(paid.charges) - 1, 0)
    for payer, payee, amount in moves:
        assert amount > 0 and payer in paid.charges and payee in paid.credits
    for name, credit in paid.credits.items():
        assert sum(a for _, p, a in moves if p == name) == credit
    for name, charge in paid.charges.items():
        assert sum(a for p, _, a in moves if p == name) == charge


def test_a_hand_computed_split_shares_by_surplus_with_the_remainder_to_the_larger_then_smaller_id() -> None:
    # 100 owed, 3 of surplus (the payee's own 7 is not a payer's): unfunded, nothing paid
    split = uplift_rule.split({"g": 100}, {"a": 1, "b": 1, "c": 1, "g": 7})
    assert (split.funded, split.owed, split.surplus, split.charges) == (False, 100, 3, {})
    # 2 owed over surpluses 1, 1, 1: floors 0, the two left to the smallest ids (equal remainders)
    assert uplift_rule.split({"g": 2}, {"c": 1, "b": 1, "a": 1}).charges == {"a": 1, "b": 1}
    split = uplift_rule.split({"g": 10}, {"a": 10, "b": 20, "c": 0})
    assert split.charges == {"a": 3, "b": 7}  # 10 · 10/30 = 3.33, 10 · 20/30 = 6.67: the larger remainder
    assert uplift_rule.transfers(split.credits, split.charges) == [("a", "g", 3), ("b", "g", 7)]
    paid = uplift_rule.withhold(split, {"g"})
    assert (paid.credits, paid.charges, paid.withheld, paid.refunds) == ({}, {}, {"g": 10}, {"a": 3, "b": 7})


def test_refusals() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        uplift_rule.split({"g": -1}, {"a": 5})
    with pytest.raises(ValueError, match="not be conserved"):
        uplift_rule.transfers({"g": 5}, {"a": 4})


@settings(max_examples=100, deadline=None)
@given(
    gains=st.dictionaries(NAMES, st.floats(0, 50), max_size=4),
    costs=st.dictionaries(NAMES, st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=1, max_size=8),
    defaulted=st.sets(NAMES, max_size=3),
)
def test_the_controllers_make_whole_is_this_rule_on_its_rounded_figures(
    gains: dict[str, float], costs: dict[str, tuple[float, float]], defaulted: set[str]
) -> None:
    names = sorted(set(gains) | set(costs))
    tolerance = dict.fromkeys(names, 0.5)
    day = {n: costs.get(n, (0.0, 0.0))[0] for n in names}
    conventional = {n: costs.get(n, (0.0, 0.0))[1] for n in names}
    uplift = withhold(make_whole(gains, tolerance, day, conventional, set(costs)), defaulted)
    owed = {n: math.ceil(round(g * 10**6, 3)) for n, g in gains.items() if g > 0.5 + 1e-6}
    surplus = {n: math.floor(round((conventional[n] - day[n]) * 10**6, 3)) for n in costs if n not in owed}
    paid = uplift_rule.withhold(uplift_rule.split(owed, surplus), defaulted)
    assert (uplift.credits, uplift.charges, uplift.withheld, uplift.refunds) == (
        paid.credits,
        paid.charges,
        paid.withheld,
        paid.refunds,
    )
    assert [(p.payer, p.payee, p.amount) for p in uplift.payments] == uplift_rule.transfers(
        paid.credits, paid.charges
    )

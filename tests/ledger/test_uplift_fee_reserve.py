"""Voiding the make-whole gains a payer nothing (review26 R26-2): what was owed and not paid - a day left unfunded
by a gain claimed beyond the fund, a defaulted payee's withheld credit - goes into the fund's reserve, which no
refund returns and which pays only later sessions' make-whole (contracts/uplift_fund.py). So the cap's refund is
the one it would have been had the owed been paid, the day it is voided and every day after.

Every day here is test_uplift_fee's: fees 2500 / 500 / 2000 / 1000 at one tick (6000); P3 honestly owed 2600."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from uplift_fee_fixtures import KEYS, P1, P2, P3, P4, balances, fee_chain, fund, ready_session, settle

from peergrid_ledger.contracts import uplift, uplift_fund

PAYERS = (P1.public, P2.public, P4.public)
HONEST = 2_600


def days(cap: int, claims: list[dict[bytes, int]], short: dict[bytes, int] | None = None) -> dict[bytes, int]:
    """Each member's balance change over a run of sessions with these gain claims (`short`: P1's delivery
    short on the first day), after one day that owes nothing (the fund carried to the cap)."""
    chain, clock = fee_chain(cap=cap)
    ready_session(chain, clock, "day-0", 90)
    settle(chain, clock, "day-0")
    total = dict.fromkeys(KEYS, 0)
    for n, gains in enumerate(claims, 1):
        ready_session(chain, clock, f"day-{n}", 90 + 10 * n, gains=gains, short=short if n == 1 else None)
        _, moved = settle(chain, clock, f"day-{n}")
        total = {k: total[k] + moved[k] for k in total}
    assert 0 <= uplift_fund.fund_reserve(chain.state) <= fund(chain)
    return total


@pytest.mark.parametrize("cap", [0, 3_000])
def test_a_payer_that_voids_the_day_with_an_inflated_claim_is_no_better_off(cap: int) -> None:
    """R26's f4: P1 claims just beyond what the fund and the day's fees hold, so nobody is paid. Before, the
    fund above the cap went back to the payers and P1 kept its share of P3's 2600; now the owed is reserved and
    P1 (and every payer) is at best where it was when P3 was paid."""
    honest = days(cap, [{P3.public: HONEST}])
    void = days(cap, [{P3.public: HONEST, P1.public: cap + 6_000 + 1}])
    assert honest[P3.public] > void[P3.public]
    for payer in PAYERS:
        assert void[payer] <= honest[payer], (cap, payer)
    assert void[P1.public] == -2_500  # its whole fee: the day's fund is reserved for P3-like payees later


def test_the_voided_owed_is_never_refunded_later() -> None:
    """At cap 0, a day voided then a day where P3 is owed 2600 again: with the reserve paying nothing back, the
    payers' two days cost them at least what two paid days did (before, the voided 2600 paid day 2's make-whole
    and day 2's payers were refunded their whole fees)."""
    honest = days(0, [{P3.public: HONEST}, {P3.public: HONEST}])
    void = days(0, [{P3.public: HONEST, P1.public: 6_001}, {P3.public: HONEST}])
    assert honest[P1.public] == -2 * 1_083
    for payer in PAYERS:
        assert void[payer] <= honest[payer], payer


def test_the_reserve_pays_a_day_the_fees_cannot_and_no_payer_sees_it() -> None:
    """Day 1 voided (cap 0): its 6000 reserved. Day 2 owes P3 9000, more than its 6000 of fees: the reserve
    makes it whole (3000 drawn), and every payer pays its fee exactly as it does when day 2 goes unfunded after
    an honest day 1."""
    chain, clock = fee_chain(cap=0)
    ready_session(chain, clock, "day-1", 100, gains={P3.public: HONEST, P1.public: 6_001})
    first = settle(chain, clock, "day-1")[0].events[0][1]
    assert (first["funded"], first["refunded"], first["reserve_before"], first["reserve_after"]) == (
        False,
        0,
        0,
        6_000,
    )
    ready_session(chain, clock, "day-2", 110, gains={P3.public: 9_000})
    result, moved = settle(chain, clock, "day-2")
    second = result.events[0][1]
    assert (second["funded"], second["paid"], second["reserve_after"], fund(chain)) == (
        True,
        9_000,
        3_000,
        3_000,
    )
    assert {k: moved[k] for k in PAYERS} == {P1.public: -2_500, P2.public: -500, P4.public: -1_000}
    done = uplift.outcome(chain.state, "day-2")
    assert done is not None and (done["reserve_before"], done["reserve_after"]) == (6_000, 3_000)


def test_a_withheld_credit_is_reserved_so_the_payers_refund_is_the_one_a_delivered_day_gives() -> None:
    """P1 is owed 2600 and falls short on its own side at cap 3000 after a day that filled the fund to it: its
    credit is withheld into the reserve and the refunds are those of the day it delivers and is paid (before,
    the withheld 2600 came back to the payers too)."""
    outcomes = []
    for short in (None, {P1.public: 1}):
        chain, clock = fee_chain(cap=3_000)
        ready_session(chain, clock, "day-0", 90)
        settle(chain, clock, "day-0")
        ready_session(chain, clock, "day-1", 100, gains={P1.public: HONEST}, short=short)
        settle(chain, clock, "day-1")
        outcomes.append(uplift.outcome(chain.state, "day-1"))
    paid, withheld = outcomes
    assert paid is not None and withheld is not None
    assert paid["credits"] == [[P1.public, HONEST]] and withheld["withheld"] == [[P1.public, HONEST]]
    assert withheld["refunds"] == paid["refunds"] and sum(r for _, r in paid["refunds"]) == 6_000 - HONEST
    assert "reserve_after" not in paid and withheld["reserve_after"] == HONEST


@settings(max_examples=40, deadline=None)
@given(
    fee=st.sampled_from([1_000_000, 2_000_000, 3_000_000, 10**7]),  # whole ticks, as the chain takes them
    cap=st.integers(0, 20_000),
    owed=st.lists(st.sampled_from([0, 1_500, 2_600, 9_000, 20_000]), min_size=1, max_size=3),
    void=st.integers(0, 2),
    voider=st.sampled_from([P1.public, P2.public]),
)
def test_voiding_any_day_leaves_every_payer_where_paying_it_would_or_worse(
    fee: int, cap: int, owed: list[int], void: int, voider: bytes
) -> None:
    """Property (every member solvent): over a run of days where P3 is honestly owed `owed[n]`, a payer that
    voids day `void` with a gain no fund covers leaves every payer - itself included - with at most the
    balance it has when every day is claimed honestly, at the end of every day after."""
    void %= len(owed)
    runs = []
    for voided in (False, True):
        chain, clock = fee_chain(fee=fee, cap=cap)
        path = []
        for n, gain in enumerate(owed):
            gains = {P3.public: gain, **({voider: 10**7} if voided and n == void else {})}
            ready_session(chain, clock, f"day-{n}", 100 + 10 * n, gains=gains)
            settle(chain, clock, f"day-{n}")
            path.append(balances(chain))
            assert 0 <= uplift_fund.fund_reserve(chain.state) <= fund(chain)
        runs.append(path)
    honest, voided_path = runs
    for n in range(void, len(owed)):
        for payer in PAYERS:
            assert voided_path[n][payer] <= honest[n][payer], (n, payer)
    event(f"void day owed {owed[void] > 0}, later days {len(owed) - 1 - void}")

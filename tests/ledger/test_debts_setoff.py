"""N6: opposite debts set off, so money a payer hands over is not handed straight back to it (funds.set_off,
settle_pay's debt-before-money order).

Found by C6: a settlement recorded a payer's unpaid part after its money moved, so where the payee owed the
payer, `collect` handed the money straight back to a payer that owed nothing yet; it then came to owe and kept
it (it may not pay it out), while its creditor waited. Now the debt is recorded first, and a cycle of oldest
debts (A's oldest is to B and B's oldest to A, or round more) is set off by its smallest, no money moving.
It never lets a debt skip ahead of an older one to a third party: the debts of a cycle must each be their
debtor's oldest. Collection on a bare state is test_debts_collect.py's; the model of it all test_debts_model's.
"""

from __future__ import annotations

from ledger_fixtures import Keys
from test_debts import PLENTY, A, B, C, debt_chain, dso_settle, traded
from test_settle_both import PRICE, events
from test_settle_compensation import FEED_IN, RETAIL

from peergrid_ledger import query

BUYER_OWES = PRICE - FEED_IN  # per Wh a buyer did not take
SELLER_OWES = RETAIL - PRICE  # per Wh a seller did not deliver


def test_a_payer_short_of_a_compensation_its_payee_owed_it_keeps_nothing_back() -> None:
    """C6's case: A holds 10,000 and is owed 20,000 by B; A comes to owe B 80,000. Before: A paid B 10,000,
    B handed it straight back to A (its creditor), A then owed 70,000, held 10,000, and B still owed 10,000."""
    c, clock = debt_chain({A: 0, B: 0, C: PLENTY})
    t1 = traded(c, clock, A, B, 1, 100)  # B buys 100 Wh of A and takes none, holding nothing
    assert events(dso_settle(clock, t1, 0, 0, 100))[0][1]["owed"] == 100 * BUYER_OWES
    assert clock.send(C, {"payee": A.public, "amount": 10_000, "ref": "a"}, "pay").ok
    t2 = traded(c, clock, B, A, 2, 400)  # A buys 400 Wh of B and takes none
    settled = events(dso_settle(clock, t2, 0, 0, 400))
    due = 400 * BUYER_OWES
    assert settled[0] == (
        "settled",
        {"trade": t2, "amount": 0, "delivered": 0, "basis": "dso", "compensation": 10_000, "payer": "buyer",
         "owed": due - 10_000},
    )  # fmt: skip
    assert settled[1:] == [
        ("owed_set_off", {"debtor": A.public, "creditor": B.public, "amount": 20_000, "trade": t2,
                          "counter_trade": t1, "owed": due - 30_000}),
        ("owed_set_off", {"debtor": B.public, "creditor": A.public, "amount": 20_000, "trade": t1,
                          "counter_trade": t2, "owed": 0}),
    ]  # fmt: skip
    assert [query.balance(c.state, k.public) for k in (A, B)] == [0, 10_000]
    assert query.debts(c.state, A.public) == [{"amount": due - 30_000, "creditor": B.public, "trade": t2}]
    assert query.debts(c.state, B.public) == []
    # the trade record keeps what was owed at the settlement (the set-off paid part of it at once)
    record = query.settlement(c.state, t2)
    assert record is not None and record["settlement"]["owed"] == {"payer": "buyer", "amount": due - 10_000}


def test_an_energy_payment_left_unpaid_is_set_off_against_the_sellers_debt_to_the_buyer() -> None:
    """unpaid_as_debt: A, holding 5,000, buys 400 Wh of B delivered in full (100,000), and B owes A 20,000:
    20,000 of the unpaid rest is set off, A's 5,000 goes to B and stays there, A owes 75,000."""
    c, clock = debt_chain({A: 0, B: 0, C: PLENTY}, unpaid_as_debt=1)
    t1 = traded(c, clock, A, B, 1, 100)
    events(dso_settle(clock, t1, 0, 0, 100))  # B owes A 20,000
    assert clock.send(C, {"payee": A.public, "amount": 5_000, "ref": "a"}, "pay").ok
    t2 = traded(c, clock, B, A, 2, 400)
    settled = events(dso_settle(clock, t2, 400, 0, 0))
    energy = 400 * PRICE
    assert settled[0][1]["unpaid"] == energy - 5_000
    assert [(name, body["debtor"], body["amount"]) for name, body in settled[1:]] == [
        ("owed_set_off", A.public, 20_000),
        ("owed_set_off", B.public, 20_000),
    ]
    assert [query.balance(c.state, k.public) for k in (A, B)] == [0, 5_000]
    assert query.owed(c.state, A.public) == energy - 25_000 and query.owed(c.state, B.public) == 0


def test_a_debt_to_the_payer_behind_an_older_one_to_a_third_waits_for_it() -> None:
    """B owes C 80,000 (older), then A 5,000; A comes to owe B 80,000 and pays 10,000 of it. B's oldest
    debt is C's: setting A's debt off would pay A ahead of C, so nothing is set off and A's 10,000 goes to C.
    Once C is paid in full, B's oldest is A's and A's is B's: they are set off in the same transaction."""
    c, clock = debt_chain({A: 10_000, B: 0, C: PLENTY})
    t1 = traded(c, clock, C, B, 1, 400)
    events(dso_settle(clock, t1, 0, 0, 400))  # B owes C 80,000
    t2 = traded(c, clock, B, A, 2, 100)
    events(dso_settle(clock, t2, 0, 100, 0))  # B delivers none of 100 Wh: owes A 5,000
    assert [d["creditor"] for d in query.debts(c.state, B.public)] == [C.public, A.public]
    t3 = traded(c, clock, B, A, 3, 400)
    settled = events(dso_settle(clock, t3, 0, 0, 400))  # A takes none: owes B 80,000, pays 10,000
    assert [(name, body["debtor"], body["creditor"], body["amount"]) for name, body in settled[1:]] == [
        ("owed_paid", B.public, C.public, 10_000),
    ]
    assert query.owed(c.state, A.public) == 70_000
    assert [d["amount"] for d in query.debts(c.state, B.public)] == [70_000, 5_000]
    # C pays B 70,000: B pays C in full from it, then its oldest debt is A's, and A's is B's: set off
    paid = events(clock.send(C, {"payee": B.public, "amount": 70_000, "ref": "b"}, "pay"))
    assert [(name, body["debtor"], body["amount"], body.get("owed")) for name, body in paid[1:]] == [
        ("owed_paid", B.public, 70_000, 5_000),
        ("owed_set_off", B.public, 5_000, 0),
        ("owed_set_off", A.public, 5_000, 65_000),
    ]
    assert query.debts(c.state, B.public) == [] and query.owed(c.state, A.public) == 65_000


# the state root of `owing_history()` computed with the contracts before N6's change (git 385b47f)
ROOT_BEFORE = "150c9256253b99d11b885a8ad0421e33fa731dc9860dc9d2c6916cc1094790c5"


def owing_history() -> str:
    """Debts recorded and collected, with unpaid energy and a chain of debts (C owes B, B owes A), but no
    two debts opposite: the contracts before N6 and after write the same state."""
    D = Keys.p4
    c, clock = debt_chain({A: 0, B: 3_000, C: 0, D: PLENTY}, unpaid_as_debt=1)
    t1 = traded(c, clock, A, B, 1, 100)
    events(dso_settle(clock, t1, 60, 0, 40))  # B: energy 15,000 with 3,000, compensation 8,000: owes
    t2 = traded(c, clock, B, C, 2, 50)
    events(dso_settle(clock, t2, 50, 0, 0))  # C owes B 12,500 for the energy
    t3 = traded(c, clock, C, D, 3, 200)
    events(dso_settle(clock, t3, 200, 0, 0))  # D pays C 50,000: C pays B, B pays A
    assert clock.send(D, {"payee": B.public, "amount": 1_000, "ref": "x"}, "pay").ok  # B pays A 1,000
    assert [query.owed(c.state, k.public) for k in (A, B, C, D)] == [0, 20_000 - 13_500, 0, 0]
    return c.state.root.hex()


def test_a_chain_with_debts_none_opposite_keeps_its_bytes() -> None:
    assert owing_history() == ROOT_BEFORE

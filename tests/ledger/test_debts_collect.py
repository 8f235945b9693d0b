"""contracts/funds.py's collection alone, on a bare state: FIFO, at most the credit, through chains and cycles
of debts (each account pays at most once per credit), cycles of oldest debts set off (N6), and refuse_debtor's
limit. The contracts' use of it, on a chain, is test_debts.py's (and test_debts_setoff.py's)."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from test_debts import A, B, C
from test_debts_model import Model

from peergrid_ledger import keyspace as ks
from peergrid_ledger.contracts.funds import collect, debts, debts_key, record_debt, refuse_debtor
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason, RuleError
from peergrid_ledger.state import Overlay, StateTree


def _view(balances: dict[bytes, int]) -> Overlay:
    view = Overlay(StateTree("test-chain"))
    for k, b in balances.items():
        view.put(ks.balance(k), ks.encode_int(b))
    return view


def _held(view: Overlay, *accounts: Keypair) -> list[int]:
    return [ks.decode_int(view.get(ks.balance(k.public))) for k in accounts]


def test_money_collected_for_a_creditor_that_owes_pays_its_debts_in_turn() -> None:
    # A owes B 50, B owes C 100: a credit of 80 to A pays B 50, which B passes on to C
    view = _view({A.public: 80, B.public: 0, C.public: 0})
    record_debt(view, A.public, B.public, 50, b"t1")
    record_debt(view, B.public, C.public, 100, b"t2")
    assert collect(view, A.public, 80) == [
        ("owed_paid", {"debtor": A.public, "creditor": B.public, "amount": 50, "trade": b"t1", "owed": 0}),
        ("owed_paid", {"debtor": B.public, "creditor": C.public, "amount": 50, "trade": b"t2", "owed": 50}),
    ]
    assert _held(view, A, B, C) == [30, 0, 50]
    assert debts(view, A.public) == [] and debts(view, B.public)[0]["amount"] == 50


def test_opposite_debts_set_off_when_each_is_the_others_oldest() -> None:
    # A owes B 100, then B comes to owe A 60: each is the other's oldest debt, so 60 of each is set off
    # (no money moves) and A owes B 40; a credit of 30 to A then pays B, which keeps it (N6: before, the
    # 30 went to B, back to A, and A kept it while it owed)
    view = _view({A.public: 30, B.public: 0})
    assert record_debt(view, A.public, B.public, 100, b"t1") == []
    assert record_debt(view, B.public, A.public, 60, b"t2") == [
        (
            "owed_set_off",
            {
                "debtor": B.public,
                "creditor": A.public,
                "amount": 60,
                "trade": b"t2",
                "counter_trade": b"t1",
                "owed": 0,
            },
        ),
        (
            "owed_set_off",
            {
                "debtor": A.public,
                "creditor": B.public,
                "amount": 60,
                "trade": b"t1",
                "counter_trade": b"t2",
                "owed": 40,
            },
        ),
    ]
    assert _held(view, A, B) == [30, 0] and view.get(debts_key(B.public)) is None
    assert collect(view, A.public, 30) == [
        ("owed_paid", {"debtor": A.public, "creditor": B.public, "amount": 30, "trade": b"t1", "owed": 10}),
    ]
    assert _held(view, A, B) == [0, 30]


def test_a_debt_behind_an_older_one_to_a_third_is_not_set_off_until_that_one_is_paid() -> None:
    # B owes C 20 (older) and A 50; A comes to owe B 50: B's oldest is C's, so setting off would pay A
    # ahead of C: nothing is set off. A credit of 20 to B pays C in full; B's oldest is A's now, and A's is
    # B's: the 50 of each are set off before any more money moves, so B keeps the rest of its credit
    view = _view({A.public: 0, B.public: 35, C.public: 0})
    record_debt(view, B.public, C.public, 20, b"t1")
    record_debt(view, B.public, A.public, 50, b"t2")
    assert record_debt(view, A.public, B.public, 50, b"t3") == []
    assert collect(view, B.public, 35) == [
        ("owed_paid", {"debtor": B.public, "creditor": C.public, "amount": 20, "trade": b"t1", "owed": 50}),
        (
            "owed_set_off",
            {
                "debtor": B.public,
                "creditor": A.public,
                "amount": 50,
                "trade": b"t2",
                "counter_trade": b"t3",
                "owed": 0,
            },
        ),
        (
            "owed_set_off",
            {
                "debtor": A.public,
                "creditor": B.public,
                "amount": 50,
                "trade": b"t3",
                "counter_trade": b"t2",
                "owed": 0,
            },
        ),
    ]
    assert _held(view, A, B, C) == [0, 15, 20]
    assert all(view.get(debts_key(k.public)) is None for k in (A, B, C))


def test_a_cycle_of_oldest_debts_round_three_is_set_off_by_its_smallest() -> None:
    view = _view({})
    record_debt(view, A.public, B.public, 70, b"t1")
    record_debt(view, B.public, C.public, 30, b"t2")
    set_off = record_debt(view, C.public, A.public, 50, b"t3")  # closes A -> B -> C -> A: 30 each
    # each debt names the one owed to its debtor that cancelled it: C's (t3) was met by B's debt to C (t2),
    # A's (t1) by C's debt to A (t3), B's (t2) by A's debt to B (t1)
    assert [
        (e[0], e[1]["debtor"], e[1]["amount"], e[1]["trade"], e[1]["counter_trade"], e[1]["owed"])
        for e in set_off
    ] == [
        ("owed_set_off", C.public, 30, b"t3", b"t2", 20),
        ("owed_set_off", A.public, 30, b"t1", b"t3", 40),
        ("owed_set_off", B.public, 30, b"t2", b"t1", 0),
    ]
    assert [debts(view, k.public) for k in (A, B, C)] == [
        [{"amount": 40, "creditor": B.public, "trade": b"t1"}],
        [],
        [{"amount": 20, "creditor": A.public, "trade": b"t3"}],
    ]


def test_a_cycle_of_debts_ends_where_it_comes_back_to_an_account_that_paid() -> None:
    # A owes B 10, then C 100; B owes D 5, then A 20 (no cycle of oldest debts). A credit of 10 to A pays B;
    # B pays D 5 and A 5, and A, which already paid, keeps it though it owes C (paying again would pass the
    # same money round a cycle until its debts were gone, a step per turn)
    D = Keys.p4
    view = _view({A.public: 10, B.public: 0, C.public: 0, D.public: 0})
    record_debt(view, A.public, B.public, 10, b"t1")
    record_debt(view, A.public, C.public, 100, b"t2")
    record_debt(view, B.public, D.public, 5, b"t3")
    assert record_debt(view, B.public, A.public, 20, b"t4") == []
    assert collect(view, A.public, 10) == [
        ("owed_paid", {"debtor": A.public, "creditor": B.public, "amount": 10, "trade": b"t1", "owed": 100}),
        ("owed_paid", {"debtor": B.public, "creditor": D.public, "amount": 5, "trade": b"t3", "owed": 20}),
        ("owed_paid", {"debtor": B.public, "creditor": A.public, "amount": 5, "trade": b"t4", "owed": 15}),
    ]
    assert _held(view, A, B, C, D) == [5, 0, 0, 5]


def test_an_account_paid_by_two_debtors_pays_once_from_both_parts() -> None:
    # A owes B 10 and C 10 (B's first); B and C each owe D 15, D owes nobody: B's 10 and C's 10 reach D
    D = Keys.p4
    view = _view({A.public: 20, B.public: 0, C.public: 0, D.public: 0})
    record_debt(view, A.public, B.public, 10, b"t1")
    record_debt(view, A.public, C.public, 10, b"t2")
    record_debt(view, B.public, D.public, 15, b"t3")
    record_debt(view, C.public, D.public, 15, b"t4")
    paid = collect(view, A.public, 20)
    assert [(e[1]["debtor"], e[1]["creditor"], e[1]["amount"]) for e in paid] == [
        (A.public, B.public, 10),
        (A.public, C.public, 10),
        (B.public, D.public, 10),
        (C.public, D.public, 10),
    ]
    assert _held(view, A, B, C, D) == [0, 0, 0, 20]


def test_no_credit_collects_nothing_and_a_bad_debt_is_a_contract_bug() -> None:
    view = _view({A.public: 0})
    record_debt(view, A.public, B.public, 100, b"t1")
    assert collect(view, A.public, 0) == [] and debts(view, A.public)[0]["amount"] == 100
    assert collect(view, C.public, 50) == []  # C owes nothing
    for amount, creditor in ((0, B.public), (-1, B.public), (5, A.public)):
        with pytest.raises(AssertionError):
            record_debt(view, A.public, creditor, amount, b"t2")
    refuse_debtor(view, C.public, "a bid")  # no debt: nothing to refuse
    with pytest.raises(RuleError) as refused:
        refuse_debtor(view, A.public, "a bid")
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS and "owes 100 micro-units" in str(refused.value)
    refuse_debtor(view, A.public, "a bid", limit=100)  # owing no more than the limit: may buy
    with pytest.raises(RuleError, match="more than the 99 a member may owe"):
        refuse_debtor(view, A.public, "a bid", limit=99)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([B, C]), st.integers(1, 10_000)), max_size=6),
    st.integers(0, 40_000),
)
def test_collect_pays_fifo_up_to_the_credit_and_conserves_money(
    owed: list[tuple[Keypair, int]], credit: int
) -> None:
    view = _view({A.public: credit, B.public: 0, C.public: 0})
    for i, (creditor, amount) in enumerate(owed):
        record_debt(view, A.public, creditor.public, amount, bytes([i]))
    paid = collect(view, A.public, credit)
    total = sum(a for _, a in owed)
    assert sum(e[1]["amount"] for e in paid) == min(credit, total)
    # FIFO: the parts paid are the debts in order, each in full but the last
    expected, left = [], credit
    for i, (creditor, amount) in enumerate(owed):
        if left == 0:
            break
        part = min(left, amount)
        expected.append((creditor.public, part, bytes([i])))
        left -= part
    assert [(e[1]["creditor"], e[1]["amount"], e[1]["trade"]) for e in paid] == expected
    balances = {k: ks.decode_int(view.get(ks.balance(k.public))) for k in (A, B, C)}
    assert sum(balances.values()) == credit and balances[A] == credit - min(credit, total) >= 0
    remaining = total - min(credit, total)
    assert sum(d["amount"] for d in debts(view, A.public)) == remaining
    assert (view.get(debts_key(A.public)) is None) == (remaining == 0)


FOUR = (A, B, C, Keys.p4)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.permutations(range(4)).map(lambda p: (p[0], p[1])), st.integers(1, 100)), max_size=10
    ),
    st.integers(0, 3),
    st.integers(0, 300),
)
def test_collect_through_any_graph_of_debts_is_the_model_and_bounded(
    owed: list[tuple[tuple[int, int], int]], target: int, credit: int
) -> None:
    held = [credit if i == target else 0 for i in range(4)]
    view = _view({k.public: b for k, b in zip(FOUR, held, strict=True)})
    model = Model(held, FOUR)
    for n, ((i, j), amount) in enumerate(owed):
        set_off = record_debt(view, FOUR[i].public, FOUR[j].public, amount, bytes([n]))
        assert set_off == model.record(FOUR[i].public, FOUR[j].public, amount, bytes([n]))
        if set_off:
            event("debts set off")
    before = sum(d["amount"] for k in FOUR for d in debts(view, k.public))
    paid = collect(view, FOUR[target].public, credit)
    assert paid == model.collect(FOUR[target].public, credit)
    for k in FOUR:
        assert _held(view, k) == [model.balance[k.public]] and model.balance[k.public] >= 0  # none pays more
        assert debts(view, k.public) == [
            {"creditor": c, "amount": a, "trade": t} for c, a, t in model.debts[k.public]
        ]
    assert sum(_held(view, *FOUR)) == credit  # conserved
    after = sum(d["amount"] for k in FOUR for d in debts(view, k.public))
    assert before - after == sum(e[1]["amount"] for e in paid)
    runs = [e[1]["debtor"] for e in paid if e[0] == "owed_paid"]  # money moved: each account once
    assert len({d for d in runs}) == len(
        [d for n, d in enumerate(runs) if n == 0 or runs[n - 1] != d]
    )  # once each
    if len(set(runs)) > 1:
        event("a cascade")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.permutations(range(4)).map(lambda p: (p[0], p[1])), st.integers(1, 100)), max_size=12
    ),
    st.integers(0, 3),
    st.integers(0, 300),
)
def test_an_auditor_pairs_every_set_off_with_the_debt_that_cancelled_it(
    owed: list[tuple[tuple[int, int], int]], target: int, credit: int
) -> None:
    """Each `owed_set_off` names the trade of the debt owed to its debtor that cancelled it (N6 residual): in
    the events of the same transaction there is a set-off of that trade, of the same amount, whose creditor
    is this debtor (trades here are unique per debt, so naming the wrong one finds none)."""
    view = _view({k.public: credit if i == target else 0 for i, k in enumerate(FOUR)})
    batches = [
        record_debt(view, FOUR[i].public, FOUR[j].public, amount, bytes([n]))
        for n, ((i, j), amount) in enumerate(owed)
    ]
    batches.append(collect(view, FOUR[target].public, credit))
    for batch in batches:
        set_offs = [body for name, body in batch if name == "owed_set_off"]
        for body in set_offs:
            counterparts = [
                other
                for other in set_offs
                if other["trade"] == body["counter_trade"]
                and other["creditor"] == body["debtor"]
                and other["amount"] == body["amount"]
            ]
            assert len(counterparts) >= 1, body
        if len(set_offs) > 2:
            event("a cycle of three or more set off")

"""funds.room is the one credit bound: transfer refuses exactly past it, settle_pay.payable pays up to it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis

from peergrid_ledger import keyspace as ks
from peergrid_ledger.contracts.funds import room, transfer
from peergrid_ledger.contracts.settle_pay import payable
from peergrid_ledger.genesis import Params
from peergrid_ledger.machine import BlockContext
from peergrid_ledger.results import Reason, RuleError
from peergrid_ledger.state import Overlay, StateTree

PAYER, PAYEE = Keys.p1.public, Keys.p2.public


def _setup(balance: int, credit: int) -> tuple[Overlay, BlockContext]:
    genesis = make_genesis(params=Params(credit_limit=credit))
    view = Overlay(StateTree(genesis.chain))
    view.put(ks.balance(PAYER), ks.encode_int(balance))
    view.put(ks.balance(PAYEE), ks.encode_int(7))
    return view, BlockContext(genesis, 1, T0 + 1000)


def _balances(view: Overlay) -> tuple[int, int]:
    return tuple(ks.decode_int(view.get(ks.balance(k))) for k in (PAYER, PAYEE))  # type: ignore[return-value]


def test_room_is_balance_plus_credit_and_negative_past_the_limit() -> None:
    assert room(*_setup(1000, 500), PAYER) == 1500
    assert room(*_setup(-800, 500), PAYER) == -300  # already below −credit_limit: no room at all
    view, ctx = _setup(0, 0)
    assert room(view, ctx, Keys.p3.public) == 0  # an account never credited: balance 0


def test_transfer_past_the_room_is_refused_and_writes_nothing() -> None:
    view, ctx = _setup(100, 50)
    with pytest.raises(RuleError) as refused:
        transfer(view, ctx, PAYER, PAYEE, 151, "buyer")
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS and "buyer cannot pay 151" in str(refused.value)
    assert _balances(view) == (100, 7)


@settings(max_examples=200, deadline=None)
@given(
    balance=st.integers(-(10**9), 10**9),
    credit=st.integers(0, 10**9),
    amount=st.integers(0, 3 * 10**9),
)
def test_transfer_and_payable_share_the_bound(balance: int, credit: int, amount: int) -> None:
    view, ctx = _setup(balance, credit)
    bound = room(view, ctx, PAYER)
    assert bound == balance + credit
    part = payable(view, ctx, PAYER, amount)
    assert part == max(0, min(amount, bound))
    # what payable says can be paid, transfer pays (settle_pay transfers only a part > 0: a payer already
    # past its limit is refused even 0, as before room existed), and the payer stays at or above −credit
    if part:
        transfer(view, ctx, PAYER, PAYEE, part, "payer")
        assert balance - part >= -credit
    assert _balances(view) == (balance - part, 7 + part)
    # and one micro-unit more than the room left is refused, with nothing written
    left = room(view, ctx, PAYER)
    if left + 1 > 0:
        before = _balances(view)
        with pytest.raises(RuleError):
            transfer(view, ctx, PAYER, PAYEE, left + 1, "payer")
        assert _balances(view) == before

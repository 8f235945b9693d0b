"""The payments contract (`pay`): moves balances once per (payer, payee, ref), refuses what it must."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, key, make_genesis, reason, submit_checked

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.payments import MAX_AMOUNT, payment
from peergrid_ledger.genesis import Params
from peergrid_ledger.results import Accepted, Reason

PARTIES = (Keys.p1, Keys.p2, Keys.p3, Keys.p4)


def payments_chain(credit: int = 0) -> LocalChain:
    genesis = make_genesis(contracts=("market", "payments"), params=Params(credit_limit=credit))
    return LocalChain(genesis, Keys.authority)


def body(payee: bytes, amount: int, ref: str = "uplift/day-0") -> dict[str, Any]:
    return {"payee": payee, "amount": amount, "ref": ref}


def test_a_payment_moves_the_amount_once_and_is_recorded() -> None:
    chain = payments_chain()
    result = chain.sign_and_submit(Keys.p1, "pay", body(Keys.p2.public, 400))
    assert isinstance(result, Accepted)
    assert result.events == (
        ("paid", {"payer": Keys.p1.public, "payee": Keys.p2.public, "amount": 400, "ref": "uplift/day-0"}),
    )
    chain.seal()
    assert query.balance(chain.state, Keys.p1.public) == 600
    assert query.balance(chain.state, Keys.p2.public) == 1400
    record = payment(chain.state, Keys.p1.public, Keys.p2.public, "uplift/day-0")
    assert record == {"amount": 400, "txid": result.txid}
    # the same payment again, under the next nonce (a retry): refused, and nothing moves
    assert not submit_checked(chain, Keys.p1, "pay", body(Keys.p2.public, 400))
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.p2.public, 1))) is Reason.DUPLICATE
    chain.seal()
    assert query.balance(chain.state, Keys.p1.public) == 600
    assert query.balance(chain.state, Keys.p2.public) == 1400


def test_the_same_reference_to_another_payee_or_another_reference_is_a_new_payment() -> None:
    chain = payments_chain()
    assert submit_checked(chain, Keys.p1, "pay", body(Keys.p2.public, 100))
    assert submit_checked(chain, Keys.p1, "pay", body(Keys.p3.public, 100))
    assert submit_checked(chain, Keys.p1, "pay", body(Keys.p2.public, 100, "uplift/day-1"))
    assert submit_checked(chain, Keys.p2, "pay", body(Keys.p1.public, 50))  # the other direction
    chain.seal()
    assert [query.balance(chain.state, k.public) for k in PARTIES] == [750, 1150, 1100, 1000]


@pytest.mark.parametrize("amount", [0, -5, MAX_AMOUNT + 1])
def test_a_bad_amount_is_refused(amount: int) -> None:
    chain = payments_chain()
    assert not submit_checked(chain, Keys.p1, "pay", body(Keys.p2.public, amount))
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.p2.public, amount))) is Reason.MALFORMED


def test_paying_oneself_is_refused() -> None:
    chain = payments_chain()
    assert not submit_checked(chain, Keys.p1, "pay", body(Keys.p1.public, 10))
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.p1.public, 10))) is Reason.INVALID


def test_an_unknown_or_revoked_payee_and_an_unknown_or_non_participant_payer_are_refused() -> None:
    chain = payments_chain()
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.stranger.public, 10))) is Reason.NOT_FOUND
    stranger = key("stranger")
    assert reason(chain.sign_and_submit(stranger, "pay", body(Keys.p1.public, 10))) is Reason.UNKNOWN_SENDER
    assert reason(chain.sign_and_submit(Keys.dso, "pay", body(Keys.p1.public, 10))) is Reason.FORBIDDEN
    assert isinstance(
        chain.sign_and_submit(Keys.dso, "gov.revoke", {"key": Keys.p4.public, "operator": "op"}), Accepted
    )
    assert not submit_checked(chain, Keys.p1, "pay", body(Keys.p4.public, 10))
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.p4.public, 10))) is Reason.FORBIDDEN
    chain.seal()
    assert query.balance(chain.state, Keys.p1.public) == 1000


def test_a_payer_may_go_below_zero_only_within_the_credit_limit() -> None:
    chain = payments_chain(credit=500)
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.p2.public, 1501))) is (
        Reason.INSUFFICIENT_FUNDS
    )
    assert submit_checked(chain, Keys.p1, "pay", body(Keys.p2.public, 1500))
    chain.seal()
    assert query.balance(chain.state, Keys.p1.public) == -500
    assert query.balance(chain.state, Keys.p2.public) == 2500


def test_a_chain_without_the_payments_contract_has_no_pay() -> None:
    chain = LocalChain(make_genesis(contracts=("market",)), Keys.authority)
    assert reason(chain.sign_and_submit(Keys.p1, "pay", body(Keys.p2.public, 10))) is Reason.UNKNOWN_KIND


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 3), st.integers(1, 700), st.sampled_from(["d0", "d1", "d2"])
        ),
        max_size=25,
    )
)
def test_payments_conserve_money_and_each_reference_pays_once(
    moves: list[tuple[int, int, int, str]],
) -> None:
    chain = payments_chain(credit=2000)
    expected = [1000, 1000, 1000, 1000]
    paid: set[tuple[int, int, str]] = set()
    for payer, payee, amount, ref in moves:
        ok = submit_checked(chain, PARTIES[payer], "pay", body(PARTIES[payee].public, amount, ref))
        should = payer != payee and (payer, payee, ref) not in paid and expected[payer] - amount >= -2000
        assert ok == should
        if ok:
            paid.add((payer, payee, ref))
            expected[payer] -= amount
            expected[payee] += amount
    chain.seal()
    balances = [query.balance(chain.state, k.public) for k in PARTIES]
    assert balances == expected and sum(balances) == 4000

"""review13 F5: a position's round is at most one past the interval's highest round (`market._check_round`),
so no participant can number its position at the schema's last round and push every re-bargaining move after
a `market.reopen` (numbered on from the highest round) out of range."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, make_genesis, reason

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.results import Reason

SELLER, ATTACKER, BUYER = Keys.p1, Keys.p2, Keys.p3
LAST_ROUND = 1_000_000  # the schema's ROUND maximum


def _chain() -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", balance=10**9)
            for i, k in enumerate((SELLER, ATTACKER, BUYER))
        ),
    )
    return LocalChain(make_genesis(accounts=accounts, params=Params(max_reopens=2)), Keys.authority)


def _send(c: LocalChain, who: Any, kind: str, body: dict[str, Any]) -> Any:
    result = c.sign_and_submit(who, kind, body)
    c.seal()
    return result


def _offer(r: int, price: int = 200) -> dict[str, Any]:
    return {"interval": 1, "round": r, "price": price, "quantity": 500, "clean": False}


def _move(r: int, price: int = 200) -> dict[str, Any]:
    return {"interval": 1, "round": r, "price": price, "quantity": 500}


def test_an_opening_far_ahead_is_refused() -> None:
    c = _chain()
    assert _send(c, SELLER, "offer", _offer(1)).ok
    refused = _send(c, ATTACKER, "offer", _offer(LAST_ROUND))
    assert reason(refused) is Reason.RULE_VIOLATION and "highest round is 1" in str(refused)
    assert reason(_send(c, ATTACKER, "offer", _offer(2 + market.OPENING_SLACK))) is Reason.RULE_VIOLATION
    assert _send(c, ATTACKER, "offer", _offer(1 + market.OPENING_SLACK)).ok  # a late joiner's slack
    bid = {"interval": 1, "round": 0, "demands": []}
    assert (
        reason(_send(c, BUYER, "bid", {**bid, "round": 2 + 2 * market.OPENING_SLACK}))
        is Reason.RULE_VIOLATION
    )


def test_a_move_climbs_one_round_past_the_highest_at_most() -> None:
    c = _chain()
    assert _send(c, SELLER, "offer", _offer(1)).ok
    assert _send(c, ATTACKER, "offer", _offer(1)).ok
    for r in (2, 3, 4):
        assert _send(c, SELLER, "move", _move(r)).ok
    assert reason(_send(c, ATTACKER, "move", _move(6))) is Reason.RULE_VIOLATION
    assert _send(c, ATTACKER, "move", _move(5)).ok  # behind by three: catches up to one past the top
    bid = {"interval": 1, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 100}]}
    assert _send(c, BUYER, "bid", bid).ok
    again = {"interval": 1, "round": 7, "demands": bid["demands"]}
    assert reason(_send(c, BUYER, "move", again)) is Reason.RULE_VIOLATION
    assert _send(c, BUYER, "move", {**again, "round": 6}).ok


def test_rebargaining_after_a_reopening_stays_in_range() -> None:
    c = _chain()
    assert _send(c, SELLER, "offer", _offer(1)).ok
    assert _send(c, ATTACKER, "offer", _offer(1)).ok
    assert reason(_send(c, ATTACKER, "move", _move(LAST_ROUND))) is Reason.RULE_VIOLATION
    bid = {"interval": 1, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 100}]}
    assert _send(c, BUYER, "bid", bid).ok
    assert _send(c, SELLER, "trade", {"interval": 1}).ok
    until = 2**62
    assert _send(
        c, Keys.dso, "market.reopen", {"interval": 1, "iteration": 1, "ref": b"\x02" * 32, "until": until}
    ).ok
    top = market.reopening(c.view, 1)
    assert top is not None and top["round"] == 1
    assert _send(c, SELLER, "move", _move(2, 190)).ok  # the honest MGMCs re-bargain from round 2
    assert _send(c, BUYER, "move", {"interval": 1, "round": 2, "demands": bid["demands"]}).ok


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.integers(1, 12)), min_size=1, max_size=12))
def test_each_move_lifts_the_highest_round_by_one_at_most(steps: list[tuple[int, int]]) -> None:
    """Any sequence of moves by two sellers: the highest round grows by at most one per accepted move, so a
    round near the schema's last takes about a million transactions, not one."""
    c = _chain()
    who = (SELLER, ATTACKER)
    for k in who:
        assert _send(c, k, "offer", _offer(1)).ok
    top = 1
    for side, r in steps:
        own = market.offer(c.view, 1, who[side].public)["round"]  # type: ignore[index]
        assert _send(c, who[side], "move", _move(r)).ok == (own < r <= top + 1)
        rounds = [market.offer(c.view, 1, k.public)["round"] for k in who]  # type: ignore[index]
        assert max(rounds) <= top + 1
        top = max(rounds)

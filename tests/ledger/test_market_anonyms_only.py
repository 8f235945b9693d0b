"""review14 K1, K2 (the contract's side): on a `settle_by_both` chain only an MGMC's anonym trades.

Every MGMC has two participant keys on the MGMC chain, its anonym and its node key (role `mgmc`). The DSO,
which alone settles a dispute and vouches for a seller there, meters and prices each MG by its anonym, and a
debt is its anonym's. So `offer`, `bid` and `move`, an exchange session's members and their
`exchange.position` / `exchange.accept` are refused `forbidden` for any other key, naming the rule; a chain
without `settle_by_both` (nobody meters, nobody owes) takes every participant as before. Real contract
(LocalChain); a refusal must change nothing (`submit_checked`).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, key, make_genesis, reason, submit_checked
from test_settle_both import ENDED_LONG_AGO, accounts

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import session as exchange_session
from peergrid_ledger.contracts.market_state import ANONYMS_ONLY
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected

SELLER, BUYER, OTHER = Keys.p1, Keys.p3, Keys.p2
NODE = key("node-of-p3")  # BUYER's MGMC's node key: role mgmc, authorised, with money of its own
PRICE = 200
# every settle_by_both chain: plain, with the DSO's vouch for sellers, with sealed statements
BOTH_CHAINS = {
    "settle_by_both": {},
    "seller_vouched": {"seller_vouched": 1},
    "sealed_statements": {"sealed_statements": 1},
}


def chain(
    settle_by_both: bool = True, contracts: tuple[str, ...] = ("market",), balance: int = 10**7, **more: int
) -> LocalChain:
    node = Account(NODE.public, ("mgmc",), "node", balance=10**7)
    if settle_by_both:
        params = Params(credit_limit=0, settle_by_both=1, settle_wait_ms=60_000, **ENDED_LONG_AGO, **more)
    else:
        params = Params(credit_limit=0)
    genesis = make_genesis(accounts=(*accounts(balance), node), params=params, contracts=contracts)
    return LocalChain(genesis, Keys.authority)


class At:
    """Each transaction sealed alone, one ms after the last."""

    def __init__(self, c: LocalChain) -> None:
        self.c, self.now = c, T0 + 10_000

    def send(self, who: Keypair, kind: str, body: dict[str, Any]) -> Accepted | Rejected:
        self.now += 1
        before = dict(self.c._pending_view.writes)
        result = self.c.sign_and_submit(who, kind, body, time_ms=self.now)
        if not result.ok:
            assert dict(self.c._pending_view.writes) == before, f"a refused {kind} changed state: {result}"
        self.c.seal(self.now)
        return result


def offer(interval: int = 1, quantity: int = 1000, round_: int = 0) -> dict[str, Any]:
    return {"interval": interval, "round": round_, "price": PRICE, "quantity": quantity, "clean": False}


def demand(seller: Keypair, quantity: int, interval: int = 1, round_: int = 0) -> dict[str, Any]:
    return {
        "interval": interval,
        "round": round_,
        "demands": [{"seller": seller.public, "quantity": quantity}],
    }


def anonyms_only(result: Accepted | Rejected, kind: str) -> None:
    assert reason(result) is Reason.FORBIDDEN
    assert f"{kind}: {ANONYMS_ONLY}" in str(result) and "['mgmc']" in str(result)


@pytest.mark.parametrize("params", BOTH_CHAINS.values(), ids=list(BOTH_CHAINS))
def test_a_node_key_neither_offers_nor_bids_nor_moves_where_the_dso_meters(params: dict[str, int]) -> None:
    c = chain(**params)
    at = At(c)
    anonyms_only(at.send(NODE, "offer", offer()), "offer")
    assert at.send(SELLER, "offer", offer()).ok
    anonyms_only(at.send(NODE, "bid", demand(SELLER, 300)), "bid")
    anonyms_only(at.send(NODE, "bid", {"interval": 1, "round": 0, "demands": []}), "bid")  # not even empty
    # a move names the rule too, not "no open offer": the key never holds a position here
    seller_move = {"interval": 1, "round": 1, "price": PRICE, "quantity": 500}
    anonyms_only(at.send(NODE, "move", seller_move), "move")
    anonyms_only(at.send(NODE, "move", demand(SELLER, 300, round_=1)), "move")
    assert query.interval(c.state, 1)["buyers"] == []
    # the anonym bargains as ever, and only anonyms are the parties of the interval's trades
    assert at.send(BUYER, "bid", demand(SELLER, 300)).ok
    assert at.send(BUYER, "move", demand(SELLER, 400, round_=1)).ok
    assert at.send(BUYER, "trade", {"interval": 1}).ok
    [(_, agreed)] = query.trades(c.state, 1)
    assert (agreed["seller"], agreed["buyer"], agreed["quantity"]) == (SELLER.public, BUYER.public, 400)


def test_without_settle_by_both_every_participant_trades_as_before() -> None:
    c = chain(settle_by_both=False)
    at = At(c)
    assert at.send(SELLER, "offer", offer()).ok
    assert at.send(NODE, "bid", demand(SELLER, 300)).ok
    assert at.send(NODE, "move", demand(SELLER, 350, round_=1)).ok
    assert at.send(NODE, "trade", {"interval": 1}).ok
    [(_, agreed)] = query.trades(c.state, 1)
    assert agreed["buyer"] == NODE.public and agreed["quantity"] == 350


def test_the_dso_and_a_stranger_are_refused_as_before() -> None:
    """Keys with no participant role keep the participant rule's refusal (the role names both)."""
    at = At(chain())
    for who in (Keys.dso, Keys.authority):
        refused = at.send(who, "offer", offer())
        assert reason(refused) is Reason.FORBIDDEN and "needs one of the roles" in str(refused)


def test_an_mg_whose_anonym_owes_does_not_buy_under_its_node_key() -> None:
    """R14 K2: with unpaid_as_debt the buyer's anonym owes what it could not pay; its bid is refused
    `insufficient-funds`, and its node key (which has money) may not bid instead."""
    c = chain(unpaid_as_debt=1, balance=0)  # the anonyms hold nothing, the node key 10**7
    at = At(c)
    assert at.send(SELLER, "offer", offer()).ok
    assert at.send(BUYER, "bid", demand(SELLER, 400)).ok
    assert at.send(BUYER, "trade", {"interval": 1}).ok
    [(tid, _)] = query.trades(c.state, 1)
    assert at.send(SELLER, "settle", {"trade": tid, "delivered": 400}).ok
    assert at.send(BUYER, "settle", {"trade": tid, "delivered": 400}).ok
    assert query.owed(c.state, BUYER.public) == PRICE * 400
    assert at.send(SELLER, "offer", offer(interval=2)).ok
    assert reason(at.send(BUYER, "bid", demand(SELLER, 300, interval=2))) is Reason.INSUFFICIENT_FUNDS
    anonyms_only(at.send(NODE, "bid", demand(SELLER, 300, interval=2)), "bid")
    assert query.interval(c.state, 2)["buyers"] == []


# ---------------------------------------------------------------------------------------------- the exchange


def session(members: tuple[Keypair, ...], name: str = "day-1") -> dict[str, Any]:
    return {
        "session": name,
        "first_interval": 100,
        "members": [m.public for m in members],
        "prices": [50_000_000, 80_000_000],
        "rho": 5_000_000,
    }


def test_an_exchange_session_takes_only_anonyms_where_the_dso_meters() -> None:
    c = chain(contracts=("market", "exchange"))
    at = At(c)
    refused = at.send(Keys.dso, "exchange.open", session((SELLER, NODE)))
    anonyms_only(refused, "exchange.open")
    assert NODE.public.hex()[:16] in str(refused)
    assert exchange_session(c.state, "day-1") is None
    # without settle_by_both the node key is a member as before
    plain = chain(settle_by_both=False, contracts=("market", "exchange"))
    assert submit_checked(plain, Keys.dso, "exchange.open", session((SELLER, NODE)))


def test_a_node_keys_position_and_accept_name_the_rule() -> None:
    """A node key is never a member here; its position and accept say why, not only 'not a member'."""
    c = chain(contracts=("market", "exchange"))
    at = At(c)
    assert at.send(Keys.dso, "exchange.open", session((SELLER, BUYER))).ok
    post = {"session": "day-1", "iteration": 0, "positions": [100, -100]}
    anonyms_only(at.send(NODE, "exchange.position", post), "exchange.position")
    for member, positions in ((SELLER, [100, 0]), (BUYER, [-100, 0])):
        assert at.send(member, "exchange.position", {**post, "positions": positions}).ok
    assert at.send(Keys.dso, "exchange.step", {"session": "day-1", "iteration": 0, "rho": 5_000_000}).ok
    assert at.send(Keys.dso, "exchange.close", {"session": "day-1", "iteration": 1}).ok
    accept = {"session": "day-1", "positions": [0, 0], "clean": False}
    anonyms_only(at.send(NODE, "exchange.accept", accept), "exchange.accept")
    assert at.send(SELLER, "exchange.accept", {**accept, "positions": [100, 0]}).ok


# ---------------------------------------------------------------------------------------------- any order

TRADERS = {"seller": SELLER, "buyer": BUYER, "other": OTHER, "node": NODE}
Action = tuple[str, str, int, int]  # (who, what, quantity, round)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    both=st.booleans(),
    actions=st.lists(
        st.tuples(
            st.sampled_from(sorted(TRADERS)),
            st.sampled_from(["offer", "bid", "sell-move", "buy-move"]),
            st.integers(0, 600),
            st.integers(0, 3),
        ),
        max_size=12,
    ),
)
def test_in_any_order_only_anonyms_are_parties_where_the_dso_meters(
    both: bool, actions: list[Action]
) -> None:
    """Random offers, bids and moves of three anonyms and a node key, then the close: on a settle_by_both chain
    no trade has the node key as a party and every one of its transactions was refused naming the rule; on a
    default chain the node key's transactions meet only the rules they met before."""
    c = chain(settle_by_both=both)
    at = At(c)
    node_refusals = 0
    for who, what, quantity, round_ in actions:
        key_ = TRADERS[who]
        peer = TRADERS["seller" if who != "seller" else "other"]
        body: dict[str, Any]
        if what == "offer":
            kind, body = "offer", offer(quantity=quantity, round_=round_)
        elif what == "bid":
            kind, body = "bid", demand(peer, quantity, round_=round_)
            if not quantity:
                body["demands"] = []  # an empty bid: joins the interval, buys nothing
        elif what == "sell-move":
            kind, body = "move", {"interval": 1, "round": round_, "price": PRICE, "quantity": quantity}
        else:
            kind, body = "move", demand(peer, max(quantity, 1), round_=round_)
        result = at.send(key_, kind, body)
        if who == "node" and both:
            anonyms_only(result, kind)
            node_refusals += 1
        elif who == "node" and not result.ok:
            assert ANONYMS_ONLY not in str(result)
    if query.interval(c.state, 1)["sellers"]:
        at.send(SELLER, "trade", {"interval": 1})
    parties = {k for _, t in query.trades(c.state, 1) for k in (t["seller"], t["buyer"])}
    if both:
        assert NODE.public not in parties
        assert node_refusals == sum(1 for who, *_ in actions if who == "node")
        interval = query.interval(c.state, 1)
        assert NODE.public not in interval["sellers"] + interval["buyers"]

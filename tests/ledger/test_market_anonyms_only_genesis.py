"""Genesis `anonyms_only` (review17 K-B, the ledger's half): with it only an MGMC's anonym trades on a chain
without `settle_by_both` too - `offer`, `bid`, `move`, an exchange session's members and their
`exchange.position` / `exchange.accept` refuse any other key `forbidden`, naming the flag - so an MGMC cannot
trade with itself through its node key to set the price every other MGMC forecasts from. It is a consensus rule,
so it is opt-in by genesis: 0 (the default) is not encoded and every genesis written before it keeps its bytes
and hash (pinned below, computed before the parameter existed), and such a chain takes every participant as
before (test_market_anonyms_only.py, unchanged). Real contract (LocalChain); a refusal changes nothing (`At`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, key, make_genesis, reason
from test_market_anonyms_only import BUYER, NODE, OTHER, PRICE, SELLER, At, demand, offer, session
from test_settle_both import accounts

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import session as exchange_session
from peergrid_ledger.contracts.market_state import ANONYMS_ONLY
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.results import Accepted, Reason, Rejected

NODE_ACCOUNT = Account(NODE.public, ("mgmc",), "node", balance=10**7)
BOTH = {"settle_by_both": 1, "settle_wait_ms": 60_000, "settle_interval_ms": 900_000}


def genesis(params: Params, contracts: tuple[str, ...] = ("market",)) -> Genesis:
    return make_genesis(accounts=(*accounts(10**7), NODE_ACCOUNT), params=params, contracts=contracts)


def chain(anonyms_only: int = 1, contracts: tuple[str, ...] = ("market",), **more: int) -> LocalChain:
    return LocalChain(
        genesis(Params(credit_limit=0, anonyms_only=anonyms_only, **more), contracts), Keys.authority
    )


def refused_by(flag: str, result: Accepted | Rejected, kind: str) -> None:
    """Refused `forbidden`, naming the rule, the flag that makes it and the key's roles."""
    assert reason(result) is Reason.FORBIDDEN
    assert f"{kind}: {ANONYMS_ONLY} ({flag}:" in str(result) and "['mgmc']" in str(result)


# ---------------------------------------------------------------------------------------------- the genesis

# genesis hashes computed before the parameter existed (the ledger at 2aaaee9, with git archive): the test
# chains' plain and exchange genesis, the node-key chain below, and a settle_by_both chain with most late
# parameters set
OLD = {
    "plain": "832dbf9236c5c4d1f8eadeb1337666b1dac4d9c91b32b5f48d7b6ec2a78b286a",
    "exchange": "b6086d45890e9770493e539e305104d11535ae8788bc4a6f35c25fd38adb1b0e",
    "node-key": "f6bacb84e202ac3dacd974da246d541c003596819fbed2c33df96116f4656b26",
    "settle-by-both": "fd99cb315585c1a4ce3924a8da8fdab02455c4a9bb044676371a4a2593245f47",
}
LATE = {
    "max_reopens": 2,
    "cap_on_fills": 1,
    **BOTH,
    "sealed_statements": 1,
    "seller_vouched": 1,
    "unpaid_as_debt": 1,
    "accept_rounds": 2,
    "uplift_claim_ms": 600_000,
}
OLD_GENESES = {
    "plain": lambda p: make_genesis(params=p),
    "exchange": lambda p: make_genesis(contracts=("market", "exchange"), params=p),
    "node-key": lambda p: genesis(p, ("market", "exchange")),
    "settle-by-both": lambda p: genesis(p, ("market", "exchange", "uplift")),
}
OLD_PARAMS = {
    "plain": Params(credit_limit=0),
    "exchange": Params(credit_limit=10**12),
    "node-key": Params(credit_limit=0),
    "settle-by-both": Params(credit_limit=0, **LATE),
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_without_the_flag_every_genesis_keeps_its_bytes_and_hash(name: str) -> None:
    old = OLD_GENESES[name](OLD_PARAMS[name])
    assert old.params.anonyms_only == 0 and old.hash.hex() == OLD[name]
    assert b"anonyms_only" not in old.encode() and "anonyms_only" not in old.to_value()["params"]
    # people may spell the default out in JSON: it is dropped, and the old hash stands
    doc = old.to_json()
    doc["params"]["anonyms_only"] = 0
    assert Genesis.from_json(json.loads(json.dumps(doc))).hash.hex() == OLD[name]
    flagged = OLD_GENESES[name](replace(OLD_PARAMS[name], anonyms_only=1))
    assert flagged.to_value()["params"]["anonyms_only"] == 1 and flagged.hash.hex() != OLD[name]
    assert Genesis.decode(flagged.encode()).params == flagged.params
    assert Genesis.from_json(json.loads(json.dumps(flagged.to_json()))).hash == flagged.hash


@settings(max_examples=80, deadline=None)
@given(
    flags=st.fixed_dictionaries(
        {name: st.integers(0, 1) for name in ("cap_on_fills", "sealed_statements", "seller_vouched")}
    ),
    both=st.booleans(),
    reopens=st.integers(0, 5),
    credit=st.integers(0, 10**12),
)
def test_the_flag_adds_exactly_its_own_key_to_any_genesis(
    flags: dict[str, int], both: bool, reopens: int, credit: int
) -> None:
    """For any parameters the genesis without the flag encodes no trace of it, and with it exactly one more key,
    every other parameter as it was; both round-trip through bytes and JSON."""
    if not both:
        flags = {**flags, "sealed_statements": 0, "seller_vouched": 0}  # those need settle_by_both
    params = Params(credit_limit=credit, max_reopens=reopens, **flags, **(BOTH if both else {}))
    without, with_ = genesis(params), genesis(replace(params, anonyms_only=1))
    assert b"anonyms_only" not in without.encode()
    written = dict(with_.to_value()["params"])
    assert written.pop("anonyms_only") == 1 and written == without.to_value()["params"]
    for g in (without, with_):
        assert Genesis.decode(g.encode()).hash == g.hash
        assert Genesis.from_json(json.loads(json.dumps(g.to_json()))).hash == g.hash


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"anonyms_only": 2}, "params.anonyms_only: expected 0 or 1"),
        ({"anonyms_only": 0}, "params.anonyms_only: 0 is the default; omit it"),
        ({"anonyms_only": -1}, r"params.anonyms_only: expected an integer in \[0, 2\*\*63\)"),
        ({"anonyms_only": True}, r"params.anonyms_only: expected an integer in \[0, 2\*\*63\)"),
    ],
)
def test_bad_values_are_refused_with_one_line(value: dict[str, Any], words: str) -> None:
    with pytest.raises(GenesisError, match=words):
        Params.from_value({**Params().to_value(), **value})


def test_two_is_refused_when_built_too() -> None:
    with pytest.raises(GenesisError, match=r"params\.anonyms_only: expected 0 or 1"):
        Params(anonyms_only=2)


# ---------------------------------------------------------------------------------------------- the market


def test_a_node_key_neither_offers_nor_bids_nor_moves_with_the_flag() -> None:
    c = chain()
    at = At(c)
    refused_by("anonyms_only", at.send(NODE, "offer", offer()), "offer")
    assert at.send(SELLER, "offer", offer()).ok
    refused_by("anonyms_only", at.send(NODE, "bid", demand(SELLER, 300)), "bid")
    refused_by("anonyms_only", at.send(NODE, "bid", {"interval": 1, "round": 0, "demands": []}), "bid")
    seller_move = {"interval": 1, "round": 1, "price": PRICE, "quantity": 500}
    refused_by("anonyms_only", at.send(NODE, "move", seller_move), "move")
    refused_by("anonyms_only", at.send(NODE, "move", demand(SELLER, 300, round_=1)), "move")
    interval = query.interval(c.state, 1)
    assert NODE.public not in interval["sellers"] + interval["buyers"]
    # the anonyms bargain, close and settle as on any chain without settle_by_both (the first settle pays)
    assert at.send(BUYER, "bid", demand(SELLER, 300)).ok
    assert at.send(BUYER, "move", demand(SELLER, 400, round_=1)).ok
    assert at.send(BUYER, "trade", {"interval": 1}).ok
    [(tid, agreed)] = query.trades(c.state, 1)
    assert (agreed["seller"], agreed["buyer"], agreed["quantity"]) == (SELLER.public, BUYER.public, 400)
    before = query.balance(c.state, SELLER.public)
    assert at.send(BUYER, "settle", {"trade": tid, "delivered": 400}).ok
    assert query.balance(c.state, SELLER.public) == before + 400 * PRICE


def test_with_settle_by_both_too_the_refusal_names_settle_by_both() -> None:
    """Both flags: the same refusal, and the reason given is the DSO's metering, as on any settle_by_both chain."""
    at = At(chain(**BOTH))
    refused_by("settle_by_both", at.send(NODE, "offer", offer()), "offer")
    assert at.send(SELLER, "offer", offer()).ok
    refused_by("settle_by_both", at.send(NODE, "bid", demand(SELLER, 300)), "bid")


def test_an_anonym_enrolled_after_genesis_trades_and_its_node_key_does_not() -> None:
    """The flag reads each sender's role off the state: `enrol` makes a new MG's anonym a trader at once, and the
    node key it names (role mgmc) stays refused."""
    c = chain()
    at = At(c)
    node9, anonym9 = key("mgmc-9"), key("anonym-9")
    refused = at.send(anonym9, "offer", offer())
    assert reason(refused) is Reason.UNKNOWN_SENDER
    assert at.send(Keys.dso, "enrol", {"mgmc": node9.public, "anonym": anonym9.public, "label": "mg9"}).ok
    assert at.send(anonym9, "offer", offer()).ok
    refused_by("anonyms_only", at.send(node9, "offer", offer(interval=2)), "offer")
    assert anonym9.public in query.interval(c.state, 1)["sellers"]


# ---------------------------------------------------------------------------------------------- the exchange


def test_an_exchange_session_takes_only_anonyms_with_the_flag() -> None:
    c = chain(contracts=("market", "exchange"))
    at = At(c)
    refused = at.send(Keys.dso, "exchange.open", session((SELLER, NODE)))
    refused_by("anonyms_only", refused, "exchange.open")
    assert NODE.public.hex()[:16] in str(refused)
    assert exchange_session(c.state, "day-1") is None
    assert at.send(Keys.dso, "exchange.open", session((SELLER, BUYER))).ok


def test_a_node_keys_position_and_accept_name_the_flag() -> None:
    c = chain(contracts=("market", "exchange"))
    at = At(c)
    assert at.send(Keys.dso, "exchange.open", session((SELLER, BUYER))).ok
    post = {"session": "day-1", "iteration": 0, "positions": [100, -100]}
    refused_by("anonyms_only", at.send(NODE, "exchange.position", post), "exchange.position")
    for member, positions in ((SELLER, [100, 0]), (BUYER, [-100, 0])):
        assert at.send(member, "exchange.position", {**post, "positions": positions}).ok
    assert at.send(Keys.dso, "exchange.step", {"session": "day-1", "iteration": 0, "rho": 5_000_000}).ok
    assert at.send(Keys.dso, "exchange.close", {"session": "day-1", "iteration": 1}).ok
    accept = {"session": "day-1", "positions": [0, 0], "clean": False}
    refused_by("anonyms_only", at.send(NODE, "exchange.accept", accept), "exchange.accept")
    assert at.send(SELLER, "exchange.accept", {**accept, "positions": [100, 0]}).ok


# ---------------------------------------------------------------------------------------------- any order

TRADERS = {"seller": SELLER, "buyer": BUYER, "other": OTHER, "node": NODE}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(
        st.tuples(
            st.sampled_from(sorted(TRADERS)),
            st.sampled_from(["offer", "bid", "sell-move", "buy-move"]),
            st.integers(1, 600),
            st.integers(0, 3),
        ),
        max_size=12,
    ),
)
def test_in_any_order_the_flag_keeps_the_node_key_out_and_nobody_else(
    actions: list[tuple[str, str, int, int]],
) -> None:
    """Random offers, bids and moves of three anonyms and a node key, sent to two chains without settle_by_both,
    one with the flag and one without, then the close: with it every node-key transaction is refused naming it and
    no trade has the node key as a party; without it the node key meets only the rules it met before. Until the
    node key holds a position on the plain chain, each anonym's transaction meets the same result on both (the
    flag changes nothing for an anonym)."""
    chains = {1: chain(anonyms_only=1), 0: chain(anonyms_only=0)}
    senders = {flag: At(c) for flag, c in chains.items()}
    node_in = False  # the node key holds a position on the plain chain
    for who, what, quantity, round_ in actions:
        peer = TRADERS["seller" if who != "seller" else "other"]
        body: dict[str, Any]
        if what == "offer":
            kind, body = "offer", offer(quantity=quantity, round_=round_)
        elif what == "bid":
            kind, body = "bid", demand(peer, quantity, round_=round_)
        elif what == "sell-move":
            kind, body = "move", {"interval": 1, "round": round_, "price": PRICE, "quantity": quantity}
        else:
            kind, body = "move", demand(peer, quantity, round_=round_)
        flagged, plain = (senders[flag].send(TRADERS[who], kind, body) for flag in (1, 0))
        if who == "node":
            refused_by("anonyms_only", flagged, kind)
            assert ANONYMS_ONLY not in str(plain)
            node_in = node_in or plain.ok
        elif not node_in:
            assert _outcome(flagged) == _outcome(plain)
    for c, at in zip(chains.values(), senders.values(), strict=True):
        if query.interval(c.state, 1)["sellers"]:
            at.send(SELLER, "trade", {"interval": 1})
    parties = {k for _, t in query.trades(chains[1].state, 1) for k in (t["seller"], t["buyer"])}
    interval = query.interval(chains[1].state, 1)
    assert NODE.public not in parties | set(interval["sellers"] + interval["buyers"])
    if not node_in:  # the same book: the same trades, to the Wh
        assert [t for _, t in query.trades(chains[1].state, 1)] == [
            t for _, t in query.trades(chains[0].state, 1)
        ]


def _outcome(result: Accepted | Rejected) -> Reason | None:
    return None if result.ok else reason(result)

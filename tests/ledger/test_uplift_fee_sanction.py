"""Only a session the DSO sanctioned draws on the uplift fund (review26 R26-1): the fee in force reaches a session
only when its opener is a coordinator the DSO named (genesis `fee_coordinators`, then `market.fee`'s
`coordinators`) or the DSO; any other session opens at fee 0 and funds its make-whole by its payers' surplus as
before, so a sham session nobody traded in takes nothing from the fund. In depth, the fund owes nothing to a
claimant that cleared no Wh in the session. The intakes: genesis and `market.fee` refuse a fee without
coordinators and coordinators or a cap without a fee (R26-7), each refusal named."""

from __future__ import annotations

import pytest
from ledger_fixtures import Keys, make_genesis, reason
from test_settle_both import Clock
from uplift_fee_fixtures import P1, P2, P3, P4, TICK_FEE, balances, fee_chain, fund, ok, run_session

from peergrid_ledger import query
from peergrid_ledger.codec import encode
from peergrid_ledger.contracts import exchange_state, market_fee, uplift
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Reason

RHO = 5_000_000
PRICES = [100_000_000, 120_000_000]


def open_by(
    clock: Clock, opener: Keypair, name: str, first: int, members: tuple[Keypair, ...], price: bool = True
) -> None:
    """`opener` opens a session of `members` over two intervals, the DSO pricing each member's cover first
    (`price`; not where an earlier session's clear closed them)."""
    for k in members if price else ():
        cover = {"account": k.public, "first_interval": first, "retail": [300] * 2, "feed_in": [50] * 2}
        ok(clock.send(Keys.dso, cover, "market.tariff"))
    body = {
        "session": name,
        "first_interval": first,
        "members": [k.public for k in members],
        "prices": PRICES,
        "rho": RHO,
    }
    ok(clock.send(opener, body, "exchange.open"))


def clear(clock: Clock, coordinator: Keypair, name: str, positions: dict[Keypair, list[int]]) -> None:
    """One round of posts, the step, the close at iteration 1, every member accepting its position, the clear."""
    for k, p in positions.items():
        ok(clock.send(k, {"session": name, "iteration": 0, "positions": p}, "exchange.position"))
    ok(clock.send(coordinator, {"session": name, "iteration": 0, "rho": RHO}, "exchange.step"))
    ok(clock.send(coordinator, {"session": name, "iteration": 1}, "exchange.close"))
    for k, p in positions.items():
        ok(clock.send(k, {"session": name, "positions": p, "clean": False}, "exchange.accept"))
    ok(clock.send(coordinator, {"session": name}, "exchange.clear"))


def deliver_all(clock: Clock, first: int, chain_state: object) -> None:
    keys = {k.public: k for k in (P1, P2, P3, P4)}
    for interval in (first, first + 1):
        for tid, tr in query.trades(chain_state, interval):  # type: ignore[arg-type]
            ok(clock.send(keys[tr["seller"]], {"trade": tid, "delivered": tr["quantity"], "short": 0}))
            ok(clock.send(keys[tr["buyer"]], {"trade": tid, "delivered": tr["quantity"]}))


def test_a_sham_session_by_a_key_the_dso_did_not_name_takes_nothing_from_the_fund() -> None:
    """R26's f1: after an honest day the fund holds its 6000 (cap 10^9). P2, not a coordinator, opens 'sham'
    with P3, clears it at iteration 0 with nothing traded, claims the fund's balance and settles: the session
    carries no fee, so its make-whole is the payers' surplus (none), and the fund and every balance stay."""
    chain, clock = fee_chain(cap=10**9)
    run_session(chain, clock, "day-0", 100)
    assert fund(chain) == 6_000
    before = balances(chain)
    open_by(clock, P2, "sham", 100, (P2, P3), price=False)
    record = exchange_state.session(chain.state, "sham")
    assert record is not None and "fee" not in record and "fund_cap" not in record
    ok(clock.send(P2, {"session": "sham", "iteration": 0}, "exchange.close"))
    ok(clock.send(P2, {"session": "sham"}, "exchange.clear"))
    ok(clock.send(P2, {"session": "sham", "gain": 6_000, "surplus": 0}, "uplift.claim"))
    ok(clock.send(P2, {"session": "sham"}, "uplift.settle"))
    done = uplift.outcome(chain.state, "sham")
    assert done is not None and "collected" not in done and done["funded"] is False and done["credits"] == []
    assert fund(chain) == 6_000 and balances(chain) == before


def test_the_fee_reaches_the_sessions_of_the_named_coordinators_and_the_dso_only() -> None:
    """Genesis names P1: P1's and the DSO's sessions take the fee, P2's opens at 0. The DSO's market.fee then
    names P2 alone: from the next open P2's session takes the new fee and P1's none."""
    chain, clock = fee_chain(cap=7_000, coordinators=(P1.public,))
    members = (P1, P2, P3, P4)
    for opener, name, first in ((P1, "by-p1", 100), (Keys.dso, "by-dso", 110), (P2, "by-p2", 120)):
        open_by(clock, opener, name, first, members)
    fees = {n: exchange_state.session(chain.state, n) for n in ("by-p1", "by-dso", "by-p2")}
    assert [(r or {}).get("fee") for r in fees.values()] == [1_000_000, 1_000_000, None]
    assert market_fee.coordinators_in_force(chain.state, chain.genesis) == (P1.public,)
    ok(clock.send(Keys.dso, {"fee": 2_000_000, "fund_cap": 0, "coordinators": [P2.public]}, "market.fee"))
    assert market_fee.coordinators_in_force(chain.state, chain.genesis) == (P2.public,)
    open_by(clock, P1, "p1-later", 200, members)
    open_by(clock, P2, "p2-later", 210, members)
    later, named = (exchange_state.session(chain.state, n) for n in ("p1-later", "p2-later"))
    assert later is not None and "fee" not in later
    assert named is not None and (named["fee"], named["fund_cap"]) == (2_000_000, 0)


def test_the_fund_owes_nothing_to_a_claimant_that_cleared_no_wh() -> None:
    """A sanctioned session where P2 is a member but trades nothing: its gain claim (within its bound, above its
    tolerance) is owed nothing from the fund; P3, which cleared 2000 Wh, is paid its own claim."""
    chain, clock = fee_chain(cap=0)
    open_by(clock, P1, "day-1", 100, (P1, P2, P3))
    clear(clock, P1, "day-1", {P1: [1000, 1000], P2: [0, 0], P3: [-1000, -1000]})
    for k, gain in ((P1, 0), (P2, 1_500), (P3, 2_500)):
        ok(clock.send(k, {"session": "day-1", "gain": gain, "surplus": 0}, "uplift.claim"))
    deliver_all(clock, 100, chain.state)
    ok(clock.send(P1, {"session": "day-1"}, "uplift.settle"))
    done = uplift.outcome(chain.state, "day-1")
    assert done is not None and done["funded"] and done["owed"] == 2_500
    assert done["credits"] == [[P3.public, 2_500]] and done["charges"] == sorted(
        [[P1.public, 2_000], [P3.public, 2_000]]
    )


def test_market_fee_refuses_a_fee_without_coordinators_and_coordinators_or_a_cap_without_a_fee() -> None:
    chain, clock = fee_chain(fee=0)
    for body, why, words in (
        ({"fee": TICK_FEE, "fund_cap": 0}, Reason.INVALID, "a fee needs coordinators"),
        ({"fee": TICK_FEE, "fund_cap": 0, "coordinators": []}, Reason.INVALID, "a fee needs coordinators"),
        ({"fee": 0, "fund_cap": 5}, Reason.INVALID, "fund_cap 5 without a fee"),  # R26-7, as the genesis
        (
            {"fee": 0, "fund_cap": 0, "coordinators": [P1.public]},
            Reason.INVALID,
            "coordinators without a fee",
        ),
        ({"fee": TICK_FEE, "fund_cap": 0, "coordinators": [P1.public] * 2}, Reason.INVALID, "appears twice"),
        (
            {"fee": TICK_FEE, "fund_cap": 0, "coordinators": [b"\x07" * 32]},
            Reason.NOT_FOUND,
            "not a known account",
        ),
    ):
        result = clock.send(Keys.dso, body, "market.fee")
        assert reason(result) is why and words in str(result), body
    assert chain.state.get(b"upl/fee") is None
    result = ok(
        clock.send(
            Keys.dso, {"fee": TICK_FEE, "fund_cap": 0, "coordinators": [P2.public, P1.public]}, "market.fee"
        )
    )
    named = sorted([P1.public, P2.public])
    assert result.events == (("market_fee", {"fee": TICK_FEE, "fund_cap": 0, "coordinators": named}),)
    assert market_fee.coordinators_in_force(chain.state, chain.genesis) == tuple(named)
    ok(clock.send(Keys.dso, {"fee": 0, "fund_cap": 0}, "market.fee"))  # off again: nobody is sanctioned
    assert market_fee.coordinators_in_force(chain.state, chain.genesis) == ()


def _fee_genesis(**overrides: object) -> Genesis:
    fields: dict[str, object] = {
        "contracts": ("market", "exchange", "uplift"),
        "params": Params(exchange_fee=1_000_000),
        "fee_coordinators": (P1.public,),
    }
    fields.update(overrides)
    return make_genesis(**fields)


def test_the_genesis_names_fee_coordinators_with_a_fee_only_and_encodes_them_only_then() -> None:
    genesis = _fee_genesis(fee_coordinators=(P2.public, P1.public))
    assert genesis.to_value()["fee_coordinators"] == sorted([P1.public, P2.public])
    assert Genesis.decode(genesis.encode()).hash == genesis.hash
    assert Genesis.from_json(genesis.to_json()).hash == genesis.hash
    plain = make_genesis(contracts=("market", "exchange", "uplift"))
    assert "fee_coordinators" not in plain.to_value() and "fee_coordinators" not in plain.to_json()
    strangers = tuple(Keypair.from_seed(bytes([i]) * 32).public for i in range(17))
    many = (*make_genesis().accounts, *(Account(k, ("anonym",)) for k in strangers))
    for overrides, words in (
        ({"fee_coordinators": ()}, "params.exchange_fee needs 1 to 16 keys"),
        ({"fee_coordinators": strangers, "accounts": many}, "params.exchange_fee needs 1 to 16 keys"),
        ({"fee_coordinators": (P1.public, P1.public)}, "fee_coordinators: duplicate key"),
        ({"fee_coordinators": (b"\x07" * 32,)}, "each is the key of one of the genesis' accounts"),
        ({"params": Params()}, "fee_coordinators: only with params.exchange_fee > 0"),
    ):
        with pytest.raises(GenesisError, match=words):
            _fee_genesis(**overrides)
    doc = genesis.to_json()
    with pytest.raises(GenesisError, match="not in canonical form"):  # no coordinators is spelled by omission
        Genesis.decode(encode({**plain.to_value(), "fee_coordinators": []}))
    with pytest.raises(GenesisError, match="malformed JSON"):
        Genesis.from_json({**doc, "fee_coordinators": ["zz"]})

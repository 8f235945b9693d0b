"""The exchange contract: the day-ahead ADMM's moves as signed transactions, prices computed by the chain."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason, submit_checked

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import (
    MAX_INTERVALS,
    MAX_MEMBERS,
    MAX_PRICE,
    next_prices,
    position,
    posted,
    session,
)
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4
RHO = 5_000_000  # nano per kWh²: dayahead.py's default 0.005 currency per kWh²


def exchange_chain() -> LocalChain:
    return LocalChain(make_genesis(contracts=("market", "exchange")), Keys.authority)


def open_body(
    name: str = "day-1",
    members: tuple[Keypair, ...] = (P1, P2),
    prices: list[int] | None = None,
    rho: int = RHO,
    first: int = 100,
) -> dict[str, Any]:
    return {
        "session": name,
        "first_interval": first,
        "members": [m.public for m in members],
        "prices": [50_000_000, 80_000_000, -10_000_000] if prices is None else prices,
        "rho": rho,
    }


def post(chain: LocalChain, who: Keypair, iteration: int, positions: list[int], name: str = "day-1") -> bool:
    body = {"session": name, "iteration": iteration, "positions": positions}
    return submit_checked(chain, who, "exchange.position", body)


def step(chain: LocalChain, iteration: int, rho: int, who: Keypair = Keys.dso, name: str = "day-1") -> bool:
    return submit_checked(chain, who, "exchange.step", {"session": name, "iteration": iteration, "rho": rho})


def refused(chain: LocalChain, who: Keypair, kind: str, body: dict[str, Any]) -> Reason:
    """The reason `kind` is refused; a refusal must change nothing (`submit_checked`)."""
    assert not submit_checked(chain, who, kind, body)
    return reason(chain.sign_and_submit(who, kind, body))


def opened(members: tuple[Keypair, ...] = (P1, P2), **kwargs: Any) -> LocalChain:
    chain = exchange_chain()
    assert submit_checked(chain, Keys.dso, "exchange.open", open_body(members=members, **kwargs))
    return chain


# ---------------------------------------------------------------------------------------------- a worked day


def test_a_hand_computed_session_over_three_iterations() -> None:
    """Two members, three intervals (chain intervals 100-102), opening prices 50, 80 and -10 milli-units per
    kWh (in nano: 50_000_000, 80_000_000, -10_000_000), ρ = 5_000_000 nano/kWh², N = 2, so the price moves by
    ρ·S/2000 for a sum of positions S in Wh.
    Iteration 0: the first responses; the step leaves the prices as they are (ρ stays 5_000_000).
    Iteration 1: sums 2000-1000 = 1000, 1500-1000 = 500, -700+0 = -700 Wh;
        ρ·S/2000 = 2_500_000, 1_250_000, -1_750_000, so prices 47_500_000, 78_750_000, -8_250_000;
        then ρ becomes 7_500_001 (within [2_500_000, 10_000_000]).
    Iteration 2: sums 1500-500 = 1000, 2000+1000 = 3000, 2+0 = 2 Wh at ρ = 7_500_001:
        7_500_001_000/2000 = 3_750_000.5 → 47_500_000 − 3_750_000.5 = 43_749_999.5, a tie: 43_750_000 (even);
        22_500_003_000/2000 = 11_250_001.5 → 78_750_000 − 11_250_001.5 = 67_499_998.5, a tie: 67_499_998;
        15_000_002/2000 = 7_500.001 → −8_250_000 − 7_500.001 = −8_257_500.001: −8_257_500;
        then ρ becomes 3_750_001 = ceil(7_500_001 / 2), the lowest it may.
    The coordinator (the DSO's key here, not a member) closes at iteration 3."""
    chain = exchange_chain()
    opening = chain.sign_and_submit(Keys.dso, "exchange.open", open_body())
    assert isinstance(opening, Accepted)
    assert opening.events == (
        ("exchange_opened", {"session": "day-1", "coordinator": Keys.dso.public, "members": 2}),
    )
    moves = [
        ([3000, -1000, 500], [-1000, -1000, 250], RHO),
        ([2000, 1500, -700], [-1000, -1000, 0], 7_500_001),
        ([1500, 2000, 2], [-500, 1000, 0], 3_750_001),
    ]
    expected_prices = [
        (50_000_000, 80_000_000, -10_000_000),
        (47_500_000, 78_750_000, -8_250_000),
        (43_750_000, 67_499_998, -8_257_500),
    ]
    for iteration, (first, second, rho) in enumerate(moves):
        assert post(chain, P1, iteration, first)
        assert posted(chain.view, "day-1", P1.public) and not posted(chain.view, "day-1", P2.public)
        assert post(chain, P2, iteration, second)
        result = chain.sign_and_submit(
            Keys.dso, "exchange.step", {"session": "day-1", "iteration": iteration, "rho": rho}
        )
        assert isinstance(result, Accepted)
        assert result.events == (
            ("exchange_step", {"session": "day-1", "iteration": iteration + 1, "rho": rho, "settled": 0}),
        )
        chain.seal()
        state = session(chain.state, "day-1")
        assert state is not None
        assert state["prices"] == expected_prices[iteration]
        assert (state["iteration"], state["rho"], state["posted"]) == (iteration + 1, rho, 0)
        assert not posted(chain.state, "day-1", P1.public)
    last = position(chain.state, "day-1", P2.public)
    assert last is not None and last["iteration"] == 2 and last["positions"] == [-500, 1000, 0]
    closing = chain.sign_and_submit(Keys.dso, "exchange.close", {"session": "day-1", "iteration": 3})
    assert isinstance(closing, Accepted)
    assert closing.events == (
        (
            "exchange_closed",
            {
                "session": "day-1",
                "iteration": 3,
                "prices": list(expected_prices[2]),
                "unstepped": 0,
                "settled": False,
            },
        ),
    )
    chain.seal()
    assert session(chain.state, "day-1") == {
        "closed": True,
        "coordinator": Keys.dso.public,
        "first_interval": 100,
        "intervals": 3,
        "iteration": 3,
        "members": [P1.public, P2.public],
        "posted": 0,
        "prices": expected_prices[2],
        "rho": 3_750_001,
        "settled": 0,
        "size": 2,
    }


def test_readers_on_an_unknown_session_or_a_non_member() -> None:
    chain = opened()
    assert session(chain.view, "nope") is None
    assert not posted(chain.view, "nope", P1.public)
    assert not posted(chain.view, "day-1", P3.public)
    assert position(chain.view, "day-1", P3.public) is None
    assert position(chain.view, "day-1", P1.public) == {"iteration": -1, "positions": [], "txid": b""}


# ---------------------------------------------------------------------------------------------- refusals


def test_open_refusals() -> None:
    chain = opened()
    assert refused(chain, P3, "exchange.open", open_body()) is Reason.DUPLICATE
    assert refused(chain, P3, "exchange.open", open_body("d2", (P1, P1))) is Reason.INVALID
    assert refused(chain, P3, "exchange.open", open_body("d2", (P1,))) is Reason.INVALID
    assert refused(chain, P3, "exchange.open", open_body("d2", (P1, Keys.stranger))) is Reason.NOT_FOUND
    assert refused(chain, P3, "exchange.open", open_body("d2", prices=[])) is Reason.INVALID
    too_many = open_body("d2", prices=[0] * (MAX_INTERVALS + 1))
    assert refused(chain, P3, "exchange.open", too_many) is Reason.MALFORMED
    assert refused(chain, P3, "exchange.open", open_body("d2", prices=[MAX_PRICE + 1])) is Reason.MALFORMED
    assert refused(chain, P3, "exchange.open", open_body("d2", rho=0)) is Reason.MALFORMED
    crowd = {**open_body("d2"), "members": [bytes([i]) * 32 for i in range(MAX_MEMBERS)] + [P1.public]}
    assert refused(chain, P3, "exchange.open", crowd) is Reason.MALFORMED
    assert isinstance(
        chain.sign_and_submit(Keys.dso, "gov.revoke", {"key": P4.public, "operator": "op"}), Accepted
    )
    assert refused(chain, P3, "exchange.open", open_body("d2", (P1, P4))) is Reason.FORBIDDEN
    # a deauthorised member could never post (and so only stall the session): not admitted
    assert submit_checked(chain, Keys.dso, "authorise", {"key": P2.public, "authorised": False})
    assert refused(chain, P3, "exchange.open", open_body("d2", (P1, P2))) is Reason.NOT_AUTHORISED
    assert submit_checked(chain, Keys.dso, "authorise", {"key": P2.public, "authorised": True})
    # the largest session the interface allows opens
    assert submit_checked(chain, P3, "exchange.open", open_body("d3", prices=[MAX_PRICE] * MAX_INTERVALS))


def test_a_deauthorised_key_neither_opens_nor_posts() -> None:
    chain = opened()
    assert submit_checked(chain, Keys.dso, "authorise", {"key": P1.public, "authorised": False})
    assert refused(chain, P1, "exchange.open", open_body("d2")) is Reason.NOT_AUTHORISED
    body = {"session": "day-1", "iteration": 0, "positions": [0, 0, 0]}
    assert refused(chain, P1, "exchange.position", body) is Reason.NOT_AUTHORISED


def test_position_refusals() -> None:
    chain = opened()
    body = {"session": "day-1", "iteration": 0, "positions": [1, 2, 3]}
    assert refused(chain, P1, "exchange.position", {**body, "session": "nope"}) is Reason.NOT_FOUND
    assert refused(chain, P3, "exchange.position", body) is Reason.FORBIDDEN
    assert refused(chain, P1, "exchange.position", {**body, "iteration": 1}) is Reason.RULE_VIOLATION
    assert refused(chain, P1, "exchange.position", {**body, "positions": [1, 2]}) is Reason.INVALID
    assert refused(chain, P1, "exchange.position", {**body, "positions": [1, 2, 3, 4]}) is Reason.INVALID
    assert refused(chain, P1, "exchange.position", {**body, "positions": [10**12 + 1, 0, 0]}) is (
        Reason.MALFORMED
    )
    assert post(chain, P1, 0, [1, 2, 3])
    assert refused(chain, P1, "exchange.position", body) is Reason.DUPLICATE
    assert step(chain, 0, RHO) is False  # P2 has not posted
    assert post(chain, P2, 0, [0, 0, 0])
    assert step(chain, 0, RHO)
    assert refused(chain, P1, "exchange.position", body) is Reason.RULE_VIOLATION  # an iteration too late


def test_positions_keep_the_members_owner_rules_per_chain_interval() -> None:
    chain = opened()
    # P1 may move at most 2000 Wh from chain interval 101 on; P2 is clean-only from 100 on (never buys)
    limited = {
        "floor_price": 0,
        "cap_price": 10**12,
        "max_quantity": 2000,
        "clean_only": False,
        "clean_premium": 0,
    }
    clean = {**limited, "max_quantity": 10**12, "clean_only": True}
    assert submit_checked(chain, P1, "market.rules", {"rules": limited, "from_interval": 101})
    assert submit_checked(chain, P2, "market.rules", {"rules": clean, "from_interval": 100})
    body = {"session": "day-1", "iteration": 0}
    for bad in ([0, 2001, 0], [0, 0, -2001]):
        assert refused(chain, P1, "exchange.position", {**body, "positions": bad}) is Reason.RULE_VIOLATION
    assert refused(chain, P2, "exchange.position", {**body, "positions": [0, 0, -1]}) is Reason.RULE_VIOLATION
    assert post(chain, P1, 0, [5000, -2000, 2000])  # interval 100 is before P1's rules
    assert post(chain, P2, 0, [0, 10**12, 1])
    assert session(chain.view, "day-1")["posted"] == 2  # type: ignore[index]


def test_step_refusals() -> None:
    chain = opened()
    step_body = {"session": "day-1", "iteration": 0, "rho": RHO}
    assert refused(chain, Keys.dso, "exchange.step", {**step_body, "session": "nope"}) is Reason.NOT_FOUND
    assert refused(chain, Keys.dso, "exchange.step", step_body) is Reason.RULE_VIOLATION  # nobody posted
    assert post(chain, P1, 0, [1, 1, 1])
    assert refused(chain, Keys.dso, "exchange.step", step_body) is Reason.RULE_VIOLATION  # one of two
    assert post(chain, P2, 0, [1, 1, 1])
    assert refused(chain, P1, "exchange.step", step_body) is Reason.FORBIDDEN  # a member, not the coordinator
    assert refused(chain, Keys.dso, "exchange.step", {**step_body, "iteration": 1}) is Reason.RULE_VIOLATION
    for rho in (RHO // 2 - 1, 2 * RHO + 1):
        assert refused(chain, Keys.dso, "exchange.step", {**step_body, "rho": rho}) is Reason.RULE_VIOLATION
    assert refused(chain, Keys.dso, "exchange.step", {**step_body, "rho": 0}) is Reason.MALFORMED
    assert step(chain, 0, 2 * RHO)  # doubling is the most it may
    for member in (P1, P2):
        assert post(chain, member, 1, [1, 1, 1])
    assert step(chain, 1, RHO)  # and halving


def test_rho_bounds_round_up_for_an_odd_rho() -> None:
    chain = opened(rho=7)
    for member in (P1, P2):
        assert post(chain, member, 0, [0, 0, 0])
    assert not step(chain, 0, 3)  # ceil(7 / 2) = 4
    assert not step(chain, 0, 15)
    assert step(chain, 0, 4)
    assert session(chain.view, "day-1")["rho"] == 4  # type: ignore[index]


def test_a_step_that_would_push_a_price_out_of_range_is_refused() -> None:
    chain = opened(prices=[MAX_PRICE - 1], rho=10**13)
    for iteration in (0, 1):
        for member in (P1, P2):
            assert post(chain, member, iteration, [-(10**12)])
        if iteration == 0:
            assert step(chain, 0, 10**13)
    body = {"session": "day-1", "iteration": 1, "rho": 10**13}
    assert refused(chain, Keys.dso, "exchange.step", body) is Reason.RULE_VIOLATION
    state = session(chain.view, "day-1")
    assert state is not None and state["prices"] == (MAX_PRICE - 1,) and state["iteration"] == 1


def test_close_refusals_and_a_closed_session_takes_nothing_more() -> None:
    chain = opened()
    close_body = {"session": "day-1", "iteration": 0}
    assert refused(chain, Keys.dso, "exchange.close", {**close_body, "session": "nope"}) is Reason.NOT_FOUND
    assert refused(chain, P1, "exchange.close", close_body) is Reason.FORBIDDEN
    assert post(chain, P1, 0, [0, 0, 0])
    assert post(chain, P2, 0, [0, 0, 0])
    assert step(chain, 0, RHO)
    assert refused(chain, Keys.dso, "exchange.close", close_body) is Reason.RULE_VIOLATION  # at iteration 1
    assert submit_checked(chain, Keys.dso, "exchange.close", {**close_body, "iteration": 1})
    position_body = {"session": "day-1", "iteration": 1, "positions": [0, 0, 0]}
    assert refused(chain, P1, "exchange.position", position_body) is Reason.CLOSED
    step_body = {"session": "day-1", "iteration": 1, "rho": RHO}
    assert refused(chain, Keys.dso, "exchange.step", step_body) is Reason.CLOSED
    assert refused(chain, Keys.dso, "exchange.close", {**close_body, "iteration": 1}) is Reason.CLOSED
    assert refused(chain, Keys.dso, "exchange.open", open_body()) is Reason.DUPLICATE  # the name stays taken


def test_a_chain_without_the_exchange_contract_has_none_of_its_kinds() -> None:
    chain = LocalChain(make_genesis(contracts=("market",)), Keys.authority)
    assert reason(chain.sign_and_submit(Keys.dso, "exchange.open", open_body())) is Reason.UNKNOWN_KIND


# ---------------------------------------------------------------------------------------------- properties

PRICES = st.integers(-MAX_PRICE, MAX_PRICE)
SUMS = st.integers(-MAX_MEMBERS * 10**12, MAX_MEMBERS * 10**12)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(PRICES, SUMS), min_size=0, max_size=20),
    st.integers(1, MAX_MEMBERS),
    st.one_of(st.integers(1, 1000), st.integers(1, 10**13)),
)
def test_next_prices_is_the_exact_rational_rounded_half_even(
    pairs: list[tuple[int, int]], members: int, rho: int
) -> None:
    prices = [p for p, _ in pairs]
    sums = [s for _, s in pairs]
    got = next_prices(prices, sums, members, rho)
    exact = [Fraction(p) - Fraction(rho * s, 1000 * members) for p, s in pairs]
    assert got == tuple(round(x) for x in exact)  # Fraction.__round__ rounds half to even
    assert all(type(x) is int for x in got)
    for x, value in zip(got, exact, strict=True):
        assert abs(x - value) <= Fraction(1, 2)


@pytest.mark.parametrize(
    ("prices", "sums", "members", "rho"),
    [([1], [1], 0, 1), ([1], [1], 2, 0), ([1, 2], [1], 2, 1)],
)
def test_next_prices_refuses_what_has_no_meaning(
    prices: list[int], sums: list[int], members: int, rho: int
) -> None:
    with pytest.raises(ValueError):
        next_prices(prices, sums, members, rho)


def test_next_prices_rounds_ties_to_even_on_both_sides_of_zero() -> None:
    # ρ·S/(1000·N) = 0.5 with ρ = 1, S = 500, N = 1: 1 − 0.5 → 0, 2 − 0.5 → 2, 0 − 0.5 → 0, −1 − 0.5 → −2
    assert next_prices([1, 2, 0, -1], [500] * 4, 1, 1) == (0, 2, 0, -2)


MEMBERS = (P1, P2, P3)
Action = tuple[str, int, int, tuple[int, int]]  # ("post", member, _, positions) or ("step", _, rho choice, _)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["post", "post", "post", "step"]),
            st.integers(0, 2),
            st.integers(0, 5),
            st.tuples(st.integers(-5000, 5000), st.integers(-5000, 5000)),
        ),
        max_size=30,
    )
)
def test_random_moves_never_step_early_and_prices_fold_next_prices(actions: list[Action]) -> None:
    """Posts from random members and steps with random ρ: the chain takes exactly what the rules allow, the
    iteration advances only once all posted, and the final prices are `next_prices` folded over the sums."""
    chain = LocalChain(make_genesis(contracts=("exchange",)), Keys.authority)
    opening = [1_000_000, -3_000]
    assert submit_checked(chain, P4, "exchange.open", open_body(members=MEMBERS, prices=opening, rho=333))
    iteration, rho, prices = 0, 333, tuple(opening)
    sums, done = [0, 0], set()
    for kind, member, choice, positions in actions:
        if kind == "post":
            ok = post(chain, MEMBERS[member], iteration, list(positions))
            assert ok == (member not in done)
            if ok:
                done.add(member)
                sums = [s + q for s, q in zip(sums, positions, strict=True)]
        else:
            new_rho = [rho // 2, -(-rho // 2), rho, 2 * rho, 2 * rho + 1, max(1, rho // 3)][choice]
            ok = step(chain, iteration, new_rho, who=P4)
            in_range = -(-rho // 2) <= new_rho <= 2 * rho
            assert ok == (len(done) == len(MEMBERS) and in_range)
            if ok:
                prices = prices if iteration == 0 else next_prices(prices, sums, len(MEMBERS), rho)
                iteration, rho, sums, done = iteration + 1, new_rho, [0, 0], set()
        state = session(chain.view, "day-1")
        assert state is not None
        assert (state["iteration"], state["rho"], state["prices"], state["posted"]) == (
            iteration,
            rho,
            prices,
            len(done),
        )
    chain.seal()
    state = session(chain.state, "day-1")
    assert state is not None and state["prices"] == prices and state["iteration"] == iteration


def test_the_same_transactions_on_two_chains_give_the_same_state_root() -> None:
    chains = [exchange_chain(), exchange_chain()]
    signers = {k.public: chains[0].signer(k) for k in (Keys.dso, P1, P2)}
    script: list[tuple[Keypair, str, dict[str, Any]]] = [(Keys.dso, "exchange.open", open_body())]
    for iteration, (a, b) in enumerate([([300, -20, 7], [-100, 40, 1]), ([5, 5, 5], [-9, 0, 13])]):
        script += [
            (P1, "exchange.position", {"session": "day-1", "iteration": iteration, "positions": a}),
            (P2, "exchange.position", {"session": "day-1", "iteration": iteration, "positions": b}),
            (Keys.dso, "exchange.step", {"session": "day-1", "iteration": iteration, "rho": RHO + iteration}),
        ]
    script.append((Keys.dso, "exchange.close", {"session": "day-1", "iteration": 2}))
    txs = [signers[who.public].sign(kind, body, T0 + 1000 + i) for i, (who, kind, body) in enumerate(script)]
    for chain in chains:
        assert all(r.ok for r in chain.submit_all(txs))
        chain.seal(T0 + 60_000)
    assert chains[0].state.root == chains[1].state.root
    assert chains[0].tip.hash == chains[1].tip.hash
    assert session(chains[0].state, "day-1") == session(chains[1].state, "day-1")


def test_closing_a_half_posted_iteration_abandons_it_at_the_last_stepped_prices() -> None:
    # a member that can no longer post (here: never does) would hold the session open for ever; the
    # coordinator closes instead, the posts of the unfinished iteration price nothing and are counted
    chain = opened()
    assert post(chain, P1, 0, [0, 0, 0]) and post(chain, P2, 0, [0, 0, 0])
    assert step(chain, 0, RHO)
    before = session(chain.view, "day-1")
    assert before is not None
    assert post(chain, P1, 1, [1000, 1000, 1000])
    closing = chain.sign_and_submit(Keys.dso, "exchange.close", {"session": "day-1", "iteration": 1})
    assert isinstance(closing, Accepted)
    assert closing.events == (
        (
            "exchange_closed",
            {
                "session": "day-1",
                "iteration": 1,
                "prices": list(before["prices"]),
                "unstepped": 1,
                "settled": False,
            },
        ),
    )
    chain.seal()
    after = session(chain.state, "day-1")
    assert after is not None and after["closed"] and after["prices"] == before["prices"]
    position_body = {"session": "day-1", "iteration": 1, "positions": [0, 0, 0]}
    assert refused(chain, P2, "exchange.position", position_body) is Reason.CLOSED

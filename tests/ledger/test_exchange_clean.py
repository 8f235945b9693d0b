"""The exchange contract's clean book (exchange_clean.py): a session opened with `clean_prices` keeps a second
price list and running sum, takes `clean_positions` with every post under the clean book's rules, and moves
both price lists with the one ρ. Every refusal here changes nothing (`submit_checked`)."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_fixtures import Keys, make_genesis, reason, submit_checked

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.exchange import MAX_PRICE, next_prices, position, session
from peergrid_ledger.contracts.exchange_state import clean_prices_key, clean_sums_key
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason
from peergrid_ledger.state import read_obj

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4
ALL = (P1, P2, P3, P4)
RHO = 5_000_000
FIRST = 100
PRICES = [50_000_000, 80_000_000, -10_000_000]
CLEAN_PRICES = [60_000_000, 90_000_000, 0]


def rules(clean_only: bool = False, max_quantity: int = 10**12, floor: int = 0, cap: int = 10**12) -> Any:
    return {
        "floor_price": floor,
        "cap_price": cap,
        "max_quantity": max_quantity,
        "clean_only": clean_only,
        "clean_premium": 10,
    }


# P1 sells clean (it declares so), P2 is a grey member, P3 a clean-only buyer, P4 a buyer of general energy
RULES = {P3.public: rules(clean_only=True), P4.public: rules(max_quantity=5000)}


def chain_with(member_rules: dict[bytes, Any] | None = None, params: Params | None = None) -> LocalChain:
    member_rules = RULES if member_rules is None else member_rules
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", rules=member_rules.get(k.public))
            for i, k in enumerate(ALL, 1)
        ),
    )
    params = Params(credit_limit=10**12) if params is None else params
    genesis = make_genesis(contracts=("market", "exchange"), accounts=accounts, params=params)
    return LocalChain(genesis, Keys.authority)


def open_body(
    clean_prices: list[int] | None = CLEAN_PRICES, name: str = "day-1", deadline: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session": name,
        "first_interval": FIRST,
        "members": [m.public for m in ALL],
        "prices": PRICES,
        "rho": RHO,
    }
    if clean_prices is not None:
        body["clean_prices"] = clean_prices
    if deadline is not None:
        body["deadline"] = deadline
    return body


def opened(
    clean_prices: list[int] | None = CLEAN_PRICES, member_rules: dict[bytes, Any] | None = None
) -> LocalChain:
    chain = chain_with(member_rules)
    assert submit_checked(chain, Keys.dso, "exchange.open", open_body(clean_prices))
    return chain


def post_body(
    iteration: int, positions: list[int], cleans: list[int] | None = None, clean: bool | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"session": "day-1", "iteration": iteration, "positions": positions}
    if cleans is not None:
        body["clean_positions"] = cleans
    if clean is not None:
        body["clean"] = clean
    return body


def refused(chain: LocalChain, who: Keypair, kind: str, body: dict[str, Any]) -> tuple[Reason, str]:
    """Why `kind` is refused; a refusal must change nothing (`submit_checked`)."""
    assert not submit_checked(chain, who, kind, body)
    result = chain.sign_and_submit(who, kind, body)
    return reason(result), str(result)


def submit(chain: LocalChain, who: Keypair, kind: str, body: dict[str, Any]) -> Accepted:
    result = chain.sign_and_submit(who, kind, body)
    assert isinstance(result, Accepted), result
    return result


# ---------------------------------------------------------------------------------------------- open


def test_a_clean_open_keeps_a_second_price_list_and_running_sum() -> None:
    chain = chain_with()
    opening = submit(chain, Keys.dso, "exchange.open", open_body())
    # the event is the one every session has
    assert opening.events == (
        ("exchange_opened", {"session": "day-1", "coordinator": Keys.dso.public, "members": 4}),
    )
    chain.seal()
    record = session(chain.state, "day-1")
    assert record is not None
    assert record["clean"] is True
    assert record["clean_prices"] == tuple(CLEAN_PRICES)
    assert record["prices"] == tuple(PRICES)
    assert read_obj(chain.state, clean_sums_key("day-1")) == [0, 0, 0]


def test_a_session_without_clean_prices_has_no_clean_book() -> None:
    chain = opened(clean_prices=None)
    record = session(chain.view, "day-1")
    assert record is not None and "clean" not in record and "clean_prices" not in record
    assert chain.view.get(clean_prices_key("day-1")) is None
    assert chain.view.get(clean_sums_key("day-1")) is None


def test_clean_prices_of_the_wrong_length_or_out_of_bounds_are_refused() -> None:
    chain = chain_with()
    why, text = refused(chain, Keys.dso, "exchange.open", open_body([1, 2]))
    assert why is Reason.INVALID and "2 clean prices, the session has 3 intervals" in text
    why, _ = refused(chain, Keys.dso, "exchange.open", open_body([0, MAX_PRICE + 1, 0]))
    assert why is Reason.MALFORMED
    assert session(chain.view, "day-1") is None


# ---------------------------------------------------------------------------------------------- a worked day


def test_a_hand_computed_clean_session_moves_both_price_lists_with_one_rho() -> None:
    """N = 4, ρ = 5_000_000 nano/kWh², so a price moves by ρ·S/4000 = 1250·S nano for a sum S in Wh.
    Iteration 0 (first responses): the prices stay. Iteration 1:
        general sums: 1000 + 500 + 0 − 2000 = −500, 0 + 200 + 0 + 0 = 200, 0 Wh;
        clean sums: 800 + 0 − 1200 + 0 = −400, 300 − 100 = 200, 0 Wh;
        general 50_000_000 + 625_000 = 50_625_000, 80_000_000 − 250_000 = 79_750_000, −10_000_000;
        clean 60_000_000 + 500_000 = 60_500_000, 90_000_000 − 250_000 = 89_750_000, 0.
    The step events name the clean prices; the close's event names both lists."""
    chain = opened()
    moves = {
        P1: ([1000, 0, 0], [800, 300, 0], True),
        P2: ([500, 200, 0], [0, 0, 0], False),
        P3: ([0, 0, 0], [-1200, -100, 0], False),  # a clean purchase beside no general position
        P4: ([-2000, 0, 0], [0, 0, 0], False),
    }
    for iteration, rho in ((0, RHO), (1, 2 * RHO)):
        for m, (g, c, seller) in moves.items():
            submit(chain, m, "exchange.position", post_body(iteration, g, c, seller))
        assert read_obj(chain.view, clean_sums_key("day-1")) == [-400, 200, 0]
        stepped = submit(
            chain, Keys.dso, "exchange.step", {"session": "day-1", "iteration": iteration, "rho": rho}
        )
        want = CLEAN_PRICES if iteration == 0 else [60_500_000, 89_750_000, 0]
        event = {
            "session": "day-1",
            "iteration": iteration + 1,
            "rho": rho,
            "settled": 0,
            "clean_prices": want,
        }
        assert stepped.events == (("exchange_step", event),)
        assert read_obj(chain.view, clean_sums_key("day-1")) == [0, 0, 0]
    record = session(chain.view, "day-1")
    assert record is not None
    assert record["prices"] == (50_625_000, 79_750_000, -10_000_000)
    assert record["clean_prices"] == (60_500_000, 89_750_000, 0)
    # the contract's arithmetic is `next_prices` on each book, N = 4, with the ρ current at the step (RHO)
    assert record["clean_prices"] == next_prices(CLEAN_PRICES, [-400, 200, 0], 4, RHO)
    mine = position(chain.view, "day-1", P1.public)
    assert mine is not None and mine["clean"] is True and mine["clean_positions"] == [800, 300, 0]
    closing = submit(chain, Keys.dso, "exchange.close", {"session": "day-1", "iteration": 2})
    ((name, closed),) = closing.events
    assert name == "exchange_closed" and closed["prices"] == [50_625_000, 79_750_000, -10_000_000]
    assert closed["clean_prices"] == [60_500_000, 89_750_000, 0]


def test_a_step_that_would_push_a_clean_price_out_of_bounds_is_refused() -> None:
    chain = opened(clean_prices=[MAX_PRICE - 1, 0, 0])
    for iteration in (0, 1):
        submit(chain, P1, "exchange.position", post_body(iteration, [0, 0, 0], [0, 0, 0], True))
        submit(chain, P2, "exchange.position", post_body(iteration, [0, 0, 0], [0, 0, 0]))
        submit(chain, P3, "exchange.position", post_body(iteration, [0, 0, 0], [-4000, 0, 0]))
        submit(chain, P4, "exchange.position", post_body(iteration, [0, 0, 0], [0, 0, 0]))
        body = {"session": "day-1", "iteration": iteration, "rho": RHO}
        if iteration == 0:
            submit(chain, Keys.dso, "exchange.step", body)
    why, text = refused(chain, Keys.dso, "exchange.step", body)
    assert why is Reason.RULE_VIOLATION and "clean price" in text
    record = session(chain.view, "day-1")
    assert record is not None and record["iteration"] == 1 and record["clean_prices"][0] == MAX_PRICE - 1


# ---------------------------------------------------------------------------------------------- refusals


def test_clean_positions_on_a_session_without_a_clean_book_are_refused() -> None:
    chain = opened(clean_prices=None)
    why, text = refused(chain, P1, "exchange.position", post_body(0, [1, 2, 3], [0, 0, 0]))
    assert why is Reason.INVALID and "opened without clean_prices" in text
    why, text = refused(chain, P1, "exchange.position", post_body(0, [1, 2, 3], clean=True))
    assert why is Reason.INVALID and "declaration" in text
    assert submit_checked(chain, P1, "exchange.position", post_body(0, [1, 2, 3]))


def test_a_clean_session_requires_clean_positions_one_per_interval() -> None:
    chain = opened()
    why, text = refused(chain, P1, "exchange.position", post_body(0, [1, 2, 3]))
    assert why is Reason.INVALID and "needs clean_positions" in text
    why, text = refused(chain, P1, "exchange.position", post_body(0, [1, 2, 3], [0, 0]))
    assert why is Reason.INVALID and "2 clean positions, the session has 3 intervals" in text
    assert submit_checked(chain, P1, "exchange.position", post_body(0, [1, 2, 3], [0, 0, 0]))


@pytest.mark.parametrize(
    ("who", "general", "clean", "seller", "words"),
    [
        (P2, [0, 0, 0], [0, 500, 0], False, "only a member that declared itself a clean seller"),
        (P4, [0, 0, 0], [0, -500, 0], False, "only a clean-only member buys clean energy"),
        (P1, [0, -100, 0], [0, 500, 0], True, "a clean sale where the member buys general energy (-100 Wh)"),
        (P3, [0, -100, 0], [0, -500, 0], False, "a clean-only member never buys"),
        (P4, [0, 3000, 0], [0, 2001, 0], True, "net position 3000 + clean 2001 Wh in interval 101 beyond"),
        # a clean purchase resold as general in its interval (M5): the honest answer posts its net alone
        (P3, [0, 400, 0], [0, -1200, 0], False, "clean position -1200 Wh in interval 101: a clean purchase"),
        (P3, [0, 1, 0], [0, -1, 0], False, "also trades general energy (1 Wh)"),
    ],
)
def test_a_post_outside_the_clean_books_rules_is_refused(
    who: Keypair, general: list[int], clean: list[int], seller: bool, words: str
) -> None:
    chain = opened()
    why, text = refused(chain, who, "exchange.position", post_body(0, general, clean, seller))
    assert why is Reason.RULE_VIOLATION and words in text
    assert read_obj(chain.view, clean_sums_key("day-1")) == [0, 0, 0]


def test_within_the_rules_each_side_posts() -> None:
    chain = opened()
    # a clean seller sells clean and general together; a clean-only buyer buys clean in one interval and
    # sells general in another (never both in one); |g + c| is what max_quantity bounds (P4: 5000)
    assert submit_checked(chain, P1, "exchange.position", post_body(0, [700, 0, 0], [800, 300, 0], True))
    assert submit_checked(chain, P3, "exchange.position", post_body(0, [0, 400, 0], [-1200, 0, 0]))
    assert submit_checked(chain, P4, "exchange.position", post_body(0, [5000, -5000, 0], [0, 0, 0], True))
    assert read_obj(chain.view, clean_sums_key("day-1")) == [-400, 300, 0]


def test_the_first_post_fixes_the_clean_sellers_declaration() -> None:
    chain = opened()
    for m, seller in ((P1, True), (P2, False), (P3, False), (P4, False)):
        assert submit_checked(chain, m, "exchange.position", post_body(0, [0, 0, 0], [0, 0, 0], seller))
    submit(chain, Keys.dso, "exchange.step", {"session": "day-1", "iteration": 0, "rho": RHO})
    why, text = refused(chain, P1, "exchange.position", post_body(1, [0, 0, 0], [100, 0, 0]))
    assert why is Reason.RULE_VIOLATION and "clean False: the member's first post declared True" in text
    why, text = refused(chain, P2, "exchange.position", post_body(1, [0, 0, 0], [100, 0, 0], True))
    assert why is Reason.RULE_VIOLATION and "clean True: the member's first post declared False" in text
    assert submit_checked(chain, P1, "exchange.position", post_body(1, [0, 0, 0], [100, 0, 0], True))
    assert submit_checked(chain, P2, "exchange.position", post_body(1, [0, 0, 0], [0, 0, 0], False))

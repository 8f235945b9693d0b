"""A clean session's accepts and clear (exchange_clean.py, exchange_clearing.py): members accept both books'
final stepped positions, reduce-only per book and judged at each book's closing price; the clear trades the
clean book first, then the general one, one trade id per pair and interval. Every refusal changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_fixtures import T0, Keys
from test_exchange_clean import (
    ALL,
    CLEAN_PRICES,
    FIRST,
    P1,
    P2,
    P3,
    P4,
    PRICES,
    RHO,
    RULES,
    open_body,
    refused,
    rules,
    submit,
)
from test_exchange_clean import chain_with as clean_chain_with

from peergrid_ledger import keyspace as ks
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_clearing, market
from peergrid_ledger.contracts.exchange_clean import book_trades, check_accept, one_book_per_pair
from peergrid_ledger.contracts.exchange_clearing import accepted, clean_accepts_at, cleared, rounds
from peergrid_ledger.contracts.market_state import MAX_DEMANDS, trade_id
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, RuleError

# the final stepped positions (general, clean, declared clean seller) of a session stepped once
FINALS: dict[Keypair, tuple[list[int], list[int], bool]] = {
    P1: ([1000, 500, 0], [2000, 1000, 0], True),  # a clean seller
    P2: ([1500, 0, 0], [0, 0, 0], False),  # grey
    P3: ([0, 0, 0], [-1500, -2000, 0], False),  # clean-only buyer
    P4: ([-2000, -500, 0], [0, 0, 0], False),  # a buyer of general energy
}
MICRO = [p // 10**6 for p in PRICES]  # 50, 80, −10 micro-units per Wh
CLEAN_MICRO = [p // 10**6 for p in CLEAN_PRICES]  # 60, 90, 0


def closed_clean(
    member_rules: dict[bytes, Any] | None = None,
    finals: dict[Keypair, tuple[list[int], list[int], bool]] | None = None,
    clean_prices: list[int] | None = CLEAN_PRICES,
    params: Params | None = None,
    deadline: int | None = None,
) -> LocalChain:
    """A session whose iteration 0 posts `finals`, stepped (the prices stay), then closed at iteration 1."""
    chain = clean_chain_with(member_rules, params)
    finals = FINALS if finals is None else finals
    submit(chain, Keys.dso, "exchange.open", open_body(clean_prices, deadline=deadline))
    for m, (g, c, seller) in finals.items():
        body: dict[str, Any] = {"session": "day-1", "iteration": 0, "positions": g}
        if clean_prices is not None:
            body.update(clean_positions=c, clean=seller)
        submit(chain, m, "exchange.position", body)
    submit(chain, Keys.dso, "exchange.step", {"session": "day-1", "iteration": 0, "rho": RHO})
    submit(chain, Keys.dso, "exchange.close", {"session": "day-1", "iteration": 1})
    return chain


def accept_body(positions: list[int], cleans: list[int] | None, clean: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"session": "day-1", "positions": positions, "clean": clean}
    if cleans is not None:
        body["clean_positions"] = cleans
    return body


def accept_finals(chain: LocalChain) -> None:
    for m, (g, c, seller) in FINALS.items():
        submit(chain, m, "exchange.accept", accept_body(g, c, clean=seller))


# ---------------------------------------------------------------------------------------------- the clear


def book_order(event: tuple[str, dict[str, Any]]) -> tuple[bool, bytes, bytes]:
    """The clear's order of an interval's trade events: the clean book first, each by (seller, buyer)."""
    return "clean" not in event[1], event[1]["seller"], event[1]["buyer"]


def test_a_hand_computed_clean_clear() -> None:
    """Closing prices: general 50, 80, −10 and clean 60, 90, 0 micro-units per Wh.
    Interval 100, clean book first: P1 sells 2000, P3 buys 1500: P1 is cut to 1500, P1→P3 1500 at 60, clean.
        General book: P1 1000 + P2 1500 = 2500 Wh for P4's 2000: cut to 800 and 1200 (exact), largest to
        largest P2→P4 1200, P1→P4 800 at 50; `clean` the seller's accept's (P1 true, P2 false).
    Interval 101: clean P1 1000 for P3's 2000: P3 cut to 1000, P1→P3 1000 at 90; general P1→P4 500 at 80.
    Interval 102: nobody trades: left open.
    Five trades, five distinct ids: P1 meets P3 in the clean book and P4 in the general one."""
    chain = closed_clean()
    accept_finals(chain)
    result = submit(chain, P2, "exchange.clear", {"session": "day-1"})
    chain.seal()
    want = [
        (100, P1, P3, 1500, CLEAN_MICRO[0], True),
        (100, P1, P4, 800, MICRO[0], True),
        (100, P2, P4, 1200, MICRO[0], False),
        (101, P1, P3, 1000, CLEAN_MICRO[1], True),
        (101, P1, P4, 500, MICRO[1], True),
    ]
    ids = {trade_id(i, s.public, b.public) for i, s, b, *_ in want}
    assert len(ids) == 5
    head, *trades = result.events
    assert head == ("exchange_cleared", {"session": "day-1", "accepted": 4, "trades": 5})
    events = []
    for interval, s, b, quantity, price, clean in want:
        record = market.trade(chain.state, trade_id(interval, s.public, b.public))
        assert record is not None
        assert (record["quantity"], record["price"], record["clean"]) == (quantity, price, clean)
        event = {"id": trade_id(interval, s.public, b.public), "interval": interval, "seller": s.public}
        event.update(buyer=b.public, price=price, quantity=quantity)
        is_clean_book = b is P3
        events.append(("trade", {**event, **({"clean": True} if is_clean_book else {})}))
    # per interval the clean book's trades come first, each book's sorted by (seller, buyer)
    by_interval = {100: [], 101: []}  # type: dict[int, list[Any]]
    for e in events:
        by_interval[e[1]["interval"]].append(e)
    expected = [e for i in (100, 101) for e in sorted(by_interval[i], key=book_order)]
    assert list(trades) == expected
    record = market.interval_record(chain.state, 100)
    assert record["trades"][0] == trade_id(100, P1.public, P3.public)  # the clean book first
    assert set(record["trades"]) == {trade_id(100, s.public, b.public) for i, s, b, *_ in want if i == 100}
    assert not market.interval_record(chain.state, 102)["closed"]
    assert cleared(chain.state, "day-1") is not None


def test_a_clean_buyer_alone_clears_only_the_clean_book() -> None:
    # P3 accepts only its clean purchase, P4 declines: the general book of interval 100 has no buyer
    chain = closed_clean()
    submit(chain, P1, "exchange.accept", accept_body([1000, 0, 0], [2000, 0, 0], clean=True))
    submit(chain, P2, "exchange.accept", accept_body([1500, 0, 0], [0, 0, 0]))
    submit(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1500, 0, 0]))
    submit(chain, P4, "exchange.accept", accept_body([0, 0, 0], [0, 0, 0]))
    result = submit(chain, P1, "exchange.clear", {"session": "day-1"})
    assert [e[1]["id"] for e in result.events[1:]] == [trade_id(100, P1.public, P3.public)]


def test_a_clean_session_clears_in_parts_counting_both_books(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 accepts × 2 books = 8 cells per interval: with 8 a part clears one interval (without the clean book: 2)
    monkeypatch.setattr(exchange_clearing, "MAX_CLEAR_CELLS", 8)
    chain = closed_clean()
    accept_finals(chain)
    first = submit(chain, P1, "exchange.clear", {"session": "day-1"})
    assert first.events[0] == (
        "exchange_clearing",
        {"session": "day-1", "first": 100, "last": 100, "trades": 3},
    )
    second = submit(chain, P1, "exchange.clear", {"session": "day-1"})
    assert second.events[0][1]["last"] == 101
    last = submit(chain, P1, "exchange.clear", {"session": "day-1"})
    assert last.events[0] == ("exchange_cleared", {"session": "day-1", "accepted": 4, "trades": 5})


def test_a_pair_in_both_books_of_an_interval_is_refused() -> None:
    # the accepts' rules leave it impossible (a clean buyer never buys general energy): forced here
    both = (True, 60, [(P1.public, P3.public, 100)]), (False, 50, [(P1.public, P3.public, 50)])
    with pytest.raises(RuleError) as err:
        one_book_per_pair(100, both)
    assert err.value.reason is Reason.INVALID and "would trade in both books" in err.value.detail
    one_book_per_pair(
        100, ((True, 60, [(P1.public, P3.public, 100)]), (False, 50, [(P1.public, P4.public, 5)]))
    )


def test_max_demands_counts_per_book() -> None:
    # 70 clean sellers for one clean buyer: it names its 64 largest in the clean book, whatever the general
    sellers = {bytes([i]) * 32: {"positions": [0], "clean_positions": [100 + i]} for i in range(1, 71)}
    buyer = {bytes([200]) * 32: {"positions": [0], "clean_positions": [-10_000]}}
    general = {bytes([201]) * 32: {"positions": [-50], "clean_positions": [0]}}
    taken = {**sellers, **buyer, **general}
    clean = book_trades(taken, 0, "clean_positions")
    assert len(clean) == MAX_DEMANDS and all(b == bytes([200]) * 32 for _, b, _ in clean)
    assert book_trades(taken, 0, "positions") == []


# ---------------------------------------------------------------------------------------------- accepts


def test_accepts_keep_the_clean_book_and_its_rounds() -> None:
    chain = closed_clean()
    accept_finals(chain)
    mine = accepted(chain.view, "day-1", P3.public)
    assert mine is not None and mine["clean_positions"] == [-1500, -2000, 0] and mine["round"] == 1
    # round 2: P3 cuts its clean purchase; the others re-check unchanged
    result = submit(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1000, -2000, 0]))
    assert result.events[-1][1]["changed"] is True
    mine = accepted(chain.view, "day-1", P3.public)
    assert mine is not None and mine["clean_before"] == [-1500, -2000, 0] and mine["round"] == 2
    assert clean_accepts_at(chain.view, "day-1", 1) == {m.public: FINALS[m][1] for m in ALL}
    # a clean-only buyer trading only clean energy is still trading: its round is awaited
    status = rounds(chain.view, "day-1")
    assert status is not None and status["changed"] == [P3.public] and not status["settled"]
    why, text = refused(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1200, -2000, 0]))
    assert why is Reason.DUPLICATE
    for m in (P1, P2, P4):
        g, c, seller = FINALS[m]
        submit(chain, m, "exchange.accept", accept_body(g, c, clean=seller))
    # round 3: reduce-only per book against round 2
    why, text = refused(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1200, -2000, 0]))
    assert (
        why is Reason.RULE_VIOLATION
        and "clean position -1200 Wh in interval 100: larger than its round-2" in text
    )


def test_a_clean_only_accept_of_the_clean_book_alone_is_not_a_decline() -> None:
    chain = closed_clean()
    result = submit(chain, P3, "exchange.accept", accept_body([0, 0, 0], [0, -100, 0]))
    assert result.events[-1][1]["declined"] is False
    assert ks.decode_int(chain.view.get(b"mkt/last/" + P3.public)) == FIRST + 1


def test_an_accept_without_a_clean_book_takes_no_clean_positions() -> None:
    chain = closed_clean(clean_prices=None)
    why, text = refused(chain, P1, "exchange.accept", accept_body([1000, 500, 0], [0, 0, 0], clean=True))
    assert why is Reason.INVALID and "opened without clean_prices" in text
    submit(chain, P1, "exchange.accept", accept_body([1000, 500, 0], None, clean=True))


@pytest.mark.parametrize(
    ("who", "general", "clean", "flag", "why", "words"),
    [
        (P1, [1000, 500, 0], None, True, Reason.INVALID, "a clean session needs clean_positions"),
        (P1, [1000, 500, 0], [2000, 1000], True, Reason.INVALID, "2 clean positions, the session has 3"),
        (
            P2,
            [1500, 0, 0],
            [100, 0, 0],
            False,
            Reason.RULE_VIOLATION,
            "not of the sign of its final stepped clean",
        ),
        (
            P4,
            [-2000, 0, 0],
            [-100, 0, 0],
            False,
            Reason.RULE_VIOLATION,
            "not of the sign of its final stepped clean",
        ),
        (P3, [0, 0, 0], [-1600, 0, 0], False, Reason.RULE_VIOLATION, "larger than its final stepped clean"),
        (
            P1,
            [1000, 0, 0],
            [2000, 0, 0],
            False,
            Reason.RULE_VIOLATION,
            "a clean sale needs the accept's clean true",
        ),
    ],
)
def test_an_accept_outside_the_clean_books_rules_is_refused(
    who: Keypair, general: list[int], clean: list[int] | None, flag: bool, why: Reason, words: str
) -> None:
    chain = closed_clean()
    got, text = refused(chain, who, "exchange.accept", accept_body(general, clean, flag))
    assert got is why and words in text
    assert accepted(chain.view, "day-1", who.public) is None


def test_an_accepted_clean_purchase_is_never_resold_as_general() -> None:
    """c_t < 0 ⇒ g_t = 0 at the accept as at the post (M5). The post's rule leaves no final stepped position
    to reduce to g > 0 beside c < 0 (test_exchange_clean), so the accept's own check is called directly,
    with P3's rules as the chain holds them (clean-only, cap 10^12 + premium 10)."""
    chain = closed_clean()
    for g in (400, 1, -1):
        with pytest.raises(RuleError) as err:
            check_accept(chain.view, P3.public, FIRST, g, -1500, -1500, CLEAN_MICRO[0], False)
        assert err.value.reason is Reason.RULE_VIOLATION
        assert (
            f"clean position -1500 Wh in interval {FIRST}: a clean purchase where the member also trades "
            f"general energy ({g} Wh)" in err.value.detail
        )
    check_accept(chain.view, P3.public, FIRST, 0, -1500, -1500, CLEAN_MICRO[0], False)
    # on the chain P3's final stepped general position is 0 beside its clean purchase, so an accept selling
    # general there is refused already by the reduce-only rule; nothing is recorded
    why, text = refused(chain, P3, "exchange.accept", accept_body([400, 0, 0], [-1500, -2000, 0]))
    assert why is Reason.RULE_VIOLATION and "position 400 Wh in interval 100: not of the sign" in text
    assert accepted(chain.view, "day-1", P3.public) is None
    submit(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1500, -2000, 0]))


def test_a_clean_accept_is_judged_at_the_clean_closing_price() -> None:
    # P1's floor 55: its general sale at 50 in interval 100 is refused, its clean sale at 60 passes;
    # P3's cap 75 + premium 10 = 85: its clean purchase at 60 passes, at 90 in interval 101 it is refused
    member_rules = {**RULES, P1.public: rules(floor=55), P3.public: rules(clean_only=True, cap=75)}
    chain = closed_clean(member_rules)
    why, text = refused(chain, P1, "exchange.accept", accept_body([1000, 0, 0], [2000, 0, 0], clean=True))
    assert why is Reason.RULE_VIOLATION and "a sale at 50 below the floor 55" in text
    submit(chain, P1, "exchange.accept", accept_body([0, 500, 0], [2000, 1000, 0], clean=True))
    why, text = refused(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1500, -2000, 0]))
    assert why is Reason.RULE_VIOLATION and "a purchase at 90 above the cap 75 + clean premium 10" in text
    submit(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1500, 0, 0]))
    # a clean floor above the clean price refuses the clean sale too
    chain = closed_clean({**RULES, P1.public: rules(floor=61)})
    why, text = refused(chain, P1, "exchange.accept", accept_body([0, 0, 0], [2000, 0, 0], clean=True))
    assert (
        why is Reason.RULE_VIOLATION
        and "clean position 2000 Wh in interval 100: a sale at 60 below the floor 61" in text
    )


def test_rules_changed_after_the_posts_are_judged_at_the_accept() -> None:
    # P3 is no longer clean-only when it accepts: it may not buy clean; P1's new maximum bounds g + c
    chain = closed_clean()
    no_longer = {"rules": rules(clean_only=False), "from_interval": FIRST}
    assert isinstance(chain.sign_and_submit(P3, "market.rules", no_longer), Accepted)
    why, text = refused(chain, P3, "exchange.accept", accept_body([0, 0, 0], [-1500, 0, 0]))
    assert why is Reason.RULE_VIOLATION and "only a clean-only member buys clean energy" in text
    smaller = {"rules": rules(max_quantity=2500), "from_interval": FIRST}
    assert isinstance(chain.sign_and_submit(P1, "market.rules", smaller), Accepted)
    why, text = refused(chain, P1, "exchange.accept", accept_body([1000, 0, 0], [2000, 0, 0], clean=True))
    assert (
        why is Reason.RULE_VIOLATION
        and "(net with its clean position 2000: 3000): beyond the maximum 2500" in text
    )
    submit(chain, P1, "exchange.accept", accept_body([500, 0, 0], [2000, 0, 0], clean=True))


def test_a_silent_member_stands_on_both_books_of_its_latest_accept() -> None:
    """Genesis accept_rounds 2: past the deadline P4 stays silent in round 2 while P3 cuts its clean purchase;
    after the wait P4 stands on its round-1 accept in both books, unchanged, and the rounds settle."""
    wait, deadline = 10_000, T0 + 600_000
    params = Params(credit_limit=10**12, accept_rounds=2, accept_wait_ms=wait)
    chain = closed_clean(params=params, deadline=deadline)
    accept_finals(chain)
    chain.seal()

    def at(when: int, who: Keypair, kind: str, body: dict[str, Any]) -> Accepted:
        result = chain.sign_and_submit(who, kind, body, time_ms=when)
        assert isinstance(result, Accepted), result
        chain.seal(when)
        return result

    cut = [-1000, -2000, 0]
    late = deadline + 1
    for m, (g, c, seller) in FINALS.items():
        if m is not P4:
            at(late, m, "exchange.accept", accept_body(g, cut if m is P3 else c, clean=seller))
    after = deadline + wait + 1
    result = at(after, P1, "exchange.accept", accept_body(*FINALS[P1][:2], clean=True))  # round 3
    assert ("exchange_stood", {"session": "day-1", "member": P4.public, "round": 2}) in result.events
    stood = accepted(chain.view, "day-1", P4.public)
    assert stood is not None and (stood["round"], stood["changed"]) == (2, False)
    assert stood["clean_positions"] == stood["clean_before"] == FINALS[P4][1]
    at(after + 1, P2, "exchange.accept", accept_body(*FINALS[P2][:2]))
    at(after + 2, P3, "exchange.accept", accept_body(FINALS[P3][0], cut))
    result = at(deadline + 2 * wait + 1, P3, "exchange.clear", {"session": "day-1"})  # P4 stands in round 3
    trades = {
        (e["interval"], e["seller"], e["buyer"]): e["quantity"]
        for name, e in result.events
        if name == "trade"
    }
    assert trades[(100, P1.public, P3.public)] == 1000  # P3's cut purchase, all of it clean
    assert trades[(101, P1.public, P3.public)] == 1000

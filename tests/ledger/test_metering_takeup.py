"""`peergrid_ledger.takeup`: when the DSO takes up a trade, the one rule the DSO node and the edges both read off
the chain's trade record (`query.trade` / `query.trades`). Each state on a real contract (`LocalChain`): no
word, a lone statement, a lone commitment, two commitments before and after the reveal deadline, a reveal in
time, a dispute, an agreement, a vouching agreement, settled, superseded. Then the properties over any
record the contract writes: the kind follows the chain's own settlement state, a lone word is exactly one
party's, an unrevealed trade is only the DSO's from its reveal deadline, and once the DSO's a trade stays
so as the chain's time goes on (it leaves only when the record changes)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from sealed_fixtures import commit, reveal, sealed_setup
from test_market_reopen import chain_with, closed_interval, reopen
from test_settle_both import BUYER, BUYER2, SELLER, WAIT, Clock, both_chain, trades_of

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.takeup import (
    LONE_FROM,
    LONE_RULE,
    VOUCH_RULE,
    TakeUp,
    lone_since,
    part,
    reveals_due,
    takes_up,
    unrevealed_since,
    waits_for_dso,
    with_dso,
    withheld_due,
    withheld_since,
)

DSO_WAIT = 45_000  # the DSO's own wait_ms (config), unlike the chain's WAIT


def record(c: LocalChain, tid: bytes) -> dict[str, Any]:
    found = query.trade(c.state, tid)
    assert found is not None
    return found


def plain() -> tuple[LocalChain, Clock, bytes]:
    c = both_chain()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    return c, clock, tid


def test_no_word_yet_is_the_parties() -> None:
    c, _, tid = plain()
    trade = record(c, tid)
    assert with_dso(trade, None) is None and with_dso(trade, 10**13) is None
    assert lone_since(trade) is None and reveals_due(trade) is None


@pytest.mark.parametrize("who", ["seller", "buyer"])
def test_a_lone_statement_is_metered_from_half_the_wait_and_its_rules_apply_from_three_quarters(
    who: str,
) -> None:
    c, clock, tid = plain()
    assert clock.state(SELLER if who == "seller" else BUYER, tid, 300).ok
    at = clock.now
    trade = record(c, tid)
    assert trade["deadline"] == at + WAIT
    up = with_dso(trade, None)  # a lone word is the DSO's whatever the time (the DSO node watches it)
    assert up == TakeUp("lone", at, at + WAIT // 2, at + WAIT) == with_dso(trade, at)
    assert (
        up.rules_from(DSO_WAIT) == at + WAIT * 3 // 4 == up.rules_from(0)
    )  # the contract's wait, not the DSO's
    assert (LONE_FROM, LONE_RULE) == (0.5, 0.75)
    assert not takes_up(trade, at + WAIT // 2 - 1) and takes_up(trade, at + WAIT // 2)
    # its counterparty joins in time and agrees: the parties' again
    assert clock.state(BUYER if who == "seller" else SELLER, tid, 300).ok
    assert with_dso(record(c, tid), clock.now) is None


def test_a_lone_commitment_on_a_sealed_chain_is_metered_within_the_commit_window() -> None:
    c, clock, tid, _ = sealed_setup()
    assert commit(clock, SELLER, tid, 400, 0).ok
    at = clock.now
    up = with_dso(record(c, tid), None)
    assert up == TakeUp("lone", at, part(at, at + WAIT, LONE_FROM), at + WAIT)
    assert reveals_due(record(c, tid)) is None  # one commitment: no reveal window


def test_two_commitments_are_the_parties_until_the_reveal_deadline_then_the_dsos() -> None:
    c, clock, tid, _ = sealed_setup()
    assert commit(clock, SELLER, tid, 400, 0).ok
    assert commit(clock, BUYER, tid, 400, 0).ok
    trade = record(c, tid)
    due = clock.now + WAIT
    assert reveals_due(trade) == due and lone_since(trade) is None
    assert with_dso(trade, due - 1) is None and not takes_up(trade, due - 1)
    assert with_dso(trade, None) is None  # no chain time: never judged unrevealed
    assert unrevealed_since(trade, due - 1) is None and unrevealed_since(trade, due) == due
    up = with_dso(trade, due)
    assert up == TakeUp("unrevealed", due, due) == with_dso(trade, due + 10 * WAIT)
    assert up.rules_from(DSO_WAIT) == due + DSO_WAIT and takes_up(trade, due)


def test_a_reveal_in_time_is_the_contracts_until_the_deadline_then_the_dsos_while_nobody_repeats() -> None:
    """The silent party committed and keeps its reveal back: until the reveal deadline it may still reveal,
    so the trade is the parties' (neither lone nor unrevealed). From the deadline it can only settle on the
    stater's repeat (the withholder at its worst, `market_sealed.withheld`) or the DSO's word: a stater that
    never repeats left it "stated" for ever before (D4). Now it is "withheld" from the deadline, metered at
    once; the stater's repeat still settles it (the chain's state then decides, not this kind)."""
    c, clock, tid, _ = sealed_setup()
    assert commit(clock, SELLER, tid, 400, 0).ok
    assert commit(clock, BUYER, tid, 400, 0).ok
    due = clock.now + WAIT
    assert reveal(clock, SELLER, tid, 400, 0).ok
    trade = record(c, tid)
    assert reveals_due(trade) is None and lone_since(trade) is None and withheld_due(trade) == due
    assert with_dso(trade, due - 1) is None and withheld_since(trade, None) is None
    assert with_dso(trade, due) == TakeUp("withheld", due, due) == with_dso(trade, due + 10 * WAIT)
    assert takes_up(trade, due) and with_dso(trade, due).rules_from(DSO_WAIT) == due + DSO_WAIT  # type: ignore[union-attr]
    clock.now = max(clock.now, due)
    assert clock.state(SELLER, tid, 400).ok  # the repeat: the contract's withheld rule pays
    assert with_dso(record(c, tid), clock.now) is None


def test_a_dispute_is_the_dsos_from_the_second_statement() -> None:
    c, clock, tid = plain()
    assert clock.state(SELLER, tid, 400).ok
    assert clock.state(BUYER, tid, 250).ok
    second = clock.now
    trade = record(c, tid)
    assert query.settlement(c.state, tid)["state"] == "disputed"  # type: ignore[index]
    up = with_dso(trade, None)
    assert up == TakeUp("disputed", second, second) and up.rules_from(DSO_WAIT) == second + DSO_WAIT
    assert takes_up(trade, second) and lone_since(trade) is None
    # the DSO settles it: no longer the DSO's
    assert clock.send(Keys.dso, {"trade": tid, "delivered": 250}).ok
    assert with_dso(record(c, tid), clock.now) is None and not takes_up(record(c, tid), clock.now)


def test_an_agreement_settles_without_the_dso() -> None:
    c, clock, tid = plain()
    assert clock.state(SELLER, tid, 400).ok
    assert clock.state(BUYER, tid, 400).ok
    assert record(c, tid)["settlement"] is not None and with_dso(record(c, tid), clock.now) is None


def test_a_vouching_agreement_is_the_dsos_at_once_its_rule_at_three_quarters_of_its_window() -> None:
    c = both_chain(seller_vouched=1)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(BUYER, tid, 400).ok
    assert clock.state(SELLER, tid, 400).ok
    agreed, until = clock.now, clock.now + WAIT
    trade = record(c, tid)
    assert trade["vouch"]["until"] == until
    up = with_dso(trade, None)
    assert up == TakeUp("vouching", agreed, agreed, until) and takes_up(trade, agreed)
    assert up.rules_from(DSO_WAIT) == part(agreed, until, VOUCH_RULE) == agreed + WAIT * 3 // 4


def test_a_superseded_trade_never_waits_for_the_dso() -> None:
    chain = chain_with()
    closed_interval(chain)
    [(tid, _)] = query.trades(chain.view, 1)
    assert chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1)).ok
    old = query.trade(chain.view, tid)
    assert old is not None and old["superseded"] == 0 and with_dso(old, 10**13) is None
    # even a record that would otherwise be disputed or lone: a superseded trade never settles
    for shape in ({"disputed": True}, {"statements": {"seller": {"delivered": 1, "time": 5}}, "deadline": 9}):
        assert with_dso({**old, **shape}, 10**13) is None


def test_a_record_the_chain_never_writes_is_refused_loudly() -> None:
    """The kind needs no times (an MGMC's question); the times of a corrupt record are never guessed."""
    disputed: dict[str, Any] = {"settlement": None, "disputed": True}
    assert waits_for_dso(disputed, 0) == "disputed"
    with pytest.raises(ValueError, match="without statements"):
        with_dso(disputed, 0)
    timeless = {"settlement": None, "statements": {"seller": {"delivered": 1, "time": 5}}}
    assert waits_for_dso(timeless, None) == "lone" and lone_since(timeless) == 5
    with pytest.raises(ValueError, match="without the contract's deadline"):
        with_dso(timeless, None)
    with pytest.raises(ValueError, match="wait_ms"):
        TakeUp("disputed", 0, 0).rules_from(-1)


# ------------------------------------------------------------------------------------------- properties


@functools.cache
def chain_steps() -> tuple[tuple[dict[str, Any], str], ...]:
    """(trade record, the chain's settlement state) after every step of sealed and plain trades: no word, one
    commitment, two, a reveal in time, the DSO's settle of two unrevealed commitments, a lone statement, a
    dispute, an agreement, a vouching agreement."""
    steps: list[tuple[dict[str, Any], str]] = []

    def snap(c: LocalChain, tid: bytes) -> None:
        where = query.settlement(c.state, tid)
        assert where is not None
        steps.append((record(c, tid), where["state"]))

    c, clock, tid, tid2 = sealed_setup()
    snap(c, tid)
    for who, other in ((SELLER, SELLER), (BUYER, BUYER2)):
        assert commit(clock, who, tid, 400, 0).ok
        snap(c, tid)
        assert commit(clock, other, tid2, 300, 0).ok
    assert reveal(clock, SELLER, tid, 400, 0).ok
    snap(c, tid)
    assert clock.send(Keys.dso, {"trade": tid2, "delivered": 300, "seller_short": 0, "buyer_short": 0}).ok
    snap(c, tid2)
    c, clock, tid = plain()
    assert clock.state(SELLER, tid, 400).ok
    snap(c, tid)
    assert clock.state(BUYER, tid, 200).ok
    snap(c, tid)
    c, clock, tid = plain()
    assert clock.state(SELLER, tid, 400).ok and clock.state(BUYER, tid, 400).ok
    snap(c, tid)
    c = both_chain(seller_vouched=1)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(SELLER, tid, 400).ok and clock.state(BUYER, tid, 400).ok
    snap(c, tid)
    return tuple(steps)


def _spoke(trade: dict[str, Any]) -> set[str]:
    """The parties that said anything on the trade: a statement or a sealed commitment."""
    return set(trade.get("statements") or {}) | set(trade.get("seals") or {})


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(-2 * WAIT, 3 * WAIT), st.integers(0, 2 * WAIT), st.booleans())
def test_the_rule_follows_the_chains_record_at_any_time(
    data: st.DataObject, offset: int, later: int, known: bool
) -> None:
    """On every record the contract wrote above, at any chain time around its deadline: the kind is the
    chain's settlement state (disputed, vouching), or an open or stated trade's lone word (exactly one
    party spoke) or unrevealed commitments (both committed, none revealed, the deadline reached); a settled
    trade is never the DSO's; the times are ordered; and the DSO's stays the DSO's as time goes on."""
    trade, state = data.draw(st.sampled_from(chain_steps()))
    base = int(trade.get("deadline") or 0)
    now = base + offset if known else None
    up = with_dso(trade, now)
    assert waits_for_dso(trade, now) == (None if up is None else up.kind)
    if state in ("settled", "superseded"):
        assert up is None
        return
    if state in ("disputed", "vouching"):
        assert up is not None and up.kind == state
    elif len(_spoke(trade)) == 1:
        assert up is not None and up.kind == "lone"
    elif (
        not trade.get("statements") and len(trade.get("seals") or {}) == 2 and now is not None and now >= base
    ):
        assert up is not None and up.kind == "unrevealed" and up.since_ms == base
    elif (
        len(trade.get("statements") or {}) == 1
        and len(trade["seals"]) == 2
        and now is not None
        and now >= base
    ):
        assert up is not None and up.kind == "withheld" and up.since_ms == base  # a reveal kept back (D4)
    else:
        assert up is None
        return
    assert up.since_ms <= up.meters_from_ms <= up.rules_from(0) <= up.rules_from(DSO_WAIT)
    if now is not None:
        assert takes_up(trade, now) == (now >= up.meters_from_ms)
        assert with_dso(trade, now + later) == up  # the same take-up, later
        assert takes_up(trade, now + later) or not takes_up(trade, now)


@settings(max_examples=200, deadline=None)
@given(
    statements=st.dictionaries(st.sampled_from(["seller", "buyer"]), st.integers(0, 10**6)),
    seals=st.dictionaries(st.sampled_from(["seller", "buyer"]), st.integers(0, 10**6)),
    wait=st.integers(1, 10**6),
    marks=st.sampled_from([(), ("disputed",), ("vouch",), ("settlement",), ("superseded",)]),
    now=st.one_of(st.none(), st.integers(0, 3 * 10**6)),
)
def test_any_word_shape(
    statements: dict[str, int], seals: dict[str, int], wait: int, marks: tuple[str, ...], now: int | None
) -> None:
    """Any combination of statements and seals the record can carry (times in ms, the deadline set after the
    last word as the contract does): exactly one of the kinds or none, decided by the record as above."""
    said = {p: {"delivered": 1, "time": t} for p, t in statements.items()}
    sealed = {p: {"seal": b"x", "time": t} for p, t in seals.items()}
    last = max([*statements.values(), *seals.values()], default=None)
    trade: dict[str, Any] = {"seller": b"s", "buyer": b"b", "quantity": 1, "statements": said, "seals": sealed,
                             "deadline": None if last is None else last + wait, "settlement": None}  # fmt: skip
    if "disputed" in marks or "vouch" in marks:
        if not said:  # no record the chain writes: the rule still tells the kind, its times are refused
            assert waits_for_dso({**trade, marks[0]: True}, now) == (
                "disputed" if "disputed" in marks else "vouching"
            )
            with pytest.raises(ValueError, match="without statements"):
                with_dso({**trade, marks[0]: True}, now)
            return
        assert last is not None
        trade[marks[0]] = True if marks[0] == "disputed" else {"until": last + wait}
    elif marks:
        trade[marks[0]] = {"delivered": 1} if marks[0] == "settlement" else 0
    up = with_dso(trade, now)
    assert waits_for_dso(trade, now) == (None if up is None else up.kind)
    if marks and marks[0] in ("settlement", "superseded"):
        assert up is None
        return
    if marks:
        assert up is not None and up.kind == {"disputed": "disputed", "vouch": "vouching"}[marks[0]]
        assert up.since_ms == max(statements.values())
        return
    lone = len(set(statements) | set(seals)) == 1  # exactly one party spoke
    hidden = (
        not statements and len(seals) == 2 and now is not None and last is not None and now >= last + wait
    )
    assert (up is not None and up.kind == "lone") == lone
    assert (up is not None and up.kind == "unrevealed") == hidden
    kept_back = (
        len(statements) == 1
        and len(seals) == 2
        and now is not None
        and last is not None
        and now >= last + wait
    )
    assert (up is not None and up.kind == "withheld") == kept_back
    assert up is None or lone or hidden or kept_back
    if lone:
        assert up is not None and up.since_ms == max(statements.values(), default=last)

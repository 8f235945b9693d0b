"""The make-whole's gain bound over the member's own trading window, stated on the chain before the clear.

A member's first `exchange.accept` may carry `window` [first, last] (chain intervals): within the session,
first <= last, its nonzero accepts inside it, stated once (a re-accept only repeats it). The uplift contract
then sums `gain_bound` (max_quantity x the spread to the DSO's cover prices) over that window alone, so a
member trading a run inside a long session can no longer claim max_quantity x spread over the whole of it.
No window: the whole session and the accept's record and event bytes as before.
The session (test_uplift_contract's `day`): chain intervals 100 and 101, closing prices 100 and 120 micro-units
per Wh, every party's cover prices retail 300 / feed-in 50, so P1's spread is 200 in 100 and 180 in 101.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, reason
from test_exchange_clean import FIRST as CLEAN_FIRST
from test_exchange_clean_clear import FINALS as CLEAN_FINALS
from test_exchange_clean_clear import accept_body as clean_accept
from test_exchange_clean_clear import closed_clean
from test_uplift_contract import FIRST, NAME, POSITIONS, claim, day, ok, refused, uplift_session

from peergrid_ledger.codec import encode
from peergrid_ledger.contracts import exchange_state, market, market_state, uplift
from peergrid_ledger.contracts.exchange_clearing import accept_key
from peergrid_ledger.contracts.market_state import rules_key, tariff_key
from peergrid_ledger.results import Reason
from peergrid_ledger.state import read_obj

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4


def accept(positions: list[int], window: list[int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"session": NAME, "positions": positions, "clean": False}
    return body if window is None else {**body, "window": window}


def clear_with(
    clock: Any, windows: dict[Any, list[int]], positions: dict[Any, list[int]] | None = None
) -> None:
    """Every member accepts (its `positions`, else its stepped ones), those in `windows` stating theirs."""
    for k, stepped in POSITIONS.items():
        ok(clock.send(k, accept((positions or {}).get(k, stepped), windows.get(k)), "exchange.accept"))
    ok(clock.send(Keys.dso, {"session": NAME}, "exchange.clear"))


@pytest.mark.parametrize(
    ("window", "why", "text"),
    [
        ([FIRST], Reason.MALFORMED, "two intervals"),
        ([], Reason.MALFORMED, "two intervals"),
        ([FIRST + 1, FIRST], Reason.INVALID, "first interval is after its last"),
        ([FIRST - 1, FIRST + 1], Reason.INVALID, "outside the session's chain intervals 100..101"),
        ([FIRST, FIRST + 2], Reason.INVALID, "outside the session's chain intervals 100..101"),
        ([FIRST, FIRST], Reason.RULE_VIOLATION, "interval 101, outside its window [100, 100]"),
    ],
)
def test_a_bad_window_is_refused_naming_why_and_changes_nothing(
    window: list[int], why: Reason, text: str
) -> None:
    chain, clock = day()
    got, message = refused(clock, P1, "exchange.accept", accept(POSITIONS[P1], window))
    assert got is why and text in message, message
    assert chain.state.get(exchange_state.window_key(P1.public, NAME)) is None
    assert chain.state.get(accept_key(P1.public, NAME)) is None
    three = refused(clock, P1, "exchange.accept", accept(POSITIONS[P1], [FIRST, FIRST, FIRST + 1]))
    assert three[0] is Reason.MALFORMED  # the schema: at most two


def test_a_stated_window_is_kept_named_in_the_event_and_freezes_the_rules_through_it() -> None:
    chain, clock = day()
    # P2 trades in interval 100 alone but states both intervals: a window may be wider than its trades
    result = ok(clock.send(P2, accept(POSITIONS[P2], [FIRST, FIRST + 1]), "exchange.accept"))
    event = dict(result.events)["exchange_accepted"]
    assert event == {"session": NAME, "member": P2.public, "declined": False, "window": [FIRST, FIRST + 1]}
    assert exchange_state.trading_window(chain.state, NAME, P2.public) == range(FIRST, FIRST + 2)
    # the accept's own record keeps its bytes: the window lives beside it
    assert read_obj(chain.state, accept_key(P2.public, NAME)) == {"clean": False, "positions": POSITIONS[P2]}
    # its rules bound its gain over the window: they can no longer change inside it (after it, as before)
    rules = {"rules": {**market.NO_RULES, "max_quantity": 10**9}, "from_interval": FIRST + 1}
    why, text = refused(clock, P2, "market.rules", rules)
    assert why is Reason.RULE_VIOLATION and f"only after interval {FIRST + 1}" in text
    ok(clock.send(P2, {**rules, "from_interval": FIRST + 2}, "market.rules"))
    # without a window: today's event and no window record
    plain = dict(ok(clock.send(P3, accept(POSITIONS[P3]), "exchange.accept")).events)["exchange_accepted"]
    assert plain == {"session": NAME, "member": P3.public, "declined": False}
    assert exchange_state.trading_window(chain.state, NAME, P3.public) is None


def test_a_window_is_stated_once_with_the_first_accept_and_a_reaccept_may_only_repeat_it() -> None:
    chain, clock = day()
    ok(clock.send(P1, accept(POSITIONS[P1], [FIRST, FIRST + 1]), "exchange.accept"))
    for k in (P2, P3, P4):
        ok(clock.send(k, accept(POSITIONS[k]), "exchange.accept"))
    # round 2: a different window (narrower too) is refused; none, or the same, is taken
    why, text = refused(clock, P1, "exchange.accept", accept(POSITIONS[P1], [FIRST, FIRST]))
    assert why is Reason.RULE_VIOLATION and "states its trading window once" in text
    ok(clock.send(P1, accept(POSITIONS[P1], [FIRST, FIRST + 1]), "exchange.accept"))
    # a member that stated none cannot state one later (its bound is the session's, known to all)
    why, text = refused(clock, P2, "exchange.accept", accept(POSITIONS[P2], [FIRST, FIRST]))
    assert why is Reason.RULE_VIOLATION and "states its trading window once" in text
    assert exchange_state.trading_window(chain.state, NAME, P2.public) is None
    assert exchange_state.trading_window(chain.state, NAME, P1.public) == range(FIRST, FIRST + 2)


def test_the_gain_bound_sums_over_the_stated_window_alone() -> None:
    """P1 (max_quantity 2000) trades in 101 alone and states [101, 101]: its bound 2000 x 180 = 360,000, not
    760,000 over the session; a claim above it is refused naming the window, one at it is taken."""
    chain, clock = day(max_quantity=2_000)
    clear_with(clock, {P1: [FIRST + 1, FIRST + 1]}, {P1: [0, 1500]})
    record = uplift_session(chain)
    assert uplift.gain_bound(chain.state, record, P1.public) == 760_000  # the session's: what it was
    window = exchange_state.trading_window(chain.state, NAME, P1.public)
    assert uplift.gain_bound(chain.state, record, P1.public, window) == 360_000
    # after the clear no accept lands, so no window is widened once the prices and trades are known
    why, text = refused(clock, P1, "exchange.accept", accept([0, 1500], [FIRST, FIRST + 1]))
    assert why is Reason.CLOSED and "is cleared" in text
    assert (
        exchange_state.trading_window(chain.state, NAME, P1.public) == window == range(FIRST + 1, FIRST + 2)
    )
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 360_001, "surplus": 0})
    assert why is Reason.RULE_VIOLATION and "above 360000" in text and "trading window 101..101" in text
    assert uplift.claim(chain.state, NAME, P1.public) is None
    ok(claim(clock, P1, 360_000, 0))
    # P2 stated none: the session's bound (its max_quantity 1,000,000 Wh x 380)
    ok(claim(clock, P2, 380_000_000, 0))


def test_a_max_quantity_rule_is_needed_only_inside_the_window() -> None:
    """Review17 U-C's rule reads the window too: P1 has no rule in 100 and one from 101, and trades only there."""
    chain, clock = day(max_quantity=None)
    rules = {"rules": {**market.NO_RULES, "max_quantity": 2_000}, "from_interval": FIRST + 1}
    ok(clock.send(P1, rules, "market.rules"))
    clear_with(clock, {P1: [FIRST + 1, FIRST + 1]}, {P1: [0, 1500]})
    record = uplift_session(chain)
    assert uplift.unbounded_interval(chain.state, record, P1.public) == FIRST
    assert uplift.unbounded_interval(chain.state, record, P1.public, range(FIRST + 1, FIRST + 2)) is None
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 360_001, "surplus": 0})
    assert why is Reason.RULE_VIOLATION and "above 360000" in text
    ok(claim(clock, P1, 360_000, 0))


# ---------------------------------------------------------------------------------------------- the property


class Store(dict[bytes, bytes]):
    """A state reader over a plain dict (`get` is dict's)."""


MEMBER = b"\x07" * 32


@st.composite
def sessions(draw: st.DrawFn) -> tuple[Store, dict[str, Any]]:
    """A session of 1..12 intervals from a drawn first interval, closing prices (and maybe a clean book), the
    member's cover prices and a max_quantity rule that may change from interval to interval."""
    n = draw(st.integers(1, 12))
    first = draw(st.integers(0, 1000))
    nano = st.integers(-(10**9), 10**9)
    record: dict[str, Any] = {
        "first_interval": first,
        "intervals": n,
        "prices": draw(st.lists(nano, min_size=n, max_size=n)),
    }
    if draw(st.booleans()):
        record["clean_prices"] = draw(st.lists(nano, min_size=n, max_size=n))
    store = Store()
    for t in range(n):
        retail = draw(st.integers(0, 2000))
        store[tariff_key(MEMBER, first + t)] = encode([retail, draw(st.integers(0, retail))])
    changes = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 10**6)), min_size=1, max_size=4))
    entries = sorted({first + t: q for t, q in changes}.items())
    store[rules_key(MEMBER)] = encode([[at, {**market.NO_RULES, "max_quantity": q}] for at, q in entries])
    return store, record


@settings(max_examples=200, deadline=None)
@given(session=sessions(), data=st.data())
def test_the_bound_is_monotone_in_the_window_and_the_whole_session_window_is_todays(
    session: tuple[Store, dict[str, Any]], data: st.DataObject
) -> None:
    store, record = session
    first, n = record["first_interval"], record["intervals"]
    # drawn around the session, so windows reaching past it (clipped) and missing it (empty) come up too
    a, b, c, d = sorted(data.draw(st.lists(st.integers(first - 3, first + n + 3), min_size=4, max_size=4)))
    inner, outer = range(b, c + 1), range(a, d + 1)
    whole = uplift.gain_bound(store, record, MEMBER)
    assert uplift.gain_bound(store, record, MEMBER, range(first, first + n)) == whole
    small, large = (uplift.gain_bound(store, record, MEMBER, w) for w in (inner, outer))
    assert small is not None and large is not None and whole is not None
    assert 0 <= small <= large <= whole
    # additive: a window split in two bounds the same as the whole window
    split = (
        uplift.gain_bound(store, record, MEMBER, range(a, b)),
        uplift.gain_bound(store, record, MEMBER, range(b, d + 1)),
    )
    assert sum(x or 0 for x in split) == large
    if not set(inner) & set(range(first, first + n)):
        assert small == 0


def test_on_a_clean_session_the_window_holds_both_books() -> None:
    """P3 buys clean energy alone (general book all zeros): a window short of its clean purchase is refused."""
    chain = closed_clean()
    general, cleans, _ = CLEAN_FINALS[P3]  # clean purchases in the session's first two intervals
    body = {**clean_accept(general, cleans), "window": [CLEAN_FIRST, CLEAN_FIRST]}
    result = chain.sign_and_submit(P3, "exchange.accept", body)
    assert reason(result) is Reason.RULE_VIOLATION
    assert f"interval {CLEAN_FIRST + 1}, outside its window" in str(result)
    ok(chain.sign_and_submit(P3, "exchange.accept", {**body, "window": [CLEAN_FIRST, CLEAN_FIRST + 1]}))
    chain.seal()
    assert exchange_state.trading_window(chain.state, "day-1", P3.public) == range(
        CLEAN_FIRST, CLEAN_FIRST + 2
    )


def test_a_window_the_dso_priced_is_bounded_where_the_session_was_not() -> None:
    """The DSO prices a member for the intervals it trades (the edge's coordinator waits for exactly those): over
    the session, an unpriced interval left the gain unbounded (any claim taken: before review18 U-1; now it
    adds the chain's `uplift_max_spread` x max_quantity, 0 here); over the window it is the window's."""
    chain, clock = day(priced=False, max_quantity=2_000)
    cover = {"account": P1.public, "first_interval": FIRST + 1, "retail": [300], "feed_in": [50]}
    ok(clock.send(Keys.dso, cover, "market.tariff"))
    clear_with(clock, {P1: [FIRST + 1, FIRST + 1]}, {P1: [0, 1500]})
    record = uplift_session(chain)
    assert uplift.gain_bound(chain.state, record, P1.public) == 360_000  # interval 100 unpriced: adds 0
    assert uplift.gain_bound(chain.state, record, P1.public, range(FIRST + 1, FIRST + 2)) == 360_000
    why, text = refused(clock, P1, "uplift.claim", {"session": NAME, "gain": 10**12, "surplus": 0})
    assert why is Reason.RULE_VIOLATION and "above 360000" in text
    ok(claim(clock, P1, 360_000, 0))


@settings(max_examples=150, deadline=None)
@given(
    window=st.one_of(st.none(), st.lists(st.integers(FIRST - 2, FIRST + 3), max_size=3)),
    keep=st.tuples(st.booleans(), st.booleans()),
)
def test_an_accept_with_a_window_lands_exactly_when_the_window_holds_its_positions(
    window: list[int] | None, keep: tuple[bool, bool]
) -> None:
    """The first accept's transition: taken iff no window, or two intervals in order, within the session and
    holding every nonzero position; taken, its window is kept as stated; refused, the state is unchanged."""
    chain, clock = day()
    positions = [q if kept else 0 for q, kept in zip(POSITIONS[P1], keep, strict=True)]
    held = [FIRST + t for t, q in enumerate(positions) if q]
    valid = window is None or (
        len(window) == 2 and FIRST <= window[0] <= window[1] <= FIRST + 1
        and all(window[0] <= t <= window[1] for t in held)
    )  # fmt: skip
    root = chain.state.root
    result = clock.send(P1, accept(positions, window), "exchange.accept")
    assert result.ok == valid, (window, positions, result)
    stated = exchange_state.trading_window(chain.state, NAME, P1.public)
    if not valid:
        assert chain.state.root == root and stated is None
    else:
        assert stated == (None if window is None else range(window[0], window[1] + 1))
        last = read_obj(chain.state, market_state.last_interval_key(P1.public))
        reach = held + ([] if window is None else [window[1]])
        assert last == (max(reach) if reach else None)  # the rules freeze through the window too


@settings(max_examples=200, deadline=None)
@given(session=sessions(), data=st.data())
def test_an_unpriced_interval_adds_max_quantity_times_the_chains_spread(
    session: tuple[Store, dict[str, Any]], data: st.DataObject
) -> None:
    """Review18 U-1: the bound is a number on every chain. Where the DSO did not price the member, an interval
    adds its max_quantity x genesis `uplift_max_spread` (0 by default: nothing), a priced one what it did."""
    store, record = session
    first, n = record["first_interval"], record["intervals"]
    unpriced = data.draw(st.sets(st.integers(first, first + n - 1)))
    spread = data.draw(st.integers(0, 10**6))
    each = {t: uplift.gain_bound(store, record, MEMBER, range(t, t + 1)) for t in range(first, first + n)}
    quantity = {t: int(market_state.rules_for(store, MEMBER, t)["max_quantity"]) for t in each}
    partly = Store({k: v for k, v in store.items() if k not in {tariff_key(MEMBER, t) for t in unpriced}})
    priced_part = sum(b for t, b in each.items() if t not in unpriced)
    assert uplift.gain_bound(partly, record, MEMBER) == priced_part
    assert uplift.gain_bound(partly, record, MEMBER, None, spread) == priced_part + spread * sum(
        quantity[t] for t in unpriced
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_widest_retail_less_feed_in_as_the_chains_spread_never_bounds_tighter_than_the_dso(
    data: st.DataObject,
) -> None:
    """The genesis advice (genesis_params `uplift_max_spread`): with every closing price between the member's
    feed-in and retail, that spread bounds at least what the DSO's prices bound, so no gain the DSO's prices
    would take is refused on a chain where they are missing."""
    n = data.draw(st.integers(1, 8))
    first = data.draw(st.integers(0, 1000))
    store, prices, widest = Store(), [], 0
    for t in range(n):
        feed_in = data.draw(st.integers(0, 1000))
        retail = data.draw(st.integers(feed_in, 3000))
        micro = data.draw(st.integers(feed_in, retail))
        prices.append(micro * 1_000_000)  # nano per kWh: exactly `micro` micro-units per Wh
        store[tariff_key(MEMBER, first + t)] = encode([retail, feed_in])
        widest = max(widest, retail - feed_in)
    q = data.draw(st.integers(0, 10**6))
    store[rules_key(MEMBER)] = encode([[first, {**market.NO_RULES, "max_quantity": q}]])
    record = {"first_interval": first, "intervals": n, "prices": prices}
    unpriced = Store({k: v for k, v in store.items() if k == rules_key(MEMBER)})
    assert uplift.gain_bound(unpriced, record, MEMBER, None, widest) >= uplift.gain_bound(
        store, record, MEMBER
    )

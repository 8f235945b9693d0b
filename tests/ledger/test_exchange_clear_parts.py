"""A clear in parts (review7 F5): one `exchange.clear` computes at most MAX_CLEAR_CELLS accepted members ×
intervals; a bigger session is cleared by several, each the next intervals, to the same trades as one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from test_exchange_clear import ALL, FIRST, HAND, P1, P2, P3, P4, accept_body, closed_session, refused, submit

from peergrid_ledger.contracts import exchange_clearing, market
from peergrid_ledger.contracts.exchange_clearing import cleared, clearing_key
from peergrid_ledger.contracts.pairing import forward_trades
from peergrid_ledger.results import Accepted, Reason

CLEAR = {"session": "day-1"}


def trade_records(chain: object) -> list[object]:
    view = chain.view  # type: ignore[attr-defined]
    out = []
    for t in range(3):
        record = market.interval_record(view, FIRST + t)
        out.append((record, [market.trade(view, tid) for tid in record["trades"]]))
    return out


def test_a_clear_in_parts_records_what_one_clear_records(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = closed_session(HAND)
    for m in ALL:
        submit(whole, m, "exchange.accept", accept_body([*HAND[m][:2], 0]))
    submit(whole, Keys.dso, "exchange.clear", CLEAR)

    monkeypatch.setattr(exchange_clearing, "MAX_CLEAR_CELLS", 8)  # 4 accepts: 2 intervals per clear
    parts = closed_session(HAND)
    for m in ALL:
        submit(parts, m, "exchange.accept", accept_body([*HAND[m][:2], 0]))
    first = parts.sign_and_submit(Keys.dso, "exchange.clear", CLEAR)
    assert isinstance(first, Accepted)
    part = {"session": "day-1", "first": FIRST, "last": FIRST + 1, "trades": 5}
    assert first.events[0] == ("exchange_clearing", part)
    assert cleared(parts.view, "day-1") is None  # not complete: a reader waiting for the clear still waits
    assert parts.view.get(clearing_key("day-1")) is not None
    last = parts.sign_and_submit(P4, "exchange.clear", CLEAR)  # any member goes on
    assert isinstance(last, Accepted)
    assert last.events == (("exchange_cleared", {"session": "day-1", "accepted": 4, "trades": 5}),)
    assert parts.view.get(clearing_key("day-1")) is None
    assert trade_records(parts) == trade_records(whole)
    one, two = cleared(whole.view, "day-1"), cleared(parts.view, "day-1")
    assert one is not None and two is not None
    assert {**one, "txid": b""} == {**two, "txid": b""}
    why, text = refused(parts, P1, "exchange.clear", CLEAR)
    assert why is Reason.CLOSED and "is cleared" in text


def test_the_accepts_are_final_from_the_first_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange_clearing, "MAX_CLEAR_CELLS", 3)  # 3 accepts: 1 interval per clear
    chain = closed_session(HAND)
    for m in (P1, P2, P3):
        submit(chain, m, "exchange.accept", accept_body([*HAND[m][:2], 0]))
    submit(chain, Keys.dso, "exchange.clear", CLEAR)  # no deadline: the coordinator starts it without P4
    why, text = refused(chain, P4, "exchange.accept", accept_body([*HAND[P4][:2], 0]))
    assert why is Reason.CLOSED and "being cleared" in text
    why, text = refused(chain, Keys.authority, "exchange.clear", CLEAR)  # no member, no coordinator
    assert why is Reason.FORBIDDEN and "members or its coordinator" in text
    submit(chain, P4, "exchange.clear", CLEAR)  # a member that did not accept may still go on
    submit(chain, P2, "exchange.clear", CLEAR)
    summary = cleared(chain.view, "day-1")
    assert summary is not None and summary["accepted"] == 3
    assert [market.closed(chain.view, FIRST + t) for t in range(3)] == [True, True, False]


columns = st.lists(st.lists(st.integers(-3000, 3000), min_size=4, max_size=4), min_size=1, max_size=5)


@settings(max_examples=30, deadline=None)
@given(columns, st.sets(st.integers(0, 4)), st.integers(1, 24))
def test_any_holds_and_any_bound_clear_each_free_interval_as_one_clear_would(
    cols: list[list[int]], held: set[int], cells: int
) -> None:
    """Whatever intervals a stranger holds (one offer of 1 Wh, from P4, no member here) and however small
    the bound: each free interval gets exactly `forward_trades` of the accepts, each held one nothing (its
    record as the market left it), and the parts add up to one `exchange_cleared` naming the held ones."""
    members = (P1, P2, P3)
    finals = {m: [col[i] for col in cols] for i, m in enumerate(members)}
    chain = closed_session(finals, prices=[50_000_000] * len(cols))
    for m in members:
        submit(chain, m, "exchange.accept", accept_body(finals[m]))
    holds = sorted(t for t in held if t < len(cols))
    for t in holds:
        submit(
            chain, P4, "offer", {"interval": FIRST + t, "round": 1, "price": 1, "quantity": 1, "clean": False}
        )
    before = {t: market.interval_record(chain.view, FIRST + t) for t in holds}
    saved = exchange_clearing.MAX_CLEAR_CELLS
    exchange_clearing.MAX_CLEAR_CELLS = cells
    try:
        parts = 0
        while cleared(chain.view, "day-1") is None:
            result = chain.sign_and_submit(Keys.dso, "exchange.clear", CLEAR)
            assert isinstance(result, Accepted), result
            parts += 1
    finally:
        exchange_clearing.MAX_CLEAR_CELLS = saved
    assert parts == -(-len(cols) // max(1, cells // 3))
    skipped = []
    for t in range(len(cols)):
        sells = {m.public: finals[m][t] for m in members if finals[m][t] > 0}
        buys = {m.public: -finals[m][t] for m in members if finals[m][t] < 0}
        want = forward_trades(sells, buys, market.MAX_DEMANDS)
        record = market.interval_record(chain.view, FIRST + t)
        if t in holds:
            assert record == before[t]
            if want:
                skipped.append({"interval": FIRST + t, "held": "positions"})
            continue
        got = [market.trade(chain.view, tid) for tid in record["trades"]]
        assert sorted((g["seller"], g["buyer"], g["quantity"]) for g in got if g) == sorted(want)
        assert record["closed"] == bool(want)
    summary = cleared(chain.view, "day-1")
    assert summary is not None and summary.get("skipped", []) == skipped

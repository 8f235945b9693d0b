"""A trade this side's meter will never state is recorded with why, not as 'not metered yet' (Q13), and the
book itself keeps the next day's trades when the day before is given up (`Settlements.give_up(first=...)`).

The Settler runs on a clock the test moves and a chain that is a dict: no timing, no chain."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import PendingSettle, Settlements
from peergrid_edge.settlement import Settler

TRADE = b"t" * 32
BROKEN = (
    "not stated: the energy_wh counter jumps forward 9001540000 mWh between 88000 and 90000 ms, more than the "
    "MG's connection carries then; the interval is unmetered for its PCC meter"
)


def settler(
    not_stated: dict[bytes, str] | None, records: list[dict[str, Any]], clock: list[float]
) -> tuple[Settler, list[dict[str, Any]]]:
    """A settle_by_both Settler whose meter gives no Wh for any trade; `not_stated`: the words its metering
    keeps for a trade it will never state (None: no such callback, as before Q13)."""
    sent: list[dict[str, Any]] = []
    on_chain: dict[str, Any] = {"state": "open", "statements": {}, "deadline": None, "settlement": None}

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body)
        return Submission(True)

    async def sleep(s: float) -> None:
        clock[0] += s

    extra = {} if not_stated is None else {"not_stated": lambda p: not_stated.get(p.trade)}
    return Settler(
        submit, lambda tid: on_chain, lambda: clock[0], sleep, lambda: False, records.append,
        Settlements(1.0, 4.0), by_both=True, metering=lambda p: None, **extra,
    ), sent  # fmt: skip


def a_day(s: Settler, clock: list[float]) -> None:
    async def run() -> None:
        await s.settle(3, [(TRADE, {"buyer": b"b", "seller": b"s", "quantity": 9})], b"s", 0.0)
        for _ in range(3):  # tried three times: each time its meter gives nothing
            await s.retry_due()
            clock[0] += 10.0

    asyncio.run(run())


def test_a_broken_counters_trade_is_recorded_with_its_words_not_as_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: 'the trading day ended; last refusal: not metered yet (no PCC reading after the interval's
    end)', telling the owner to wait for a reading that can never make it metered."""
    records: list[dict[str, Any]] = []
    clock = [100.0]
    s, sent = settler({TRADE: BROKEN}, records, clock)
    a_day(s, clock)
    assert not sent and s.book.pending[TRADE].reason == BROKEN
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        [ended] = s.end_of_day()
    assert ended.reason == f"the trading day ended; last refusal: {BROKEN}"
    [record] = records
    assert record["settlement"]["reason"] == ended.reason and not record["settlement"]["settled"]
    [line] = [r for r in caplog.records if "not settled" in r.getMessage()]
    assert line.levelno == logging.WARNING and "counter jumps forward" in line.getMessage()
    assert not any("not metered yet" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("not_stated", [None, {}], ids=["no callback", "nothing broken"])
def test_a_meter_not_read_yet_still_waits_as_not_metered_yet(not_stated: dict[bytes, str] | None) -> None:
    records: list[dict[str, Any]] = []
    clock = [100.0]
    s, sent = settler(not_stated, records, clock)
    a_day(s, clock)
    [ended] = s.end_of_day()
    assert not sent and ended.reason.endswith("not metered yet (no PCC reading after the interval's end)")


def test_the_book_gives_up_the_days_before_and_keeps_the_next_days_trades() -> None:
    """`first`: the next day's first interval; its trades and later ones stay, as does a statement whose
    counterparty may still state (the Settler's `end_of_day(first)` is this call)."""
    book = Settlements(1.0, 4.0)
    book.add(PendingSettle(22, b"a" * 32, 5, reason="insufficient-funds: no"), 50.0)
    book.add(PendingSettle(23, b"w" * 32, 5, party="seller", deadline=200.0), 150.0)
    book.add(PendingSettle(24, b"b" * 32, 5, reason="insufficient-funds: no"), 60.0)
    book.add(PendingSettle(25, b"c" * 32, 5, reason="insufficient-funds: no"), 70.0)
    ended = book.give_up("the trading day ended", now=100.0, first=24)
    assert [e.pending.trade for e in ended] == [b"a" * 32]
    assert ended[0].reason == "the trading day ended; last refusal: insufficient-funds: no"
    assert sorted(book.pending) == [b"b" * 32, b"c" * 32, b"w" * 32]
    assert [e.pending.interval for e in book.give_up("the trading day ended", now=300.0)] == [23, 24, 25]

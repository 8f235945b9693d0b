"""E4: what the settlement lines of an MGMC's record and log tell its owner (U4's F4-F6).

- F4: on the buyer's-word chain a seller's sales are watched, never sent: the interval record's `settled`
  counts the sales the chain shows settled, and each other sale gets its settlement line once the buyer's
  settle lands (or, at the day's end, one saying the buyer did not settle it). Before: `settled` 0 for a
  seller in every interval, and no line ever.
- F5: a settlement line carries what the chain settled (`chain`: delivered, compensation, this side's money)
  beside this side's statement (`delivered`, `short`).
- F6: the log says what settled, and refusals only where there were some (before: "settled at attempt 2"
  for every trade on a sealed chain, where a commitment and its reveal are two attempts).

The Settler runs against a scripted chain (its `standing` and `submit`), the way tests/edge/test_settlement.py
drives it; the figures are U4's trade 1fc21b4d (settle-by-both lab, interval 49).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import Settlements, settled_figures
from peergrid_edge.settlement import Settler

ME, OTHER = b"\x01" * 32, b"\x02" * 32
TID = b"\x1f" * 32
SALE = {"seller": ME, "buyer": OTHER, "quantity": 1968, "price": 208}
# U4's trade 1fc21b4d as mg5's replica held it: mg5 (the seller) stated 1968, the DSO settled 1964 and the
# buyer's 4 Wh shortfall, compensation 632 to the seller
DSO_SETTLED = {
    "amount": 408512, "delivered": 1964, "txid": b"\xe7" * 32, "basis": "dso",
    "compensation": {"payer": "buyer", "amount": 632, "buyer_short": 4, "seller_short": 0},
}  # fmt: skip


class Chain:
    """A scripted chain: the trade's standing as `query.settlement` gives it, and the submissions sent."""

    def __init__(self, state: str = "open", settlement: dict[str, Any] | None = None) -> None:
        self.standing: dict[str, Any] = {
            "state": state,
            "statements": {},
            "deadline": None,
            "settlement": settlement,
        }
        self.sent: list[dict[str, Any]] = []
        self.answers: list[Submission] = []
        self.now = 1000.0

    async def submit(self, body: dict[str, Any]) -> Submission:
        self.sent.append(body)
        return self.answers.pop(0) if self.answers else Submission(True, "")

    async def sleep(self, s: float) -> None:
        self.now += s


def settler(chain: Chain, records: list[dict[str, Any]], by_both: bool = False) -> Settler:
    return Settler(
        chain.submit, lambda tid: chain.standing, lambda: chain.now, chain.sleep, lambda: False,
        records.append, Settlements(1.0, 8.0), by_both=by_both, metering=lambda pending: 1968,
    )  # fmt: skip


def test_a_sale_on_the_buyers_word_is_counted_and_recorded_once_the_buyer_settles_it() -> None:
    chain, records = Chain(), []
    s = settler(chain, records)
    assert asyncio.run(s.settle(49, [(TID, SALE)], ME)) == 0
    assert chain.sent == [] and [p.watch for p in s.book.pending.values()] == [True]  # read, never sent
    asyncio.run(s.retry_due())  # not due yet, and nothing recorded while the buyer has not settled
    chain.now += 1.0
    asyncio.run(s.retry_due())
    assert records == [] and chain.sent == []
    chain.standing = {**chain.standing, "state": "settled",
                      "settlement": {"amount": 409344, "delivered": 1968, "txid": b"\x00" * 32}}  # fmt: skip
    chain.now += 1.0
    asyncio.run(s.retry_due())
    assert chain.sent == [] and s.book.pending == {}
    [line] = records
    assert line["settlement"]["settled"] and line["settlement"]["party"] == "seller"
    assert (
        line["settlement"]["delivered"] is None
    )  # the seller stated nothing: the lab report reads no statement
    assert line["settlement"]["chain"] == {"delivered": 1968, "amount": 409344, "compensation": 0,
                                           "money": 0.409344, "txid": "00" * 32}  # fmt: skip


def test_a_sale_the_chain_shows_settled_counts_in_the_interval_record() -> None:
    chain, records = Chain("settled", {"amount": 409344, "delivered": 1968, "txid": b"\x00" * 32}), []
    assert asyncio.run(settler(chain, records).settle(49, [(TID, SALE)], ME)) == 1  # before: 0 for a seller


def test_a_sale_the_buyer_never_settles_is_recorded_as_such_at_the_days_end() -> None:
    chain, records = Chain(), []
    s = settler(chain, records)
    asyncio.run(s.settle(49, [(TID, SALE)], ME))
    [ended] = s.end_of_day()
    assert not ended.settled and "the buyer did not settle it" in ended.reason
    assert records[0]["settlement"]["settled"] is False and "chain" not in records[0]["settlement"]


def test_the_line_gives_the_chains_settlement_beside_the_statement_and_the_log_names_no_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """settle_by_both on a sealed chain: the statement goes out as two transactions (a commitment, then its
    reveal: the scripted chain sees them as two sends), the DSO settles other figures than this side stated."""
    chain, records = Chain(), []
    s = settler(chain, records, by_both=True)
    asyncio.run(s.settle(49, [(TID, SALE)], ME, not_before=0.0))
    asyncio.run(s.retry_due())  # stated (landed): waits for the other side
    assert chain.sent == [{"trade": TID, "delivered": 1968}] and records == []
    chain.standing = {**chain.standing, "state": "stated", "statements": {"seller": {"delivered": 1968}}}
    s.book.pending[TID].attempts += 1  # the reveal after the commitment (SealedStatements sends both)
    chain.standing = {**chain.standing, "state": "settled", "settlement": DSO_SETTLED}
    chain.now += 5.0
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        asyncio.run(s.retry_due())
    [line] = records
    assert line["settlement"]["delivered"] == 1968 and line["settlement"]["attempts"] == 2
    assert line["settlement"]["refused"] == 0
    assert line["settlement"]["chain"] == {"delivered": 1964, "amount": 408512, "compensation": 632,
                                           "money": 0.409144, "txid": "e7" * 32, "basis": "dso"}  # fmt: skip
    [told] = [r.getMessage() for r in caplog.records if "settled" in r.getMessage()]
    assert "attempt" not in told and "1964 of 1968 Wh" in told and "compensation 632 micro to this MG" in told


def test_refusals_are_named_in_the_log_when_there_were_some(caplog: pytest.LogCaptureFixture) -> None:
    chain, records = Chain(), []
    purchase = {"seller": OTHER, "buyer": ME, "quantity": 1968, "price": 208}
    chain.answers = [Submission(False, "insufficient-funds: buyer cannot pay 409344")]
    s = settler(chain, records)
    assert asyncio.run(s.settle(49, [(TID, purchase)], ME)) == 0
    chain.now += 1.0
    with caplog.at_level(logging.INFO, "peergrid.edge.trader"):
        asyncio.run(s.retry_due())
    assert [r["settlement"]["refused"] for r in records] == [1]
    assert any(
        "settled" in m and "after 1 refused attempt" in m for m in (r.getMessage() for r in caplog.records)
    )


def test_settled_figures_sign_this_sides_money() -> None:
    assert settled_figures(DSO_SETTLED, "buyer") == {
        "delivered": 1964, "amount": 408512, "compensation": -632, "money": -0.409144, "txid": "e7" * 32,
        "basis": "dso",
    }  # fmt: skip
    owed = {**DSO_SETTLED, "owed": {"payer": "buyer", "amount": 100}}
    assert settled_figures(owed, "seller")["owed"] == {"payer": "buyer", "amount": 100}  # type: ignore[index]
    assert settled_figures(None, "seller") is None
    with pytest.raises(ValueError, match="neither seller nor buyer"):
        settled_figures(DSO_SETTLED, "dso")

"""R44: `peergrid-edge day` over the days of one chain (`market.days`). A day's last trades settle, or are given
up ('the trading day ended'), in the next day's idles, and the Settler's line is stamped with the day the agent
is on then (`MarketAgent._record`); the summary of the day they were traded on reads that line all the same
(`day_summary.collect`). Before, it said 'one side stated; the other may still state until the deadline' of a
trade the agent had given up, and its transactions were not counted for the two-settlements flag. A line of
another chain's day (a new chain per day: its interval numbers repeat, and so may a trade id) is not taken.
"""

from __future__ import annotations

from typing import Any

from test_e4_day_summary import ME, OTHER, SOLD, chain, interval, trade

from peergrid_edge.day_summary import ChainView, summarise

DAY0, DAY1 = (
    "1796643733/0",
    "1796643877/24",
)  # day 0 and day 1 of a 24-interval day on one chain, 6-s intervals
GIVEN_UP = "the trading day ended; last refusal: the buyer's income is not on the chain yet"


def ended(t: int, day: str, reason: str = GIVEN_UP, txid: str | None = None) -> dict[str, Any]:
    """A settlement line as the Settler records it (`Settler._report`), stamped `day`."""
    settlement: dict[str, Any] = {"trade": SOLD, "settled": False, "party": "seller", "reason": reason,
                                  "attempts": 3, "refused": 3}  # fmt: skip
    if txid is not None:
        settlement["chain"] = {"txid": txid}
    return {"interval": t, "day": day, "settlement": settlement}


STATED = chain(
    {SOLD: ChainView({"seller": bytes.fromhex(ME), "buyer": bytes.fromhex(OTHER)}, {"state": "stated"})}
)


def test_a_days_last_trade_given_up_on_the_next_day_is_told_on_its_own_day() -> None:
    lines = [interval(23, [trade(SOLD, ME, OTHER)], day=DAY0), interval(24, [], day=DAY1), ended(23, DAY1)]
    day0 = summarise(lines, STATED, lambda t: [], DAY0)
    assert day0["intervals"][0]["trades"][0]["chain"] == {"state": "stated", "why": GIVEN_UP}
    # before: {'state': 'stated', 'why': 'one side stated; the other may still state until the deadline'}
    assert [r["interval"] for r in summarise(lines, STATED, lambda t: [], DAY1)["intervals"]] == [24]


def test_two_settling_transactions_across_the_day_boundary_are_flagged() -> None:
    lines = [
        interval(23, [trade(SOLD, ME, OTHER)], day=DAY0),
        ended(23, DAY0, "refused", "aa" * 32),
        interval(24, [], day=DAY1),
        ended(23, DAY1, GIVEN_UP, "bb" * 32),
    ]
    flags = summarise(lines, STATED, lambda t: [], DAY0)["flags"]
    assert any("settled by 2 transactions" in flag for flag in flags)


def test_a_line_of_another_chains_day_is_not_taken() -> None:
    """A new chain per day: both days start at interval 0, so the same pair's trade at 5 has the same id."""
    first, second = "1796643733/0", "1796730133/0"
    lines = [interval(5, [trade(SOLD, ME, OTHER)], day=first), ended(5, second)]
    day = summarise(lines, STATED, lambda t: [], first)
    assert day["intervals"][0]["trades"][0]["chain"]["why"].startswith("one side stated")

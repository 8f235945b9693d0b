"""The agent's written settlement endings are kept for the new day and the day before only (bounded over a
pilot's months), and those two days' are all kept."""

from __future__ import annotations

from peergrid_edge.agent_settlement import recent_endings


def test_only_the_new_day_s_and_the_day_before_s_endings_stay() -> None:
    endings = {
        (f"1000/{24 * d}", f"trade{d}-{i}", i % 2 == 0, "the trading day ended")
        for d in range(30)
        for i in range(5)
    }
    kept = recent_endings(endings, {"1000/696", "1000/672"})
    assert kept == {e for e in endings if e[0] in {"1000/696", "1000/672"}}
    assert len(kept) == 10


def test_nothing_of_those_days_is_dropped() -> None:
    endings = {("7/24", "a", True, "disputed"), ("7/24", "b", False, "the trading day ended")}
    assert recent_endings(endings, {"7/24", "7/0"}) == endings

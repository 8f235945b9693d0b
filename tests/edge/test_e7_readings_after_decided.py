"""A follower posts no readings for a trade the DSO resolved before its first post, and a quick post does not
send again what the DSO refused as read by no dispute it waits on (E7).

U6's lab, no fault: every MGMC logged 'dispute readings ... refused (409): no pending dispute reads' 41-60 times.
Each follower posts first at its window's end + max gap + a commitment interval (14 s in the 8-s lab), and the
DSO had mostly settled the trade 2-6 s before, from readings posted for the interval before (the commitment
intervals overlap) and the counterparties'. Fake clock, fake DSO, no I/O.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from peergrid_edge import dispute_readings as dr

END = 66_000  # the window [60 s, 66 s): commitment intervals 9, 10 and 11 (6-s commitments, 4.5-s max gap)
FIRST_POST = END / 1000 + 4.5 + 6


class FakeDso(dr.DisputeReadings):
    """Answers a decision from `decision`, a post from `answers` (commitment interval -> status), and keeps
    every request."""

    def __init__(self, decision: dict[str, Any] | None, answers: dict[int, int], sealed_from: dict[int, float],
                 clock: list[float]) -> None:  # fmt: skip
        def sealed(commits: range) -> list[tuple[int, list[bytes]]]:
            return [(c, [b"leaf"]) for c in commits if clock[0] >= sealed_from.get(c, 0.0)]

        super().__init__("http://dso", b"\x01" * 32, sealed, 6000, 4500)
        self.answer, self.answers, self.clock = decision, answers, clock
        self.posts: list[int] = []

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        self.clock[0] += 0.05
        if body is None:
            return (404, {"detail": "no decision"}) if self.answer is None else (200, self.answer)
        self.posts.append(body["interval"])
        status = self.answers.get(body["interval"], 201)
        if status == 409:
            return 409, {
                "detail": f"no pending dispute reads commitment interval {body['interval']} of 0101…"
            }
        return status, {"accepted": 1}


def _follow(poster: FakeDso, until: float = FIRST_POST + 20) -> bool:
    async def sleep(seconds: float) -> None:
        poster.clock[0] += max(0.0, seconds)

    return asyncio.run(
        poster.follow(b"\x02" * 32, (60_000, END), FIRST_POST, 6.0, until, lambda: poster.clock[0], sleep)
    )


def test_a_trade_the_dso_settled_before_the_first_post_gets_no_post(caplog: pytest.LogCaptureFixture) -> None:
    settled = {"resolved": True, "settled": True, "outcome": "settled", "delivered": 9747}
    poster = FakeDso(settled, {9: 409, 10: 409, 11: 409}, {}, [60.0])
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        assert _follow(poster) is True
    assert poster.posts == []  # before: 9, 10 and 11 posted and refused
    assert "refused (409)" not in caplog.text


def test_a_trade_the_dso_waits_on_is_posted_as_before() -> None:
    waiting = {
        "resolved": False,
        "outcome": "unresolved",
        "why": "commitment interval 10's readings are not at the DSO",
    }
    poster = FakeDso(waiting, {}, {}, [60.0])
    assert _follow(poster, until=FIRST_POST + 1) is False
    assert poster.posts[:3] == [9, 10, 11]


def test_no_decision_yet_is_posted() -> None:
    poster = FakeDso(None, {}, {}, [60.0])
    _follow(poster, until=FIRST_POST + 1)
    assert poster.posts[:3] == [9, 10, 11]


def test_a_quick_post_says_a_repeated_refusal_once(caplog: pytest.LogCaptureFixture) -> None:
    # interval 11 is sealed just after the first post; 9 is read by no dispute the DSO waits on
    waiting = {"resolved": False, "outcome": "unresolved", "why": "a sibling trade is not settled yet"}
    poster = FakeDso(waiting, {9: 409}, {11: FIRST_POST + 2.5}, [60.0])
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        _follow(poster, until=FIRST_POST + 5)
    assert poster.posts[:3] == [9, 10, 9] and poster.posts[-1] == 11  # 9 again at each quick try
    assert caplog.text.count("refused (409)") == 1  # at WARNING once; the repeats at INFO


class LaggingDso(FakeDso):
    """A DSO whose replica takes the dispute a block after the first post: 9 refused (409) at first, then taken."""

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if body is not None and self.clock[0] > FIRST_POST + 0.5:
            self.answers = {}
        return super()._request(path, body)


def test_a_quick_post_sends_again_what_a_dso_a_block_behind_refused() -> None:
    """R45: 21f2bd9 kept a 409'd interval out of the quick posts, so where the DSO refused it only because its
    replica had not taken the dispute yet, it was posted again only once the DSO said it was missing, at the
    next slow check an interval later (S1: a vouch's deadline lost by ~1 s under load)."""
    waiting = {"resolved": False, "outcome": "unresolved", "why": "a sibling trade is not settled yet"}
    poster = LaggingDso(waiting, {9: 409}, {11: FIRST_POST + 2.5}, [60.0])
    _follow(poster, until=FIRST_POST + 5)
    assert poster.taken == {9, 10, 11}  # before: {10, 11}

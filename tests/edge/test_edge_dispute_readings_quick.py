"""A seller's last commitment interval of readings reaches the DSO within a second or so of being sealed or
final, not an interval later (S1, session 18).

`MgMetering.follow` posts first at the window's end + max gap + one commitment interval, counting no sealing
time: the window's last commitment interval can be sealed just after that post, or final on the DSO's replica
just after it (422 "no der_commitment"). The next post came `every_s` (an interval) later: in the settle-by-both
lab, 6-s intervals, at ~+16.8 s against a vouch's deadline at ~+17.6 s, and under load the DSO settled an honest
seller at 0 delivered, "seller not metered" (T11 saw it once). Now a post that missed the last interval or met a
replica behind posts the missing intervals again after 1 s, up to 5 times. Fake clock, fake DSO, no I/O.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peergrid_edge import dispute_readings as dr

END = 66_000  # the interval's window [60 s, 66 s): commitment intervals 9, 10 and 11 (11 ends at 72 s)
FIRST_POST = END / 1000 + 4.5 + 6  # the window's end + max gap (4.5 s) + one commitment interval (6 s)


def _follow(sealed_at: float, final_at: float) -> tuple[float | None, list[tuple[float, int, int]]]:
    """When interval 11 was taken by the fake DSO (s after the window's end), and every post (time, interval,
    status), for interval 11 sealed by the edge at `sealed_at` and final on the DSO's replica at `final_at`."""
    clock = [60.0]
    posts: list[tuple[float, int, int]] = []
    taken: dict[int, float] = {}

    def sealed(commits: range) -> list[tuple[int, list[bytes]]]:
        return [(c, [b"leaf"]) for c in commits if c in (9, 10) or (c == 11 and clock[0] >= sealed_at)]

    class Dso(dr.DisputeReadings):
        def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
            clock[0] += 0.05  # a round trip
            if body is None:  # the decision: resolved once interval 11 is in
                if 11 in taken:
                    return 200, {"resolved": True}
                return 200, {"resolved": False, "why": "commitment interval 11's readings are not at the DSO"}
            commit = body["interval"]
            if commit == 11 and clock[0] < final_at:
                posts.append((clock[0], commit, 422))
                return 422, {"detail": f"no der_commitment of the node for interval {commit} on the chain"}
            posts.append((clock[0], commit, 201))
            taken.setdefault(commit, clock[0])
            return 201, {"accepted": 1}

    async def sleep(seconds: float) -> None:
        clock[0] += max(0.0, seconds)

    poster = Dso("http://dso", b"\x01" * 32, sealed, 6000, 4500)
    asyncio.run(poster.follow(b"\x02" * 32, (60_000, END), FIRST_POST, 6.0, 120.0, lambda: clock[0], sleep))
    at = taken.get(11)
    return (None if at is None else at - END / 1000), posts


@pytest.mark.parametrize(
    ("sealed_at", "final_at"),
    [(76.9, 76.9), (76.2, 77.0)],
    ids=["sealed-just-after-the-first-post", "final-at-the-dso-just-after-it"],
)
def test_the_last_interval_reaches_the_dso_within_seconds_not_an_interval(
    sealed_at: float, final_at: float
) -> None:
    at, posts = _follow(sealed_at, final_at)
    assert at is not None and at < 13.0, (at, posts)  # before: +16.8 s, an interval after the first post
    assert sorted(c for _, c, status in posts if status == 201) == [
        9,
        10,
        11,
    ]  # each taken once: only the new


def test_a_first_post_with_every_interval_makes_no_quick_post() -> None:
    at, posts = _follow(70.0, 70.0)
    assert at is not None and at < FIRST_POST - END / 1000 + 1
    assert [c for _, c, _ in posts] == [9, 10, 11]  # one post each, then the DSO's decision: resolved


def test_quick_posts_stop_after_their_tries_and_the_interval_loop_goes_on() -> None:
    at, posts = _follow(90.0, 90.0)  # sealed 13.5 s after the first post: past the quick tries
    quick = [t for t, c, _ in posts if c == 11]
    assert at is not None and at == pytest.approx(quick[-1] - END / 1000)
    assert len([p for p in posts if p[0] < FIRST_POST + dr.QUICK_S * dr.QUICK_TRIES + 1]) <= 3  # 9, 10 only

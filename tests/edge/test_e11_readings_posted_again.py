"""Sealed readings the DSO could not take (unreachable, then 404, then 500) are posted again once it answers,
before the dispute's deadline, and what it took is not posted again (E11).

U7's pilot: trades whose readings the edge posted while the DSO could not take them (a 9-s restart: "the DSO at
... is unreachable: Connection refused"; 404 while its disputes were not configured) were settled "seller not
metered", 0 of 30,000 Wh. Interval 51 (20-s intervals, 60-s commitment intervals, 60-s settle wait): the first
post 63 s after the window's end met the restarting DSO, the dispute's deadline came 4 s later and the next
check an interval (20 s) after the post. At the README's settings (15-min intervals, 45-min wait) the next check
came 15 min later and posted again only where the DSO's word named readings missing, and then all of them, also
those it had taken; a DSO waiting on a meterless seller never says so, so a buyer's readings that met an outage
never went again. Fake clock, fake DSO, no I/O.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from peergrid_edge import dispute_readings as dr
from peergrid_edge.dso_http import DsoUnreachable
from peergrid_ledger.metering import commitment_intervals

GAP_MS = 3_000  # a PCC meter polled every second: at most three polls between two readings
TRADE = b"\x02" * 32
MISSING = "the buyer's metering: commitment interval {c}'s readings are not at the DSO"
# a meterless seller is named first and its why never says what the DSO misses of the buyer
METERLESS = "the seller's metering: no PCC meter (meterless in the DSO's config)"


@dataclass(frozen=True)
class Settings:
    interval_s: float
    commit_ms: int
    wait_s: float  # settle_wait_ms: the dispute's deadline is this long after the second statement

    def window(self, t: int) -> tuple[int, int]:
        return round(t * self.interval_s * 1000), round((t + 1) * self.interval_s * 1000)

    def first_post(self, t: int) -> float:  # `MgMetering.follow`'s not_before
        return self.window(t)[1] / 1000 + GAP_MS / 1000 + self.commit_ms / 1000

    def deadline(self, t: int) -> float:  # the second statement lands ~7 s after the window's end (U7)
        return self.window(t)[1] / 1000 + 7 + self.wait_s


README = Settings(900.0, 60_000, 2700.0)  # ansible/README.md's genesis, edge.yaml's commit_interval_s 60
U7 = Settings(20.0, 60_000, 60.0)  # U7's pilot: a 60-s settle wait


class FakeDso(dr.DisputeReadings):
    """A DSO server by the fake clock: `phases` (from when, what: 'down', 404, 500 or 'up') say whether it
    answers; up, it takes every post until the dispute's deadline and decides the trade once it holds all the
    window's readings (both metered) or at the deadline (without those it lacks); it keeps every request."""

    def __init__(self, settings: Settings, t: int, phases: list[tuple[float, str | int]], why: str) -> None:
        self.clock = [settings.first_post(t) - 1]
        self.window, self.phases, self.why = settings.window(t), phases, why
        self.until = settings.deadline(t)
        self.needed = list(commitment_intervals(self.window, settings.commit_ms, GAP_MS))
        self.at_dso: dict[int, float] = {}  # commitment interval -> when the DSO took it
        self.posted: list[tuple[float, int, int | str]] = []  # (when, commitment interval, status)
        self.asked = 0
        commit_s = settings.commit_ms / 1000

        def sealed(commits: range) -> list[tuple[int, list[bytes]]]:  # sealed a second after it ended
            return [(c, [b"leaf"]) for c in commits if self.clock[0] >= (c + 1) * commit_s + 1]

        super().__init__("http://dso", b"\x01" * 32, sealed, settings.commit_ms, GAP_MS)

    def phase(self) -> str | int:
        return [what for since, what in self.phases if self.clock[0] >= since][-1]

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        self.clock[0] += 0.05  # a round trip
        phase = self.phase()
        if body is None:
            self.asked += 1
        if phase == "down":
            if body is not None:
                self.posted.append((self.clock[0], body["interval"], "down"))
            raise DsoUnreachable("[Errno 111] Connection refused")
        if phase == 404:
            answer = {"detail": "this DSO settles no disputes (no loop.disputes section with an MGMC chain)"}
        elif phase == 500:
            answer = {"detail": "Internal Server Error"}
        if phase != "up":
            if body is not None:
                self.posted.append((self.clock[0], body["interval"], int(phase)))
            return int(phase), answer
        if body is None:
            return 200, self.decision_now()
        commit = body["interval"]
        if self.clock[0] >= self.until:
            self.posted.append((self.clock[0], commit, 409))
            return 409, {"detail": f"no pending dispute reads commitment interval {commit} of 0101…"}
        self.posted.append((self.clock[0], commit, 201))
        self.at_dso.setdefault(commit, self.clock[0])
        return 201, {"accepted": 1}

    def decision_now(self) -> dict[str, Any]:
        lacking = [c for c in self.needed if c not in self.at_dso]
        if not lacking:
            return {"trade": TRADE.hex(), "resolved": True, "delivered": 27_500, "rule": "both metered",
                    "unmetered": {}}  # fmt: skip
        why = self.why.format(c=lacking[0])
        if self.clock[0] < self.until:
            return {"trade": TRADE.hex(), "resolved": False, "why": why, "until_ms": round(self.until * 1000)}
        return {"trade": TRADE.hex(), "resolved": True, "delivered": 0, "rule": "seller not metered",
                "unmetered": {"seller": MISSING.format(c=lacking[0])}}  # fmt: skip


def follow(dso: FakeDso, settings: Settings, t: int) -> bool:
    async def sleep(seconds: float) -> None:
        dso.clock[0] += max(0.0, seconds)

    until = settings.window(t)[1] / 1000 + 10 * settings.interval_s + settings.wait_s  # `on_dispute`'s bound
    return asyncio.run(
        dso.follow(TRADE, dso.window, settings.first_post(t), settings.interval_s, until,
                   lambda: dso.clock[0], sleep)
    )  # fmt: skip


def u7_restart(settings: Settings, t: int) -> list[tuple[float, str | int]]:
    """U7's interval 51: the DSO restarting across the first post (down 19 s before it), answering 404 then
    500 for half a second each, then up 2.5 s after the first post, 1.5 s before the dispute's deadline."""
    first = settings.first_post(t)
    return [(0.0, "up"), (first - 19, "down"), (first + 1.5, 404), (first + 2.0, 500), (first + 2.5, "up")]


def readme_outage(settings: Settings, t: int) -> list[tuple[float, str | int]]:
    """The DSO takes the first three commitment intervals, goes down in the middle of the first post (a 9-s
    restart), comes back without its disputes configured (404) for 5 min, errs (500) for 5 min, then answers."""
    first = settings.first_post(t)
    return [(0.0, "up"), (first + 0.22, "down"), (first + 9.2, 404), (first + 300, 500), (first + 600, "up")]


@pytest.mark.parametrize(
    "why", [MISSING, METERLESS], ids=["dso-says-missing", "dso-waits-on-a-meterless-seller"]
)
@pytest.mark.parametrize(
    ("settings", "t", "outage"),
    [(README, 4, readme_outage), (U7, 182, u7_restart)],
    ids=["readme-15-min-intervals-45-min-wait", "u7-20-s-intervals-60-s-wait"],
)
def test_readings_the_dso_could_not_take_reach_it_before_the_deadline_once_each(
    settings: Settings, t: int, outage: Any, why: str
) -> None:
    dso = FakeDso(settings, t, outage(settings, t), why)
    assert follow(dso, settings, t) is True
    late = {c: at for c, at in dso.at_dso.items() if at >= dso.until}
    assert set(dso.at_dso) == set(dso.needed) and not late, (dso.needed, dso.at_dso, dso.posted)
    # before: U7's settings not again before the deadline (the next check an interval after the first post);
    # the README's posted nothing again for the meterless seller's buyer, and all 17 again where the DSO said
    # missing, also the 3 it had taken
    taken = [c for _, c, status in dso.posted if status == 201]
    assert sorted(taken) == sorted(dso.needed), dso.posted
    assert dso.asked + len(dso.posted) < 120  # bounded: a few a second while it restarts, then backing off


def test_a_long_outage_backs_off_to_a_check_an_interval() -> None:
    first = README.first_post(4)
    dso = FakeDso(README, 4, [(0.0, "down")], MISSING)
    assert follow(dso, README, 4) is False  # never answered: given up at `until`
    # a second apart for the first 30 s, then each wait about doubles up to an interval
    assert 30 <= dso.asked <= 60, dso.asked
    assert dso.clock[0] >= first + 10 * README.interval_s


def test_a_dso_that_lost_what_it_took_in_a_restart_gets_the_window_again_soon() -> None:
    """The DSO took the first two commitment intervals, restarted in the middle of the first post (a restart
    loses the readings it held) and says the first missing once the rest arrived: the next check comes a second
    later, not an interval, and posts the window whole again, before a deadline half an interval away."""
    short = Settings(20.0, 6_000, 30.0)
    first = short.first_post(182)
    dso = RestartingDso(short, 182, [(0.0, "up"), (first + 0.17, "down"), (first + 10, "up")], MISSING)
    assert follow(dso, short, 182) is True
    assert set(dso.at_dso) == set(dso.needed) and max(dso.at_dso.values()) < dso.until, dso.posted
    assert max(dso.at_dso.values()) < first + 13  # before this change: the next check at +30 s, too late


class RestartingDso(FakeDso):
    """Forgets every reading it took while it is down (held in memory only, as the DSO node's)."""

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if self.phase() == "down":
            self.at_dso.clear()
        return super()._request(path, body)


def test_the_owner_reads_that_the_readings_never_reached_the_dso(caplog: pytest.LogCaptureFixture) -> None:
    """Down until after the deadline, then up: the DSO settled without this MG's readings. One WARNING says so,
    beside the DSO's rule and words; before, the log held only 'unreachable' lines and the Settler's
    'settled by the DSO after its dispute: 0 of 30000 Wh'. The outage itself is one WARNING, the repeats INFO."""
    first = U7.first_post(182)
    dso = FakeDso(U7, 182, [(0.0, "down"), (first + 30, "up")], MISSING)
    with caplog.at_level(logging.INFO, logger="peergrid.edge.trader"):
        assert follow(dso, U7, 182) is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    never = [w for w in warnings if "never reached the DSO" in w]
    assert len(never) == 1, warnings
    assert "commitment intervals 60-61" in never[0] and "Connection refused" in never[0], never
    assert "seller not metered" in never[0], never
    assert sum("unreachable" in w and "never reached" not in w for w in warnings) == 1, warnings


def test_readings_taken_after_an_outage_say_so(caplog: pytest.LogCaptureFixture) -> None:
    dso = FakeDso(U7, 182, u7_restart(U7, 182), MISSING)
    with caplog.at_level(logging.INFO, logger="peergrid.edge.trader"):
        follow(dso, U7, 182)
    assert any("reached the DSO" in r.getMessage() and "after" in r.getMessage() for r in caplog.records)
    assert not any("never reached" in r.getMessage() for r in caplog.records)

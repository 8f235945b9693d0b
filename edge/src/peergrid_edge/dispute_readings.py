"""This MG's sealed PCC readings posted to the DSO node for a trade it settles from the meters (split from
`pcc_readings.py`, whose `MgMetering` decides which trades need them: `readings_needed`).

Promises: `readings_bodies` are the `POST /api/dso/disputes/readings` bodies `{node, interval, leaves}` for the
sealed commitment intervals that hold readings (pure); `readings_missing` reads the DSO's decision on a trade
(`GET /api/dso/disputes/{trade}`) as "post them (again)"; `DisputeReadings` is the thin I/O shell that posts
them around a trade's window (and as far further as the DSO reads for a signing meter's clock, review16 C1),
follows the DSO's decision and posts again while it says they are missing, never for a trade it resolved already
(`dso_http.DsoHttp`, in a thread). An unreachable DSO or a refusal is logged, never raised.
What the DSO could not take (no answer, 404, a 5xx: `unsent`) is kept and posted again at the next check,
whatever the DSO's word on the trade says, until it takes it or decides the trade, and never what it took: the
checks come a second apart for the first `SOON_S` of such an outage, then twice as far apart each time, up to
the usual one an interval. Why (E11, U7's finding 7): the next check came an interval after the failed post and
posted again only where the DSO's word named readings missing, and then all of them. U7's pilot (20-s intervals,
60-s commitment intervals, a 60-s settle wait) posted interval 51's readings 63 s after its end into a DSO
restarting for 9 s, whose deadline came 4 s later: "seller not metered", 0 of 30,000 Wh, though both parties
stated 27-30 kWh; and a DSO waiting on a meterless seller names only the seller, so a buyer's readings that met
an outage were never posted again, at any settle wait. Where the DSO decided the trade without some of them,
one WARNING says so (`_decided_without`), beside the DSO's rule: the owner's settlement line says only
"settled by the DSO after its dispute: 0 of ... Wh".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from peergrid_edge.dso_http import DsoHttp
from peergrid_ledger.meter_signing import CLOCK_REACH_COMMITS, stamp_offsets
from peergrid_ledger.metering import commitment_intervals

log = logging.getLogger("peergrid.edge.trader")
# after a post that missed the window's last commitment interval (not sealed yet) or met a DSO replica without its
# der_commitment (422), post the rest again this soon, at most this often (S1: the next check came an interval
# later, in the lab 16.5 s after the interval's end against a vouch's deadline at ~17.6 s, and lost it under load)
QUICK_S = 1.0
QUICK_TRIES = 5
# readings the DSO could not take are posted again QUICK_S apart for this long (a restart: U7's DSO answered
# again 19 s after it went down), then twice as far apart each time up to a check an interval (a long outage)
SOON_S = 30.0


def readings_bodies(node: bytes, sealed: Iterable[tuple[int, Sequence[bytes]]]) -> list[dict[str, Any]]:
    """`POST /api/dso/disputes/readings` bodies: one per sealed commitment interval that holds readings."""
    return [
        {"node": node.hex(), "interval": interval, "leaves": [leaf.hex() for leaf in leaves]}
        for interval, leaves in sealed
        if leaves
    ]


def readings_missing(decision: dict[str, Any] | None) -> bool:
    """True when the DSO's decision on a trade (GET /api/dso/disputes/{trade}; None: it decided nothing yet)
    says that readings are not at the DSO, or are not the sealed ones: post them (again)."""
    if decision is None:
        return True
    if decision.get("resolved"):
        return False
    why = str(decision.get("why", ""))
    return "are not at the DSO" in why or "are not the sealed ones" in why


class DisputeReadings:
    """Posts this MG's sealed PCC readings around a disputed trade's interval to the DSO node, and again when
    the DSO says they are missing. `sealed(window)` gives the (commitment interval, leaves) pairs the edge
    store sealed in that range; `url` is the DSO server's base (http://host:port, or https://host:port whose
    certificate `ca_file` verifies: the operator's CA, the enrolment's; None: the system's trust store, where a
    pilot's private CA is not, so every post failed as unreachable)."""

    def __init__(
        self, url: str, node: bytes, sealed: Callable[[range], list[tuple[int, list[bytes]]]],
        commit_ms: int, max_gap_ms: int, timeout_s: float = 5.0, ca_file: Path | None = None,
    ) -> None:  # fmt: skip
        self.url, self.node, self._sealed = url.rstrip("/"), node, sealed
        self._dso = DsoHttp(url, ca_file, timeout_s)
        self.commit_ms, self.max_gap_ms = commit_ms, max_gap_ms  # (the timeout is the client's: `DsoHttp`)
        self.taken: set[int] = set()  # commitment intervals the DSO accepted from this poster
        # commitment intervals the DSO refused at the last post as read by no dispute it waits on (409): a quick
        # post sends them again (a DSO replica a block behind takes the dispute then: R45, the slow check re-posts
        # only once the DSO says they are missing, an interval later), saying a repeated refusal at INFO only
        self.unread: set[int] = set()
        self.incomplete = False  # the last post missed the window's last interval or met a replica behind
        # commitment intervals the DSO could not take at their last post (no answer, 404, a 5xx), and why: posted
        # again at the next check whatever the DSO's word says (E11); `failing_since` when that began (wall s)
        self.unsent: set[int] = set()
        self.unsent_why = ""
        # those of them the DSO never took since (a 409 ends `unsent` too: the DSO decided without them): the
        # owner's one line when the DSO decides (`_decided_without`)
        self.not_reached: set[int] = set()
        self.failing_since: float | None = None
        self.recheck = False  # an outage just ended: the next check comes soon (`_mark_failing`)
        self._told_failing = False  # the outage was said at WARNING; its repeats go at INFO

    def bodies(self, window: tuple[int, int]) -> list[dict[str, Any]]:
        """The bodies of the sealed commitment intervals around `window` and, where this MG's signing meter
        signed off its stamps, as far further as the DSO reads for the meter's clock (review16 C1: it counts
        signed readings at the meter's time, `meter_signing.stamp_offsets`), at most `CLOCK_REACH_COMMITS` each
        way: what the DSO node takes (`MeterClock.reachable`). Every offset counts here, not only those past
        the DSO's note bound (its config, not the edge's), so it posts at least what the DSO reads; an honest
        meter's sub-second offset now and then adds an interval, which the DSO takes and does not read."""
        sealed = self._sealed(commitment_intervals(window, self.commit_ms, self.max_gap_ms))
        ahead, behind = stamp_offsets((leaf for _, leaves in sealed for leaf in leaves), 0)
        if ahead or behind:  # a meter ahead is read at earlier stamps, one behind at later ones
            cap = CLOCK_REACH_COMMITS * self.commit_ms
            wider = (window[0] - min(ahead, cap), window[1] + min(behind, cap))
            sealed = self._sealed(commitment_intervals(wider, self.commit_ms, self.max_gap_ms))
        return readings_bodies(self.node, sealed)

    async def post(self, window: tuple[int, int], only_new: bool = False) -> int:
        """Post every sealed commitment interval around `window` (`only_new`: those the DSO has not taken from
        this poster; one it refused again as read by no dispute it waits on is said at INFO); returns how many the
        DSO accepted. An unreachable DSO or a refusal is logged, never raised. No answer, a 404 or a 5xx stops
        the post: that interval and the rest join `unsent` (the DSO takes none now), which the follower's next
        check posts again (`follow`). Sets `incomplete` when the window's last commitment interval was
        not sealed yet (the edge seals on its commit loop's next tick after the interval ends, which can be just
        after the post: `MgMetering.follow`'s `not_before` counts no sealing time) or the DSO's replica did not
        hold a `der_commitment` yet (422): both cured within a block or a commit tick, not an interval."""
        accepted = 0
        bodies = self.bodies(window)
        last = commitment_intervals(window, self.commit_ms, self.max_gap_ms)[-1]
        self.incomplete = all(body["interval"] != last for body in bodies)
        bodies = [body for body in bodies if not (only_new and body["interval"] in self.taken)]
        was_unsent, why_unsent, arrived = set(self.unsent), self.unsent_why, []
        for n, body in enumerate(bodies):
            try:
                status, answer = await asyncio.to_thread(self._request, "/api/dso/disputes/readings", body)
            except OSError as exc:
                self._not_taken(bodies[n:], f"the DSO at {self.url} is unreachable: {exc}")
                break
            detail = answer.get("detail", answer)
            if status == 404 or status >= 500:  # no disputes configured (yet), or its error: it took nothing
                self._not_taken(bodies[n:], f"the DSO at {self.url} answered {status}: {detail}")
                break
            self.unsent.discard(body["interval"])
            again = status == 409 and body["interval"] in self.unread  # refused alike at the post before
            self.unread.discard(body["interval"])
            if status == 201:
                accepted += 1
                self.taken.add(body["interval"])
                self.not_reached.discard(body["interval"])
                if body["interval"] in was_unsent:
                    arrived.append(body["interval"])
            else:
                if status == 409:
                    self.unread.add(body["interval"])
                self.incomplete |= status == 422 and "no der_commitment" in str(detail)
                (log.info if again else log.warning)("dispute readings of commitment interval %d refused (%d): %s",
                                                     body["interval"], status, detail)  # fmt: skip
        if arrived:
            log.info("dispute readings of commitment intervals %s reached the DSO after it could not take them "
                     "(%s)", spans(arrived), why_unsent)  # fmt: skip
        if not self.unsent:
            self._told_failing = False
        return accepted

    def _not_taken(self, bodies: list[dict[str, Any]], why: str) -> None:
        """The DSO took none of `bodies` (`why`): kept in `unsent` for the next check; said at WARNING once an
        outage, at INFO while it lasts (a check a second apart would otherwise fill the journal)."""
        self.unsent |= {body["interval"] for body in bodies}
        self.not_reached |= {body["interval"] for body in bodies}
        self.unsent_why = why
        (log.info if self._told_failing else log.warning)(
            "dispute readings of commitment intervals %s: %s; posted again at the next check",
            spans(sorted(body["interval"] for body in bodies)), why,
        )  # fmt: skip
        self._told_failing = True

    async def follow(
        self,
        trade: bytes,
        window: tuple[int, int],
        not_before: float,
        every_s: float,
        until: float,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> bool:
        """Post the readings around a disputed trade's `window` once they are sealed (`not_before`, wall s)
        unless the DSO resolved the trade by then, then ask the DSO every `every_s` and post again
        while it says they are missing, and sooner what it could not take (`unsent`, `pause`); True once it
        decided the trade (resolved), False when `until` came first.
        Why ask before the first post (E7): `not_before` waits for the readings bracketing the window's end to
        be sealed (max gap + a commitment interval: 14 s after the end in the 8-s lab), while the DSO often
        has them sooner, from this MG's posts for the interval before (whose commitment intervals overlap) and
        the counterparties', and settled the trade already: in U6's lab, no fault, each MGMC logged 41-60
        'refused (409): no pending dispute reads', every one posted for a trade the DSO had settled 2-6 s
        before, by each of the interval's followers (one a trade) alike.
        A check whose question gets no answer posts nothing (its post would get none either); one where the
        DSO says readings are missing posts what it has not taken while some are `unsent`, else the whole
        window again (the DSO lost what it took: a restart)."""
        if now() < not_before:
            await sleep(not_before - now())
        decision = await self.decision(trade)
        if decision is not None and decision.get("resolved"):
            return True
        await self.post(window)
        self._mark_failing(now())
        quick = QUICK_TRIES
        while self.incomplete and quick and now() < until:  # a commitment interval sealed or final just after
            quick -= 1
            await sleep(min(every_s, QUICK_S))
            await self.post(window, only_new=True)
            self._mark_failing(now())
        while now() < until:
            pause, self.recheck = QUICK_S if self.recheck else self.pause(every_s, now()), False
            await sleep(min(pause, every_s, max(0.0, until - now())))
            answered, decision = await self._ask(trade)
            if decision is not None and decision.get("resolved"):
                self._decided_without(trade, decision)
                return True
            if answered and (self.unsent or readings_missing(decision)):
                if not self.unsent:  # missing, though it took all: it lost them (a restart): the window again
                    self.taken.clear()
                await self.post(window, only_new=True)
            self._mark_failing(now())
        if self.not_reached:
            log.warning("dispute of %s: this MG's readings of commitment intervals %s never reached the DSO "
                        "(%s); no longer posted", trade.hex()[:16], spans(sorted(self.not_reached)),
                        self.unsent_why)  # fmt: skip
        return False

    def pause(self, every_s: float, now: float) -> float:
        """How long until the next check: `every_s`, or while some readings are `unsent`, `QUICK_S` for the
        first `SOON_S` of the outage, then as long as it lasted past that (each wait about doubles), at most
        `every_s`: a restarting DSO gets them within a second of answering, a DSO down for hours one try an
        interval, as before."""
        if self.failing_since is None:
            return every_s
        past = now - self.failing_since - SOON_S
        return min(every_s, QUICK_S if past < 0 else QUICK_S + past)

    def _mark_failing(self, now: float) -> None:
        """`failing_since` set at a check that left readings `unsent`, cleared once none are; then one more
        check comes `QUICK_S` later (`recheck`): a DSO that restarted lost what it took before (it holds
        readings in memory), which it then says missing, and the window goes again (`follow`)."""
        if self.unsent:
            self.failing_since = now if self.failing_since is None else self.failing_since
        elif self.failing_since is not None:
            self.failing_since, self.recheck = None, True

    def _decided_without(self, trade: bytes, decision: dict[str, Any]) -> None:
        """One WARNING where the DSO decided `trade` while some of this MG's readings never reached it: the
        owner's settlement line ('settled by the DSO after its dispute: 0 of ... Wh') does not say why, and
        the DSO's words ('seller not metered: ... readings are not at the DSO') are in the DSO's record only."""
        if not self.not_reached:
            return
        unmetered = decision.get("unmetered") or {}
        words = "; ".join(f"{side}: {why}" for side, why in unmetered.items())
        log.warning(
            "dispute of %s: the DSO decided it (%s, %s Wh%s) without this MG's readings of commitment intervals "
            "%s, which never reached the DSO (%s)", trade.hex()[:16], decision.get("rule", "settled"),
            decision.get("delivered", "?"), f"; {words}" if words else "", spans(sorted(self.not_reached)),
            self.unsent_why,
        )  # fmt: skip

    async def decision(self, trade: bytes) -> dict[str, Any] | None:
        """The DSO's latest decision on `trade` (None: none yet, or the DSO unreachable)."""
        return (await self._ask(trade))[1]

    async def _ask(self, trade: bytes) -> tuple[bool, dict[str, Any] | None]:
        """Whether the DSO answered at all, and its latest decision on `trade` (None: none, or no answer). No
        answer is said at WARNING, or at INFO during an outage already said (`_not_taken`)."""
        try:
            status, answer = await asyncio.to_thread(self._request, f"/api/dso/disputes/{trade.hex()}", None)
        except OSError as exc:
            (log.info if self._told_failing else log.warning)(
                "dispute of %s: the DSO at %s is unreachable: %s", trade.hex()[:16], self.url, exc
            )
            self._told_failing = True
            return False, None
        self._told_failing = self._told_failing and bool(self.unsent)
        return True, answer if status == 200 else None

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """GET `path` (`body` None) or POST `body` to it; no answer raises `DsoUnreachable` (an OSError)."""
        status, answer = self._dso.request("GET" if body is None else "POST", path, body)
        return status, answer if isinstance(answer, dict) else {"detail": answer}


def spans(intervals: Sequence[int]) -> str:
    """Sorted commitment intervals as runs: [9, 10, 11, 14] -> '9-11, 14'."""
    runs: list[list[int]] = []
    for interval in intervals:
        if runs and interval == runs[-1][1] + 1:
            runs[-1][1] = interval
        else:
            runs.append([interval, interval])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)

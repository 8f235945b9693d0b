"""This MG's sealed PCC readings posted to the DSO node for a trade it settles from the meters (split from
`pcc_readings.py`, whose `MgMetering` decides which trades need them: `readings_needed`).

Promises: `readings_bodies` are the `POST /api/dso/disputes/readings` bodies `{node, interval, leaves}` for the
sealed commitment intervals that hold readings (pure); `readings_missing` reads the DSO's decision on a trade
(`GET /api/dso/disputes/{trade}`) as "post them (again)"; `DisputeReadings` is the thin I/O shell that posts
them around a trade's window (and as far further as the DSO reads for a signing meter's clock, review16 C1),
follows the DSO's decision and posts again while it says they are missing, never for a trade it resolved already
(`dso_http.DsoHttp`, in a thread). An
unreachable DSO or a refusal is logged, never raised: the next check posts again.
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
        DSO accepted. An
        unreachable DSO or a refusal is logged, never raised: the next check posts again. Sets `incomplete` when the window's last commitment interval was
        not sealed yet (the edge seals on its commit loop's next tick after the interval ends, which can be just
        after the post: `MgMetering.follow`'s `not_before` counts no sealing time) or the DSO's replica did not
        hold a `der_commitment` yet (422): both cured within a block or a commit tick, not an interval."""
        accepted = 0
        bodies = self.bodies(window)
        last = commitment_intervals(window, self.commit_ms, self.max_gap_ms)[-1]
        self.incomplete = all(body["interval"] != last for body in bodies)
        for body in bodies:
            if only_new and body["interval"] in self.taken:
                continue
            try:
                status, answer = await asyncio.to_thread(self._request, "/api/dso/disputes/readings", body)
            except OSError as exc:
                log.warning("dispute readings: the DSO at %s is unreachable: %s", self.url, exc)
                return accepted
            again = status == 409 and body["interval"] in self.unread  # refused alike at the post before
            self.unread.discard(body["interval"])
            if status == 201:
                accepted += 1
                self.taken.add(body["interval"])
            else:
                if status == 409:
                    self.unread.add(body["interval"])
                detail = answer.get("detail", answer)
                self.incomplete |= status == 422 and "no der_commitment" in str(detail)
                (log.info if again else log.warning)("dispute readings of commitment interval %d refused (%d): %s",
                                                     body["interval"], status, detail)  # fmt: skip
        return accepted

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
        while it says they are missing; True once it decided the trade (resolved), False when `until` came
        first.
        Why ask before the first post (E7): `not_before` waits for the readings bracketing the window's end to
        be sealed (max gap + a commitment interval: 14 s after the end in the 8-s lab), while the DSO often
        has them sooner, from this MG's posts for the interval before (whose commitment intervals overlap) and
        the counterparties', and settled the trade already: in U6's lab, no fault, each MGMC logged 41-60
        'refused (409): no pending dispute reads', every one posted for a trade the DSO had settled 2-6 s
        before, by each of the interval's followers (one a trade) alike."""
        if now() < not_before:
            await sleep(not_before - now())
        decision = await self.decision(trade)
        if decision is not None and decision.get("resolved"):
            return True
        await self.post(window)
        quick = QUICK_TRIES
        while self.incomplete and quick and now() < until:  # a commitment interval sealed or final just after
            quick -= 1
            await sleep(min(every_s, QUICK_S))
            await self.post(window, only_new=True)
        while now() < until:
            await sleep(every_s)
            decision = await self.decision(trade)
            if decision is not None and decision.get("resolved"):
                return True
            if readings_missing(decision):
                await self.post(window)
        return False

    async def decision(self, trade: bytes) -> dict[str, Any] | None:
        """The DSO's latest decision on `trade` (None: none yet, or the DSO unreachable)."""
        try:
            status, answer = await asyncio.to_thread(self._request, f"/api/dso/disputes/{trade.hex()}", None)
        except OSError as exc:
            log.warning("dispute of %s: the DSO at %s is unreachable: %s", trade.hex()[:16], self.url, exc)
            return None
        return answer if status == 200 else None

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """GET `path` (`body` None) or POST `body` to it; no answer raises `DsoUnreachable` (an OSError)."""
        status, answer = self._dso.request("GET" if body is None else "POST", path, body)
        return status, answer if isinstance(answer, dict) else {"detail": answer}

"""What the lab's DSO node had final of its start's postings by the first interval, and the lab's one line when
that was not all of them.

Promises: `Postings` is what the DSO server's `/api/health` showed while the lab waited (`dso_ready.wait_postings`
follows it): the MGs it says `enrolled`, its cover prices' `tariffs_through` and, where the DSO's config names
connection capacities, the interval each stands from, with when (the lab's wall clock) each first became final;
`Postings.seen` is them after one more health answer (an answer without the fields changes nothing), `banner`
the testbed's line and `relative` start.json's section. `unposted(times)` is the lab's one line when any was not
final by t0, else None: the first interval would run without the DSO's sight of an MG or without its cover
prices, or an MG's positions without the bound of its connection (a capacity standing only from a later
interval counts as not final). Pure: no clock, no I/O; split from `dso_ready`, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peergrid_sim.dso_ready import StartTimes


@dataclass(frozen=True)
class Postings:
    """What the DSO node's `/api/health` showed final of its start's postings while the lab waited: the lab's
    MGs, the interval every MG's cover must be priced through (`priced_from`, the loop's first; None where the
    DSO prices none), the MGs it last said `enrolled` and its last `tariffs_through`, and when (wall epoch s)
    it first showed every MG enrolled and the cover priced (None: not by the end of the wait); with
    `capacity_from` (the loop's first interval, where the DSO's config names a connection capacity) its last
    `capacities` ({mg: the interval each MG's configured capacity stands from, or None}; None: its health
    names none, so it posts none) and when every one first stood from `capacity_from` (`bounded_at`)."""

    mgs: tuple[str, ...]
    priced_from: int | None
    enrolled: tuple[str, ...] = ()
    tariffs_through: int | None = None
    all_enrolled: float | None = None
    priced: float | None = None
    capacity_from: int | None = None
    capacities: tuple[tuple[str, int | None], ...] | None = None
    bounded_at: float | None = None

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.mgs) - set(self.enrolled))

    @property
    def unbounded(self) -> list[tuple[str, int | None]]:
        """(MG, where its capacity stands from) for each capacity the DSO posts that does not stand from
        `capacity_from`: none final yet, or only from a later interval (it landed after the MG's position
        there: that position and its make-whole claim have no bound from the DSO)."""
        wanted = self.capacity_from
        if wanted is None or self.capacities is None:
            return []
        return [(mg, start) for mg, start in self.capacities if start is None or start > wanted]

    @property
    def bounded(self) -> bool:
        """Every capacity the DSO posts stands from `capacity_from` (or none is checked or posted)."""
        return self.capacity_from is None or self.capacities is None or self.bounded_at is not None

    @property
    def done(self) -> bool:
        priced = self.priced_from is None or self.priced is not None
        return self.all_enrolled is not None and priced and self.bounded

    def seen(self, doc: dict[str, Any] | None, now: float) -> Postings:
        """These postings after one health answer at `now` (one without the fields changes nothing)."""
        loop = (doc or {}).get("loop")
        if not isinstance(loop, dict) or not isinstance(loop.get("enrolled"), list):
            return self
        enrolled = tuple(str(mg) for mg in loop["enrolled"])
        through = _interval(loop.get("tariffs_through"))
        found = replace(self, enrolled=enrolled, tariffs_through=through, capacities=_capacities(loop, self))
        if found.all_enrolled is None and not found.missing:
            found = replace(found, all_enrolled=now)
        wanted = found.priced_from
        if found.priced is None and wanted is not None and through is not None and through >= wanted:
            found = replace(found, priced=now)
        if found.bounded_at is None and found.capacities is not None and not found.unbounded:
            found = replace(found, bounded_at=now)
        return found

    def banner(self, t0: float) -> str:
        """The testbed's line under its DSO-ready line: when every MG was enrolled, the cover priced and every
        connection capacity standing."""
        if self.all_enrolled is None:
            return f"  MGs not enrolled by the first interval: {', '.join(self.missing)}"
        parts = [f"every MG enrolled {t0 - self.all_enrolled:.1f} s"]
        if self.priced is not None:
            parts.append(f"interval {self.priced_from} priced {t0 - self.priced:.1f} s")
        if self.capacity_from is not None and self.bounded_at is not None:
            parts.append(f"every connection capacity standing from it {t0 - self.bounded_at:.1f} s")
        said = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        return f"  {said} before the first interval"

    def relative(self, t0: float) -> dict[str, Any]:
        """For start.json: how many MGs were enrolled of how many, which were not, the tariffs' last interval,
        and when each became final in s relative to t0 (None: not by t0); where the lab checked capacities,
        the DSO's last `capacities`, the MGs whose capacity did not stand from the first interval
        (`unbounded`) and when every one did (`capacities_s`)."""

        def rel(at: float | None) -> float | None:
            return None if at is None else round(at - t0, 3)

        doc = {
            "enrolled": len(self.enrolled), "mgs": len(self.mgs), "missing": self.missing,
            "enrolled_s": rel(self.all_enrolled), "pricing": self.priced_from is not None,
            "priced_from": self.priced_from, "tariffs_through": self.tariffs_through, "priced_s": rel(self.priced),
            "in_time": self.done,
        }  # fmt: skip
        if self.capacity_from is not None:  # (a lab from before L10 checked none: its keys as they were)
            doc |= {
                "capacity_from": self.capacity_from,
                "capacities": None if self.capacities is None else dict(self.capacities),
                "unbounded": [mg for mg, _ in self.unbounded], "capacities_s": rel(self.bounded_at),
            }  # fmt: skip
        return doc


def _interval(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _capacities(loop: dict[str, Any], before: Postings) -> tuple[tuple[str, int | None], ...] | None:
    """The health's `capacities` ({mg: interval or null}) as (MG, interval) pairs; absent: None (the DSO
    posts none); not a mapping: what was seen before (an answer that does not say changes nothing)."""
    said = loop.get("capacities")
    if said is None:
        return None
    if not isinstance(said, dict):
        return before.capacities
    return tuple(sorted((str(mg), _interval(start)) for mg, start in said.items()))


def unposted(times: StartTimes) -> str | None:
    """The lab's one line when the DSO's enrolments, cover prices or connection capacities were not final by
    t0 (a capacity standing only from a later interval counts as not: the MG's earlier positions have no
    bound from the DSO, and its make-whole claim is cut to 0), else None."""
    found = times.postings
    if found is None or found.done:
        return None
    lacking = []
    if found.all_enrolled is None:
        lacking.append(
            f"{len(found.mgs) - len(found.missing)} of {len(found.mgs)} MGs enrolled "
            f"(not {', '.join(found.missing)})"
        )
    if found.priced_from is not None and found.priced is None:
        through = "none" if found.tariffs_through is None else f"through {found.tariffs_through}"
        lacking.append(f"cover prices {through}, interval {found.priced_from} not priced for every MG")
    if not found.bounded:
        where = [f"{mg} ({'none final' if at is None else f'only from {at}'})" for mg, at in found.unbounded]
        lacking.append(
            f"connection capacities not standing from interval {found.capacity_from}: {', '.join(where)}"
        )
    began = times.mgmcs_started
    started = "" if began is None else f"; the MGMCs started {times.t0 - began:.1f} s before it"
    return (
        f"the DSO node's postings were not final by t0: {'; '.join(lacking)}{started}; no interval was run "
        f"(a longer --lead-s gives them more time)"
    )

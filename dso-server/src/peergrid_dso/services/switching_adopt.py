"""Adopting the relays' reported positions as the DSO's topology: at node start, and by an operator.

Promises: `read_relays(driver)` reads every relay a `RelayInventory` driver names, one status each (all at once
where the driver can: `switching.read_statuses`, so silent relays at start cost one timeout together, not one
each), and never raises for a relay (an unreadable one is named with its reason); None for a driver that
names no relays.
`adopt(feeder, current_open, reading)` returns the open set the relays report (`Adoption`) - the read
relays' positions, the branches without a relay as `current_open` has them (nothing can switch those) - only
when every relay read, none is operating and that open set is radial (the feeder's own `is_radial`: every
bus fed, no loop); otherwise it raises `AdoptRefused` naming every relay that could not be read, is moving,
or, for a topology that is not radial, every relay that reports a position other than `current_open` says.
`start_topology` is the node's start: the adopted topology, or the feeder's open set and the alarm (plans
are then refused by the executor's check, as before, until an operator adopts). `adoption_records` are the
DSO-chain transactions of an adoption: a `switching_plan` named `adopt-...` whose actions give every read
relay's position (`close`: it reads closed) and its `switching_result` with the same positions, all `ok` - the
kinds the switching results already use, so the chain's latest result per switch says where the DSO holds
it; no `switching_step`, because no relay was commanded. `record_adoption` lands them through the node's
chain adapter (a starting node's; an operator's go through the console's recorder), a first try not final told
at INFO, a later one at WARNING.
Never commands a relay. Pure apart from the injected driver, adapter and state reader.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from peergrid_dso.feeder.model import Feeder
from peergrid_dso.services.dso_chain import switch_name
from peergrid_dso.services.powerflow import closed_mask, is_radial
from peergrid_dso.services.switching import RelayInventory, _driver_error, _position, read_statuses
from peergrid_ledger import query

ADOPT_PREFIX = "adopt-"
log = logging.getLogger("peergrid_dso.switching")


class AdoptRefused(ValueError):
    """The relays' positions cannot be adopted now; the message names the relays and why."""


@dataclass(frozen=True)
class RelayReading:
    positions: dict[int, str]  # branch -> "open", "closed" or "operating"
    unreadable: dict[int, str]  # branch -> why it could not be read

    def disagreeing(self, open_set: Collection[int]) -> tuple[int, ...]:
        """The relays whose read position is not what `open_set` says (moving ones included)."""
        held = set(open_set)
        return tuple(
            b for b, seen in sorted(self.positions.items()) if seen != ("open" if b in held else "closed")
        )


@dataclass(frozen=True)
class Adoption:
    open_set: tuple[int, ...]  # the topology the relays report
    changed: tuple[int, ...]  # relays whose position differs from the topology the DSO held
    reading: RelayReading


@dataclass(frozen=True)
class StartTopology:
    open_set: tuple[int, ...]
    adoption: Adoption | None  # what to record on the DSO chain (None: nothing adopted)
    alarm: str | None = None


def read_relays(driver: Any) -> RelayReading | None:
    if not isinstance(driver, RelayInventory):
        return None
    relays: Any = driver  # a RelayDriver too
    positions: dict[int, str] = {}
    unreadable: dict[int, str] = {}
    for branch, status in sorted(read_statuses(relays, driver.branches()).items()):
        if isinstance(status, Exception):  # any driver failure names the relay, never escapes
            unreadable[branch] = _driver_error(status)
        else:
            positions[branch] = _position(status)
    return RelayReading(positions, unreadable)


def adopt(feeder: Feeder, current_open: Collection[int], reading: RelayReading) -> Adoption:
    if not (reading.positions or reading.unreadable):
        raise AdoptRefused("relay positions not adopted: the driver names no relay")
    problems = [f"branch {b} unreachable ({why})" for b, why in sorted(reading.unreadable.items())]
    problems += [
        f"branch {b} operating" for b, seen in sorted(reading.positions.items()) if seen == "operating"
    ]
    if problems:
        raise AdoptRefused("relay positions not adopted: " + ", ".join(problems))
    listed = set(reading.positions)
    read_open = {b for b, seen in reading.positions.items() if seen == "open"}
    open_set = tuple(sorted((set(current_open) - listed) | read_open))
    changed = reading.disagreeing(current_open)
    if not is_radial(feeder, closed_mask(feeder, open_set)):
        held = set(current_open)
        named = ", ".join(f"branch {b} reports {reading.positions[b]}" for b in changed) or "none"
        raise AdoptRefused(
            f"relay positions not adopted: open {list(open_set)} is not radial (a loop or a bus not fed); "
            f"relays off the DSO's open set {sorted(held)}: {named}"
        )
    return Adoption(open_set, changed, reading)


def start_topology(feeder: Feeder, driver: Any) -> StartTopology:
    """The topology a starting node holds: the relays' when they can be adopted, else the feeder's open set
    and an alarm naming the relays that disagree with it or cannot be read."""
    initial = feeder.initially_open()
    reading = read_relays(driver)
    if reading is None or not (reading.positions or reading.unreadable):  # no relay named: nothing to read
        return StartTopology(initial, None)
    try:
        adoption = adopt(feeder, initial, reading)
    except AdoptRefused as exc:
        off = [b for b in reading.disagreeing(initial) if reading.positions[b] != "operating"]
        told = ", ".join(f"branch {b} reports {reading.positions[b]}" for b in off)
        alarm = (
            f"at start: {exc}; the DSO holds {feeder.name}'s open set {list(initial)}"
            + (f" ({told})" if told and "not radial" not in str(exc) else "")
            + ": every switching plan is refused while a relay disagrees with it, until an operator adopts"
        )
        return StartTopology(initial, None, alarm)
    return StartTopology(adoption.open_set, adoption)


def adoption_records(adoption: Adoption, plan_id: str, interval: int) -> list[tuple[str, dict[str, Any]]]:
    positions = sorted(adoption.reading.positions.items())
    actions = [{"switch": switch_name(b), "close": seen == "closed"} for b, seen in positions]
    results = [{"switch": switch_name(b), "closed": seen == "closed", "ok": True} for b, seen in positions]
    return [
        ("switching_plan", {"plan": plan_id, "interval": interval, "actions": actions}),
        ("switching_result", {"plan": plan_id, "results": results}),
    ]


def adoption_id(wall_s: float, by: str) -> str:
    """A plan id no restart repeats: the wall clock in ms, then who adopted ("at start" for the node)."""
    suffix = f" {by}"
    return f"{ADOPT_PREFIX}{round(wall_s * 1000)}"[: 64 - len(suffix)] + suffix


def summary(adoption: Adoption) -> str:
    changed = (
        ", ".join(f"{b} {adoption.reading.positions[b]}" for b in adoption.changed)
        or "none (the relays agree with the DSO)"
    )
    return f"adopted the relays' open set {list(adoption.open_set)}; changed: {changed}"


async def record_adoption(
    adapter: Any,
    dso_key: Any,
    records: list[tuple[str, dict[str, Any]]],
    state: Callable[[], Any],
    changed: Any,
    retry_s: float = 1.0,
) -> bool:
    """Submit an adoption's records in order through the node's `ChainAdapter` until each is final, on the
    node's event loop (a starting node's DSO chain finalises once its co-validators run: it is tried again
    after each final block). A record the chain already holds (an attempt that landed after its submit gave
    up waiting) counts as landed; a refusal for another reason is logged and ends it (False). The first try not
    final is told at INFO (at a node's start the chain makes no block before the MGMCs run), a later one at
    WARNING."""
    plan_id = records[0][1]["plan"]
    tries = 0
    for kind, body in records:
        while not _landed(state(), kind, plan_id):
            result = await adapter.submit(dso_key, kind, body)
            if result.ok or _landed(state(), kind, plan_id):
                break
            if result.reason == "refused":
                log.error("the DSO chain refuses the %s of %s: %s", kind, plan_id, result.detail)
                return False
            tries += 1
            # the MGMCs, the DSO chain's co-validators, start after the DSO: its first try times out as a matter
            # of course (a WARNING at every lab's start, as the enrolments' before 21d487c)
            said = log.info if tries == 1 else log.warning
            said("the %s of %s not final yet (%s); tried again", kind, plan_id, result.detail)
            await changed.wait(retry_s)
    return True


def _landed(state: Any, kind: str, plan_id: str) -> bool:
    plan = query.switching_plan(state, plan_id)
    return plan is not None and (kind == "switching_plan" or plan.get("result") is not None)

"""The operator's way back to the relays' own positions: read every relay, and adopt what they report.

Promises: `relay_view(ops)` reads every relay (under the relays' lock) and shows what each reports beside the
DSO's open set, with the open set an adoption would take or why it would be refused; it records nothing.
`adopt_relays(ops, user, expected_open)` reads them again and adopts their positions as the DSO's open set only
where all were read, none is moving, the result is radial (`switching_adopt.adopt`) and it is the open set the
operator was shown: recorded on the DSO chain (the adoption's plan and result, then who did it,
`operator_audit`), and it lifts the node's start alarm (`EmbeddedLoop.start_alarm`, `/api/health`). A refusal
is recorded there too, as an `operator_action` naming no transaction, and raised as `AdoptRefused`
(`Operations.adopt_relays` answers it as an `OperationError`). The way out of a refused plan, a ROLLBACK FAILED
or a restart whose relays could not be adopted. `ops` is the console's `Operations` (its lock, DSO services,
feeder, audit trail and interval), whose `read_relays` and `adopt_relays` delegate here. Split out of
`console.operations`.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from peergrid_dso.services.switching_adopt import (
    AdoptRefused,
    adopt,
    adoption_id,
    adoption_records,
    read_relays,
)

if TYPE_CHECKING:
    from peergrid_dso.console.operations import Operations


def relay_view(ops: Operations) -> dict[str, Any]:
    """What every relay reports now beside the DSO's open set, and the open set an adoption would take
    (or why it would be refused). Reads only; records nothing."""
    with ops.lock:
        held = tuple(sorted(ops.dso.open_set))
        reading = read_relays(ops.dso.switching.executor.driver)
    view: dict[str, Any] = {"open_branches": list(held), "relays": {}, "unreadable": {}}
    if reading is None:
        return view | {"adoptable": False, "reason": "the relay driver names no relays", "changed": []}
    view |= {
        "relays": {str(b): p for b, p in reading.positions.items()},
        "unreadable": {str(b): why for b, why in reading.unreadable.items()},
    }
    try:
        adoption = adopt(ops.grid.feeder, held, reading)
    except AdoptRefused as exc:
        return view | {"adoptable": False, "reason": str(exc), "changed": list(reading.disagreeing(held))}
    return view | {
        "adoptable": True,
        "reason": None,
        "adopt_open": list(adoption.open_set),
        "changed": list(adoption.changed),
    }


def adopt_relays(ops: Operations, user: str, expected_open: tuple[int, ...]) -> dict[str, Any]:
    """Adopt what the relays report as the DSO's open set, read again now: all read, none moving, radial
    (`switching_adopt.adopt`), and the open set the operator saw (`read_relays`). Recorded on the DSO
    chain (the adoption's plan and result, then who did it); a refusal is recorded there too, as an
    `operator_action` naming no transaction, and raised."""
    with ops.lock:
        before = ops.trail.pending()
        held = tuple(sorted(ops.dso.open_set))
        reading = read_relays(ops.dso.switching.executor.driver)
        try:
            if reading is None:
                raise AdoptRefused("relay positions not adopted: the relay driver names no relays")
            adoption = adopt(ops.grid.feeder, held, reading)
            if adoption.open_set != tuple(sorted(expected_open)):
                raise AdoptRefused(
                    f"relay positions not adopted: the relays now report open {list(adoption.open_set)}, "
                    f"not the {sorted(expected_open)} given: read them again"
                )
        except AdoptRefused as exc:
            with contextlib.suppress(Exception):  # the refusal stands even if the chain does not take it
                ops.trail.seal(user, f"refused: {exc}", before)
            raise
        plan_id = adoption_id(time.time(), f"by {user}")
        for kind, body in adoption_records(adoption, plan_id, ops.interval):
            ops.dso.recorder.submit(kind, body)
        ops.dso.open_set = adoption.open_set
        with contextlib.suppress(AttributeError):  # the node's start alarm stood until an adoption
            ops.dso.alarms.clear()  # (`/api/health`'s loop.start_alarm); the console's log keeps it
        chain = ops.trail.seal(user, f"adopt relay positions: open {list(adoption.open_set)}", before)
    return {
        "ok": True,
        "plan": plan_id,
        "open_branches": list(adoption.open_set),
        "changed": list(adoption.changed),
        "chain": [chain],
    }

"""Where the console reads the feeder's switch states from.

Promises: `Switchgear.states()` maps every branch number to closed/open. `DsoSwitchgear` reads the DSO
services' `open_set` - the topology the switching executor last confirmed by relay read-back (Modbus relays
or the in-memory ones) - so the console never polls relays itself and never operates them directly:
operations go through the DSO engineer's `SwitchingExecutor` (see `console.operations`).
"""

from __future__ import annotations

from typing import Any, Protocol


class Switchgear(Protocol):
    def states(self) -> dict[int, bool]:
        """Branch number -> closed."""
        ...


class DsoSwitchgear:
    def __init__(self, dso: Any) -> None:  # peergrid_dso.services.container.DsoServices
        self.dso = dso

    def states(self) -> dict[int, bool]:
        open_set = set(self.dso.open_set)
        return {b.number: b.number not in open_set for b in self.dso.feeder.branches}

"""In-memory relays: the `RelayDriver` used when no Modbus relays are configured (and in unit tests).

Names its relays (`branches`, a `switching.RelayInventory`): the executor reads every one before a plan, and a
starting node or an operator can adopt what they report (`switching_adopt`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peergrid_dso.services.switching import RelayError, RelayStatus


@dataclass
class InMemoryRelays:
    closed: dict[int, bool]
    locked: set[int] = field(default_factory=set)
    interlocked: set[int] = field(default_factory=set)

    def branches(self) -> tuple[int, ...]:
        return tuple(sorted(self.closed))

    def status(self, branch: int) -> RelayStatus:
        if branch not in self.closed:
            raise RelayError(f"no relay on branch {branch}")
        return RelayStatus(self.closed[branch], branch in self.locked, branch in self.interlocked)

    def command(self, branch: int, close: bool) -> None:
        if branch in self.locked or branch in self.interlocked:
            raise RelayError("Modbus exception 4 (device refused)")
        self.status(branch)
        self.closed[branch] = close

"""The console's port to the feeder's switches: read states, operate one switch with read-back.

Promises: `Switchgear.operate(branch, close)` returns True only when the read-back confirms the new state.
`MemorySwitchgear` is the lab stand-in (optionally failing chosen branches, for tests); the DSO engineer's
Modbus switching executor (issue 8) plugs in behind the same two methods when it lands.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Switchgear(Protocol):
    def states(self) -> dict[int, bool]:
        """Branch number -> closed."""
        ...

    def operate(self, branch: int, close: bool) -> bool: ...


class MemorySwitchgear:
    def __init__(self, closed: dict[int, bool], failing: frozenset[int] = frozenset()) -> None:
        self._closed = dict(closed)
        self.failing = set(failing)
        self.operations: list[tuple[int, bool, bool]] = []
        self._lock = threading.Lock()

    def states(self) -> dict[int, bool]:
        with self._lock:
            return dict(self._closed)

    def operate(self, branch: int, close: bool) -> bool:
        with self._lock:
            if branch not in self._closed:
                return False
            ok = branch not in self.failing
            if ok:
                self._closed[branch] = close
            self.operations.append((branch, close, ok))
            return ok

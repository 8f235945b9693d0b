"""The coordinated stop read from a halt file: every replica of a chain finalises nothing above one height.

Promises: `parse_halt(text)` turns the file's text, a JSON object {chain id: height >= 0}, into that mapping,
or raises `HaltFileError` saying what is wrong with it. `HaltFile(path).read()` follows one file, polled:
{} (no stop) when there is no path or no file (deleting the file lifts the stop); its heights when it parses;
and when it cannot be read or parsed, the heights of its last good reading ({} if none), logged once per
spell of bad readings. The file is written by another process (the lab testbed, an operator) and may be read
half-written or mid-rewrite, and a stop in force must not be lifted for a poll because of that, nor a wrong
height ever taken from it. Each poller holds its own `HaltFile`: two followers of one path share nothing.
`read_halt_file(path)` is a one-shot read with no memory (a bad file reads as no stop). `apply_halt(replicas,
heights, now)` gives each replica its chain's height (None, run on, for a chain not named) through
`ChainReplica.halt_at`, which also re-arms the engine's proposal timer: a proposer already waiting out an idle
heartbeat heads for the halt at the block period instead.
Used by the edge daemon and the DSO node alike, so both read the same file the same way. Assumes it runs on
the replicas' event loop (the engines are not thread-safe). Never raises for the file's content.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger("peergrid_ledger.halt")


class HaltFileError(ValueError):
    """The halt file's text is not a JSON object of chain ids to non-negative integer heights."""


class Halting(Protocol):
    """What `apply_halt` needs of a replica (`node.ChainReplica`)."""

    @property
    def chain(self) -> str: ...

    def halt_at(self, height: int | None, now: int) -> bool: ...


def parse_halt(text: str) -> dict[str, int]:
    """{chain id: height} from the halt file's text; `HaltFileError` when it is anything else."""
    try:
        doc = json.loads(text)
    except ValueError as exc:  # half-written, or not JSON at all
        raise HaltFileError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HaltFileError(f"not an object of chain: height but a {type(doc).__name__}")
    heights = {}
    for chain, height in doc.items():
        # bool is an int to Python; a float height (4.0, 4.5) is a writer's bug, not a height to round
        if type(height) is not int or height < 0:
            raise HaltFileError(f"chain {chain!r}: height {height!r} is not an integer >= 0")
        heights[chain] = height
    return heights


@dataclass
class HaltFile:
    """One halt file, polled: remembers its last good heights (module docstring)."""

    path: Path | None
    heights: dict[str, int] = field(default_factory=dict)  # the last good reading
    failing: bool = False  # in a spell of bad readings (logged at its start)

    def read(self) -> dict[str, int]:
        if self.path is None:
            return {}
        try:
            heights = parse_halt(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # no file: no stop (an operator lifts the stop by deleting it)
            self.heights, self.failing = {}, False
            return {}
        except (OSError, UnicodeDecodeError, HaltFileError) as exc:  # unreadable, half-written, malformed
            if not self.failing:
                log.warning(
                    "halt file %s unusable (%s): keeping %s", self.path, exc, self.heights or "no stop"
                )
            self.failing = True
            return dict(self.heights)
        if self.failing:
            log.warning("halt file %s readable again: %s", self.path, heights or "no stop")
        self.heights, self.failing = heights, False
        return dict(heights)


def read_halt_file(path: Path | None) -> dict[str, int]:
    """The coordinated stop's heights in `path`, read once: a fresh `HaltFile`, so no last good reading
    to fall back on (a bad file is no stop). A caller that polls holds its own `HaltFile` instead."""
    return HaltFile(path).read()


def apply_halt(replicas: Iterable[Halting], heights: Mapping[str, int], now: int) -> list[str]:
    """Give every replica its chain's halt height (None for a chain not named); returns the chains whose
    height changed, each also logged."""
    changed = []
    for replica in replicas:
        height = heights.get(replica.chain)
        if replica.halt_at(height, now):
            told = f"halting above height {height}" if height is not None else "the halt is lifted"
            log.warning("%s chain: %s", replica.chain, told)
            changed.append(replica.chain)
    return changed

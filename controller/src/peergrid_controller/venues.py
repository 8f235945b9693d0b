"""Where the market's moves go: the market contract in memory, or the MGMC chain when the ledger offers one.

Promises: `VENUES` maps a name to a factory `Scenario -> Venue`; `default_venue()` prefers the chain.
Never opens sockets: the chain venue seals blocks in memory with a single authority.
"""

from __future__ import annotations

from collections.abc import Callable

from peergrid_controller.bargaining import MemoryVenue, Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.model import Scenario


def memory_venue(scenario: Scenario) -> Venue:
    return MemoryVenue({mg.name: mg.rules for mg in scenario.microgrids})


def chain_venue(scenario: Scenario) -> Venue:
    return ChainVenue(scenario)


VENUES: dict[str, Callable[[Scenario], Venue]] = {"memory": memory_venue, "chain": chain_venue}


def default_venue() -> Callable[[Scenario], Venue]:
    return VENUES.get("chain", memory_venue)

"""The trading agent's day through `MarketAgent.run` with its stages stubbed, for the tests of the day around its
intervals (where it joins, its budget across failures and restarts, what it says it works on, its Settler). One
set-up instead of four copies (test_edge_agent_day, test_edge_guard_failed, test_edge_guard_start,
test_edge_agent_survives): a real `MarketAgent` of mg4 of the ieee33 scenario, its replica a real
single-authority MGMC chain (test_edge_settle_both's `both_chain`, its anonym the chain's seller), its daemon a
stand-in (edge_helpers' `stand_in_daemon`: no broker, no devices). Imported by name (`from stubbed_day import ...`), as
edge_helpers.py is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_helpers import stand_in_daemon
from test_edge_settle_both import both_chain, run_chain
from test_settlement import Node

from peergrid_edge.config import MarketSettings
from peergrid_edge.trader import MarketAgent
from peergrid_ledger.keys import Keypair, write_keyfile

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"

# the day's settings unless a test names its own: intervals 5-7 of 0.3-s slots, a 0.1-s phase
DAY = {"interval_s": 0.3, "first_interval": 5, "intervals": 3, "phase_timeout_s": 0.1}


async def no_wait(t: int) -> None:
    """The DSO's verdict for the interval before t, waited for by nobody (`MarketAgent._previous_cleared`)."""


def run_stubbed(
    tmp_path: Path, stub: Callable[[MarketAgent], None], start_in_s: float = 0.3, **settings: Any
) -> MarketAgent:
    """A MarketAgent's day run to its end (`MarketAgent.run`, at most 20 s) on a real chain: its settings `DAY`
    with `settings` over them, its first slot `start_in_s` from the agent's making, its records in
    tmp_path/market.jsonl unless named; `stub(agent)` replaces what the test stubs (its `run_interval`, its
    Settler's work...) before the day starts, the DSO's verdicts waited for by nobody unless it replaces
    `_previous_cleared` too. What the day raises is raised here."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", seller)
    named = {**DAY, "record_file": tmp_path / "market.jsonl", **settings}

    async def day(node: Node) -> MarketAgent:
        market = MarketSettings(scenario=IEEE33, anonym_key_file=tmp_path / "anonym.key",
                                t0=time.time() + start_in_s, **named)  # fmt: skip
        agent = MarketAgent(stand_in_daemon(node.ledger), market)  # type: ignore[arg-type]
        agent._previous_cleared = no_wait  # type: ignore[method-assign]
        stub(agent)
        await asyncio.wait_for(agent.run(), 20)
        return agent

    agent: MarketAgent = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    return agent

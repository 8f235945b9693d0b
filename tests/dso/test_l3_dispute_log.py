"""L3 at the DSO node: a dispute left unresolved, or settled with a side unmetered, says why in the node's log, once
per decision as its record does: a seller whose meter's counter jumped forward beyond its connection (a raised
TotWh_SF) is named there. Before, the line said only 'dispute <trade>: unresolved' and the why was in the
decision record alone."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from peergrid_dso.dispute_decision import to_json
from peergrid_dso.dispute_node import DisputeSettler
from peergrid_dso.disputes import resolve
from peergrid_ledger.keys import Keypair

from .test_disputes import CLOCK, chain_time, ramp
from .test_l3_counter_jump import scale_raised
from .test_m9_capacity_roll import MW_AT_60_S, capped_market, decided


def test_the_nodes_log_names_the_jump_once_per_decision(caplog: pytest.LogCaptureFixture) -> None:
    m = capped_market({"s": scale_raised(1e6), "b": ramp(455.0, export=False)}, MW_AT_60_S)
    replica = SimpleNamespace(app=SimpleNamespace(state=m.chain.state))
    adapter = SimpleNamespace(node=SimpleNamespace(replicas={"mgmc": replica}), chain="mgmc")
    node = DisputeSettler(adapter, Keypair.generate(), CLOCK, m.node_of())
    tid = m.trade_id("s", "b")
    waiting = decided(m)
    with caplog.at_level(logging.INFO, "peergrid_dso.dispute_node"):
        for _ in range(2):  # a retry of the same decision is not logged again
            node.decide(tid, {"settled": False, "outcome": "unresolved", **to_json(waiting)})
        m.pass_time(m.chain.tip.time + m.chain.genesis.params.settle_wait_ms)
        settled = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
        node.decide(tid, {**to_json(settled), "settled": True, "outcome": "settled"})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(
        f"dispute {tid.hex()[:16]}: unresolved (the seller's metering: the energy_wh counter"
    )
    assert "jumps forward" in lines[0] and "jumps forward" in lines[1]
    assert lines[1].startswith(
        f"dispute {tid.hex()[:16]}: settled (the seller's metering: the energy_wh counter"
    )

"""A default lab's live market record carries the chain's round cap (Q5, session 22): the lab's MGMC genesis names
`max_rounds`, the rounds its MGMCs play (`bargaining_rounds`: 2 at the testbed's 6-s intervals and 200-ms
blocks), without settle_by_both, so `LiveMarket` gives each interval its `round_cap` and the market view can say
"agreed at the round cap (2 rounds)" where it said "prices still moving" (test_q5_market_round_cap_browser.py).

A real MGMC chain on that genesis (LocalChain, sealed by an MGMC's node key), bargained as the edge bargains:
the seller opens at round 1, the buyer at 0, both move until round 2, prices still moving; a round-3 move is
refused, naming the cap; the lowest-keyed seller's `trade` closes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peergrid_dso.console.live_market import LiveMarket
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.results import Reason, Rejected
from peergrid_sim.lab_chains import LabChains, bargaining_rounds

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
INTERVAL = 40


def default_lab_market(tmp_path: Path) -> tuple[dict[str, Any], str]:
    """(the live market view's JSON for a new default lab that bargained interval 40 for its 2 rounds, the
    refusal of the round-3 move)."""
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, rounds=bargaining_rounds(6.0, 200))
    genesis = Genesis.from_json(json.loads(chains.mgmc_genesis.read_text(encoding="utf-8")))
    chain = LocalChain(genesis, chains.nodes["mg1"])
    seller, buyer = chains.anonyms["mg1"], chains.anonyms["mg3"]
    when = [genesis.time]

    def post(who: Any, kind: str, **body: Any) -> Any:
        when[0] += 200  # one transaction a block, 200 ms apart: the lab's block period
        result = chain.sign_and_submit(who, kind, {"interval": INTERVAL, **body}, time_ms=when[0])
        chain.seal(when[0])
        return result

    def ask(wh: int) -> list[dict[str, Any]]:
        return [{"seller": seller.public, "quantity": wh}]

    assert post(seller, "offer", round=1, price=150, quantity=20_000, clean=False).ok
    assert post(buyer, "bid", round=0, demands=ask(5_000)).ok
    assert post(buyer, "move", round=1, demands=ask(6_000)).ok
    assert post(seller, "move", round=2, price=160, quantity=20_000).ok
    assert post(buyer, "move", round=2, demands=ask(7_000)).ok
    over = post(seller, "move", round=3, price=165, quantity=20_000)
    assert isinstance(over, Rejected) and over.reason is Reason.RULE_VIOLATION
    assert post(seller, "trade").ok
    replica = SimpleNamespace(
        store=SimpleNamespace(head_height=lambda: chain.height, block=chain.block),
        app=SimpleNamespace(state=chain.state, genesis=chain.genesis),
    )
    names = {chains.anonyms[mg].public.hex(): mg for mg in chains.mgs}
    return LiveMarket(replica, lambda fn: fn(), names, 0.25).report(), str(over)


def test_a_default_labs_live_record_carries_the_round_cap(tmp_path: Path) -> None:
    market, refused = default_lab_market(tmp_path)
    assert "max_rounds 2 from its opening, so at most round 2" in refused
    (record,) = market["intervals"]
    assert (record["interval"], record["rounds"], record["round_cap"], record["reopened_at"]) == (
        40,
        2,
        2,
        None,
    )
    assert record["closed"] and not record["converged"]  # prices still moved in round 2: the cap stopped it
    assert record["trades"] == [{"seller": "mg1", "buyer": "mg3", "quantity_kwh": 7.0, "price": 0.16}]
    prices = {(p["round"], p["seller"]): p["price"] for p in record["prices"]}
    assert prices == {(1, "mg1"): 0.15, (2, "mg1"): 0.16}

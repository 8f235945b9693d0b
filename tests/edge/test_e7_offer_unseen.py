"""A trading agent whose PCC meter did not see an interval's start offers nothing in it (E7, with
/work/notes/E7_offer_unseen.patch): U6's mg5, back 5 s into interval 53's window, sold 44.5 kWh into it and the DSO
settled every sale "seller not metered", 0 Wh. The intraday harness of test_edge_capacity (independent agents on
one real chain); the seller's metering says the start was unseen, the control says nothing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from test_edge_capacity import INTRADAY, Chain, T
from test_edge_guard import agent_for

from peergrid_edge.pcc_readings import MgMetering


@pytest.mark.parametrize("unseen", [True, False], ids=["start unseen", "control: seen"])
def test_a_seller_whose_meter_did_not_see_the_start_offers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, unseen: bool
) -> None:
    chain = Chain(tmp_path, INTRADAY)
    agents = {
        mg.name: agent_for(chain.ledger, chain.keys[mg.name], INTRADAY, mg.name, tmp_path / f"{mg.name}.jsonl",
                           "off", 0.0)
        for mg in INTRADAY.microgrids
    }  # fmt: skip
    seller = agents["mg001"]
    seller.settler.by_both = True
    why = "no meter readings at most 6000 ms apart around 60000 ms" if unseen else None
    monkeypatch.setattr(MgMetering, "start_unseen", lambda self, t, now_ms: why)

    async def interval() -> None:
        await asyncio.wait_for(asyncio.gather(*(a.run_interval(T) for a in agents.values())), 120)

    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        chain.run(interval)
    sold, bought = chain.traded("mg001", T)
    if not unseen:
        assert sold > 0  # the control: it sells at midday
        return
    assert (sold, bought) == (0, 0)
    assert chain.refused() == []  # nothing it posted was refused: it offered 0, not beyond a rule
    assert f"interval {T}: offering nothing" in caplog.text and "around 60000 ms" in caplog.text

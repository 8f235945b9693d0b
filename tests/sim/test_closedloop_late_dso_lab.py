"""One real settle-by-both --dayahead lab whose DSO starts late (split from test_closedloop_dso_first.py, whose
stand-in DSO shows the waits and failures without the real stack): t0 moves at the DSO node's readiness and the
lab posts the moved t0's interval clock on chain (T6: `lab_clock`) before the day-ahead session's first
position, where before T6 it failed with the late line; the session clears and its forward trades settle on the
moved clock (H4, session 17: a settle-by-both --dayahead lab had never been run). Its run is a fixed argv
checked once done (the `testbed` mark, fixture `lab_run`, tests/conftest.py); its argv is the testbed's
defaults it ran with before (6-s intervals, 200-ms blocks, no report)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_sim.dso_ready import START_FILE


@pytest.mark.system
@pytest.mark.xdist_group("system")
@pytest.mark.testbed(
    intervals=1, interval_s=6.0, block_period_ms=200, lead_s=4.0, report=False, timeout_s=300,
    extra=["--dso-start-delay-s", "1", "--settle-by-both", "--dayahead"],
)  # fmt: skip
def test_a_real_settle_by_both_dayahead_lab_whose_dso_starts_late_moves_t0_and_posts_its_clock_first(
    lab_run: Any,  # conftest.LabRun
) -> None:
    # the DSO's process starts 1 s late and the first interval is 4 s away: the MGMCs could never have their
    # 16 s, nor the day-ahead stage its 22.5. With --settle-by-both the genesis' interval clock is provisional
    # (T6): t0 moves at the DSO's readiness, the lab posts the moved t0's clock (market.clock) before the MGMCs
    # start, and the lab runs. With --dayahead the MGMCs' session puts positions on the MGMC chain before t0,
    # and a clock after a position is refused for good (lab_clock.clock_news fails the lab at once then): the
    # clock lands first, the session clears and its forward trades settle on the moved clock (session 16's
    # note: this lab was not run; H4 folded it into the late-DSO lab, +22 s, rather than a lab of its own)
    workdir = lab_run.workdir  # exit status 0 and no process left running (the fixture)
    assert "the first interval moved " in lab_run.stdout
    start = json.loads((workdir / "records" / START_FILE).read_text())
    assert start["dso_start_up_s"] >= 1 and start["moved_s"] > 0 and start["mgmcs_started"] is not None
    assert start["final"]["in_time"] is True
    from peergrid_ledger.codec import decode
    from peergrid_ledger.contracts import market_clock
    from peergrid_ledger.store import BlockStore
    from peergrid_sim.lab_clock import POSITION_KINDS, clock_epoch_ms

    store = BlockStore.open(workdir / "nodes" / "mgmc-mg1" / "mgmc.db")
    try:
        state, genesis = dict(store.state_items()), store.genesis
        first: dict[str, int] = {}  # each kind's first height
        for height in range(1, store.head_height() + 1):
            for tx in store.block(height).txs:
                first.setdefault(tx.kind, height)
    finally:
        store.close()
    view = SimpleNamespace(get=state.get)
    epoch = clock_epoch_ms(start["t0"], 36, 6.0)  # the moved t0's clock, on chain
    assert market_clock.posted_epoch(view) == epoch and genesis.params.settle_epoch_ms < epoch  # provisional
    assert market_clock.fixed(view) is not None  # and fixed by the first position after it
    # before every position of the session: the accepts (and any offer or bid) came after it
    assert "exchange.accept" in first and "exchange.clear" in first, first
    assert all(first["market.clock"] < first[kind] for kind in POSITION_KINDS if kind in first), first
    for mg in ("mg1", "mg6"):  # the session cleared with every member, for the lab's interval
        lines = [
            json.loads(line) for line in (workdir / "records" / f"mgmc-{mg}.jsonl").read_text().splitlines()
        ]
        forward = next(doc["forward"] for doc in lines if isinstance(doc.get("forward"), dict))
        assert forward["cleared"] and forward["members_accepted"] == 6 and forward["intervals"] == [36], (
            forward
        )
    trades = [decode(raw) for key, raw in state.items() if key.startswith(b"mkt/trade/")]
    assert trades and all(t["settlement"] is not None for t in trades)  # settled on the moved clock

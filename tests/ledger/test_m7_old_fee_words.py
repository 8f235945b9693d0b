"""M7 (review37 R37-8): what the words about a fee from before the whole-tick rule (a538b0a) send an operator to
do is what works. A stored genesis with such a fee is refused as what it is (tests/ledger/test_m5_fee_whole_ticks
asserts the words) while a genesis damaged on disk is still "corrupt"; and on a running node whose state holds an
old `market.fee` off the tick, a whole-tick `market.fee` from the DSO is taken and is the fee the next sessions
open at (`fee_in_force`, which `exchange.open` copies), so the edge's refusal of the old session points there,
while a replica catching up from genesis still stops at the old block (`verify` names it) and alone needs the
chain recreated."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest
from ledger_fixtures import Keys
from test_m5_fee_whole_ticks import off_tick_store
from test_settle_both import Clock
from uplift_fee_fixtures import P1, TICK_FEE, fee_chain, ok

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market_fee
from peergrid_ledger.store import GENESIS_KEY, BlockStore, StoreCorrupt
from peergrid_ledger.verify import verify_store


def test_a_genesis_damaged_on_disk_is_still_called_corrupt(tmp_path: Path) -> None:
    chain, _ = fee_chain(fee=TICK_FEE)
    BlockStore.create(tmp_path / "chain", chain.genesis).close()
    db = plyvel.DB(str(tmp_path / "chain"))
    db.put(GENESIS_KEY, chain.genesis.encode()[:-3])  # cut short, as a bad sector would leave it
    db.close()
    with pytest.raises(StoreCorrupt, match=r": stored genesis is corrupt \(genesis: ") as refused:
        BlockStore.open(tmp_path / "chain")
    assert "exchange_fee" not in str(refused.value)


def test_a_whole_tick_market_fee_lets_a_running_node_with_an_old_fee_open_sessions_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_height = off_tick_store(tmp_path / "chain", monkeypatch)  # a market.fee of 750,000 at old_height
    store = BlockStore.open(tmp_path / "chain")
    try:
        chain = LocalChain(store.genesis, Keys.authority, store)  # loads its state, replays nothing
        assert market_fee.fee_in_force(chain.state, chain.genesis.params) == (750_000, 0)
        clock = Clock(chain, now=store.tip().time + 1_000)
        ok(
            clock.send(
                Keys.dso, {"fee": 2 * TICK_FEE, "fund_cap": 0, "coordinators": [P1.public]}, "market.fee"
            )
        )
        assert market_fee.fee_in_force(chain.state, chain.genesis.params) == (2 * TICK_FEE, 0)
        report = verify_store(store)  # what a replica catching up from genesis does
    finally:
        store.close()
    assert not report.ok and report.first_bad == old_height, report

"""The DSO node enrols every configured MG at once (`DsoLoop.enrol`): the adapter pipelines the enrolments on
consecutive nonces, so they land in one block, not one block each (measured on the lab's 6-MG start before:
final one block apart, 1.0 s from the first to the last). Against a real consensus replica (`ChainReplica`, a
single authority that finalises a block each time the test pumps it, LevelDB store in tmp_path):

- 30 MGs (the pilot's case136ma-30mg) are all in the pool before the first block, and that block holds them all;
- one the chain refuses at the block (its anonym is its MGMC's own key) is logged and left out, and the others,
  signed on the nonces after it, are enrolled all the same (the adapter fills the refused one's nonce);
- one revoked on the chain is not asked for again, beside the others.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import ChainAdapter
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair

from .test_refused_submit import Lab


def config(mgs: dict[str, tuple[Keypair, Keypair]]) -> SimpleNamespace:
    """The loop's `mgs` section: each MG's MGMC key and anonym."""
    entries = {mg: SimpleNamespace(node=n.public.hex(), anonym=a.public.hex()) for mg, (n, a) in mgs.items()}
    return SimpleNamespace(mgs=entries)


def enrol(lab: Lab, mgs: dict[str, tuple[Keypair, Keypair]], held: int) -> int:
    """Run `DsoLoop.enrol` with the real adapter; no block until `held` of the DSO's transactions wait in the
    pool (or the enrolment ended), then a block whenever pumped. Returns how many waited before the first."""
    app = lab.replica.app

    async def run() -> int:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        loop = DsoLoop(config(mgs), lab.replica, adapter, lab.changed, *[None] * 4, lab.dso, None, None)  # type: ignore[arg-type]
        enrolling = asyncio.create_task(loop.enrol())

        async def pooled() -> None:
            while len(app.mempool) < held and not enrolling.done():
                await asyncio.sleep(0.01)

        try:  # one after the other, the first waits for a block for ever: never more than one in the pool
            await asyncio.wait_for(pooled(), 20)
        except TimeoutError:
            enrolling.cancel()
            pytest.fail(f"{len(app.mempool)} of {held} enrolments sent before the first block")
        waiting = len(app.mempool)
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:
            await asyncio.wait_for(enrolling, 30)
        finally:
            stop.set()
            await pumping
        return waiting

    return asyncio.run(run())


def enrolment_heights(lab: Lab) -> list[int]:
    """The height of each block holding a DSO enrolment, one entry per transaction."""
    heights = []
    for height in range(1, lab.replica.app.head().height + 1):
        block = lab.store.block(height)
        heights += [height for tx in block.txs if tx.kind == "enrol"]
    return heights


def test_thirty_mgs_are_enrolled_in_one_block(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    mgs = {f"mg{i:02d}": (Keypair.generate(), Keypair.generate()) for i in range(1, 31)}
    waiting = enrol(lab, mgs, held=30)
    assert waiting == 30  # all signed and waiting before any block (one after the other: one at a time)
    assert all(query.account(lab.replica.app.state, a.public) is not None for _, a in mgs.values())
    heights = enrolment_heights(lab)
    assert len(heights) == 30 and len(set(heights)) == 1, heights  # one block, not thirty
    lab.store.close()


def test_one_refused_at_the_block_is_left_out_and_the_others_are_enrolled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab = Lab(tmp_path)
    mgs = {f"mg{i}": (Keypair.generate(), Keypair.generate()) for i in range(1, 5)}
    own = mgs["mg2"][0]
    mgs["mg2"] = (own, own)  # its anonym is its MGMC's key: the chain refuses that enrolment for good
    with caplog.at_level(logging.WARNING):
        enrol(lab, mgs, held=4)
    state = lab.replica.app.state
    enrolled = sorted(
        mg for mg, (n, a) in mgs.items() if n != a and query.account(state, a.public) is not None
    )
    assert enrolled == ["mg1", "mg3", "mg4"]
    said = [r.getMessage() for r in caplog.records if r.name == "peergrid_dso.interval_node"]
    assert [line for line in said if "refuses to enrol" in line] == [said[0]] and "mg2" in said[0], said
    # its nonce, below the others', was filled so that they could land (node_chains' gap filling)
    kinds = [tx.kind for h in range(1, lab.replica.app.head().height + 1) for tx in lab.store.block(h).txs]
    assert kinds.count("operator_action") == 1 and kinds.count("enrol") == 3, kinds
    lab.store.close()


def test_a_revoked_mg_is_not_asked_for_beside_the_others(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    mgs = {f"mg{i}": (Keypair.generate(), Keypair.generate()) for i in range(1, 4)}
    revoked_node, revoked_anonym = mgs["mg1"]
    lab.land(lab.dso, "enrol", {"mgmc": revoked_node.public, "anonym": revoked_anonym.public, "label": "mg1"})
    lab.land(lab.dso, "gov.revoke", {"key": revoked_node.public, "operator": "olga"})
    before = len(enrolment_heights(lab))
    enrol(lab, mgs, held=2)
    state = lab.replica.app.state
    assert all(query.account(state, a.public) is not None for _, a in mgs.values())
    assert len(enrolment_heights(lab)) - before == 2  # mg2 and mg3 only: the revoked mg1 was not asked for
    lab.store.close()

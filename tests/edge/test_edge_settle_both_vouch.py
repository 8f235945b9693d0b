"""review13 F2, the edge's side: on a seller_vouched chain two agreeing statements wait for the DSO's word
(`vouching`); if the DSO never comes, the Settler repeats its statement after the vouch's `until` and the
agreed figures pay (basis 'agreed'). Needs edge/settlement.py's `vouching` wait (V2's patch)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from edge.test_edge_settle_both import (
    DSO,
    KWH,
    PRICE,
    WAIT_MS,
    Node,
    party_settler,
    run_chain,
    settle_within,
    trades_of,
)  # fmt: skip

from peergrid_ledger import query
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair


def vouched_chain(seller: Keypair, buyer: Keypair, authority: Keypair) -> Genesis:
    return Genesis(
        chain="mgmc-vouch", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(seller.public, ("anonym",)),
                  Account(buyer.public, ("anonym",)), Account(DSO.public, ("dso",))),
        contracts=("market",),
        params=Params(credit_limit=10**12, settle_by_both=1, settle_wait_ms=WAIT_MS, settle_interval_ms=1000,
                      seller_vouched=1),
    )  # fmt: skip


def test_an_agreement_the_dso_never_vouched_for_is_paid_when_a_party_repeats_it_after_until(
    tmp_path: Path,
) -> None:
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent_s: list[dict[str, Any]] = []
    sent_b: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        tid = await node.agree(1, seller, buyer)
        s = party_settler(node, seller, {tid: KWH}, sent_s, [])
        b = party_settler(node, buyer, {tid: KWH}, sent_b, [])
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        for _ in range(50):  # both state (the first attempt may wait for a block)
            if query.settlement(node.ledger.state("mgmc"), tid)["state"] == "vouching":  # type: ignore[index]
                break
            await s.retry_due()
            await b.retry_due()
            await asyncio.sleep(0.02)
        where = query.settlement(node.ledger.state("mgmc"), tid)
        assert where is not None and where["state"] == "vouching" and where["settlement"] is None
        held = time.time()
        await settle_within(s, 10)
        await settle_within(b, 10)
        assert not s.book.pending and not b.book.pending
        assert time.time() - held >= WAIT_MS / 1000 - 0.3  # it waited for the DSO's window
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, vouched_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "agreed"
    assert where["settlement"]["amount"] == PRICE * KWH
    # one party's repeat paid; the other read it settled and sent nothing more
    assert sorted([len(sent_s), len(sent_b)]) == [1, 2]

"""The DSO's `ChainAdapter` sees a transaction its chain refuses as refused, with the contract's reason, not as
"not final in 8 s" (the lab's day-ahead run waited 8 s per security iteration for a `market.reopen` the
contract refused): against a real consensus replica (`ChainReplica`, a single authority that finalises its own
blocks, LevelDB store in tmp_path) holding an interval a day-ahead exchange clear closed.

- `precheck`: the state machine on the replica's committed state refuses it; nothing is sent, the nonce stays
  free for the DSO's next transaction.
- without it: the replica's pool evicts it when the block is built, with its reason, and the adapter returns
  that at the next commit instead of waiting out its timeout.
- `DsoLoop.reopen` through the real adapter: a reopening the genesis forbids (`max_reopens` 0) comes back
  refused with the contract's reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from helpers_replica import pump, wall_ms

from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import ChainAdapter
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import sign_tx

from .lone_chain import LoneMgmcChain
from .test_rebargain_reopen import day_ahead_clear

FIRST = 40


class Lab(LoneMgmcChain):
    """A lone authority's MGMC chain (market, exchange) with a seller and a buyer, its blocks made by hand."""

    def __init__(self, tmp_path: Path, max_reopens: int = 3) -> None:
        self.authority, self.dso, self.seller, self.buyer = (Keypair.generate() for _ in range(4))
        accounts = (
            Account(self.dso.public, ("dso",)),
            *(Account(who.public, ("anonym",), balance=10**9) for who in (self.seller, self.buyer)),
        )
        contracts = ("market", "exchange")
        super().__init__(
            tmp_path / "mgmc", self.authority, accounts, contracts, Params(max_reopens=max_reopens)
        )

    def land(self, who: Keypair, kind: str, body: dict[str, Any]) -> None:
        app = self.replica.app
        tx = sign_tx(who, "mgmc", kind, app.next_nonce(who.public), wall_ms(), body)
        height = app.head().height
        self.replica.submit(tx.raw, wall_ms())
        for _ in range(5):
            if app.head().height > height:
                break
            pump(self.replica, self.wire, due_only=False)
        assert app.head().height > height and app.next_nonce(who.public) > tx.nonce, (
            kind,
            app.refusal(tx.txid),
        )

    def closed_intraday(self, t: int) -> None:
        """Interval `t` bargained and closed the ordinary way: an offer, a bid on it, the closing `trade`."""
        self.land(
            self.seller, "offer", {"interval": t, "round": 1, "price": 200, "quantity": 900, "clean": True}
        )
        demands = [{"seller": self.seller.public, "quantity": 500}]
        self.land(self.buyer, "bid", {"interval": t, "round": 1, "demands": demands})
        self.land(self.buyer, "trade", {"interval": t})

    def cleared(self) -> None:
        for who, kind, body in day_ahead_clear(FIRST, self.seller, self.buyer, self.dso):
            self.land(who, kind, body)
        assert market.interval_record(self.replica.app.state, FIRST).get("session") == "day-1"


def reopen_body(interval: int) -> dict[str, Any]:
    return {"interval": interval, "iteration": 1, "ref": b"r" * 32, "until": wall_ms() + 60_000}


def test_a_refused_reopen_is_reported_refused_with_the_contracts_reason(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.cleared()
    app = lab.replica.app
    nonce = app.next_nonce(lab.dso.public)

    async def run() -> tuple[Any, Any]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        checked = await adapter.submit(
            lab.dso, "market.reopen", reopen_body(FIRST), timeout=30.0, precheck=True
        )
        assert app.next_nonce(lab.dso.public) == nonce and not app.mempool.ready()  # nothing sent
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:  # now sent: the pool evicts it at the block it would have gone into
            sent = await adapter.submit(lab.dso, "market.reopen", reopen_body(FIRST), timeout=30.0)
        finally:
            stop.set()
            await pumping
        return checked, sent

    checked, sent = asyncio.run(run())
    for result in (checked, sent):
        assert not result.ok and result.reason == "refused", result  # not "timeout" after 30 s
        assert result.detail.startswith("rule-violation: ") and "forward trades" in result.detail, result
    assert not market.reopening(app.state, FIRST) and market.closed(app.state, FIRST)
    lab.store.close()


def test_a_transaction_that_lands_still_reports_landed(tmp_path: Path) -> None:
    """The precheck passes what the chain takes: an intraday-closed interval is reopened."""
    lab = Lab(tmp_path)
    lab.closed_intraday(7)

    async def run() -> Any:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:
            return await adapter.submit(lab.dso, "market.reopen", reopen_body(7), timeout=30.0, precheck=True)
        finally:
            stop.set()
            await pumping

    result = asyncio.run(run())
    assert result.ok and market.reopening(lab.replica.app.state, 7)["iteration"] == 1  # type: ignore[index]
    lab.store.close()


def test_the_loop_says_why_the_chain_refused_its_reopening(tmp_path: Path) -> None:
    lab = Lab(tmp_path, max_reopens=0)  # a genesis without re-bargaining
    lab.closed_intraday(7)

    async def run() -> Any:
        loop = DsoLoop(SimpleNamespace(rebargain_wait_s=0.05), *[None] * 7, lab.dso, None, None)  # type: ignore[arg-type]
        loop.mgmc = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        return await loop.reopen(7, b"r" * 32)

    outcome = asyncio.run(run())
    assert outcome.iteration is None and outcome.why is not None
    assert outcome.why.startswith("refused: rule-violation: ") and "at most 0" in outcome.why, outcome
    assert lab.replica.app.next_nonce(lab.dso.public) == 1  # never sent: its nonce is still free
    lab.store.close()

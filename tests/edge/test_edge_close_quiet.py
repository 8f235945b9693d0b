"""The edge's closer waits for the chain's quiet-book rule (genesis close_quiet_ms, review13 F1b) instead of being
refused: `earliest_close_ms` is the contract's own `market_close_time.earliest_close`, and `close_interval`
sleeps until it, looks again (a move that landed meanwhile moves it on) and, when its `trade` is refused all
the same because the book moved before it landed, sends it again at the new moment. A real-clock `LocalChain`
stands in for the replica (a block per transaction, stamped with the wall clock)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_fixtures import T0, Keys, make_genesis

from peergrid_edge.chain_closing import close_interval, earliest_close_ms
from peergrid_edge.trader import MarketAgent
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.contracts.market_close_time import moved
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair

INTERVAL, QUIET, T = 60_000, 300, 3
SELLER, BUYER = Keys.p1, Keys.p3


def _genesis(epoch: int) -> Any:
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        Account(SELLER.public, ("anonym",), "seller"),
        Account(BUYER.public, ("anonym",), "buyer", balance=10**9),
    )
    params = Params(
        settle_by_both=1, settle_epoch_ms=epoch, settle_interval_ms=INTERVAL, close_on_clock=1,
        close_quiet_ms=QUIET, max_reopens=1,
    )  # fmt: skip
    return make_genesis(accounts=accounts, params=params)


def test_the_rule_is_the_contracts() -> None:
    c = LocalChain(_genesis(T0), Keys.authority)
    start = T0 + T * INTERVAL
    assert earliest_close_ms(c.view, c.genesis, T) == start + QUIET  # the start counts as a change
    offer = {"interval": T, "round": 1, "price": 100, "quantity": 10, "clean": False}
    assert c.sign_and_submit(SELLER, "offer", offer, time_ms=start + 50).ok
    c.seal(start + 50)
    assert earliest_close_ms(c.view, c.genesis, T) == start + 50 + QUIET
    bid = {"interval": T, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 10}]}
    late = start + INTERVAL - 1  # a move just before the end: the end is the latest
    assert c.sign_and_submit(BUYER, "bid", bid, time_ms=late).ok
    c.seal(late)
    assert earliest_close_ms(c.view, c.genesis, T) == start + INTERVAL


class Ledger:
    """One replica's view of the MGMC chain, on the wall clock; `before_trade` runs once, just before the
    next `trade` is submitted, as a peer's move landing in the block before it would."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.replicas = {"mgmc": SimpleNamespace(app=SimpleNamespace(genesis=chain.genesis))}
        self.before_trade: list[Any] = []
        self.trades: list[tuple[int, bool]] = []  # (block time, landed) of each `trade` submitted

    def state(self, role: str) -> Any:
        return self.chain.state

    def do(self, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
        if kind == "trade" and self.before_trade:
            self.before_trade.pop(0)()
        result = self.chain.sign_and_submit(key, kind, body)
        block, _ = self.chain.seal()
        if kind == "trade":
            self.trades.append((block.header.time, result.ok))
        return result.ok

    async def wait_for(self, role: str, predicate: Any, timeout_s: float) -> bool:
        return bool(predicate(self.chain.state))


def _agent(ledger: Ledger) -> MarketAgent:
    agent = object.__new__(MarketAgent)
    agent.s = SimpleNamespace(phase_timeout_s=0.5)  # type: ignore[assignment]
    agent.d = SimpleNamespace(ledger=ledger)  # type: ignore[assignment]
    agent.anonym = SELLER
    agent.phase = ""

    async def submit(role: str, key: Keypair, kind: str, body: dict[str, Any]) -> bool:
        return ledger.do(key, kind, body)

    agent._submit = submit  # type: ignore[method-assign]
    return agent


def _open_interval() -> tuple[Ledger, int]:
    """Interval T started a second ago; the seller offered and the buyer bid just now."""
    now = int(time.time() * 1000)
    chain = LocalChain(
        _genesis(now - 1_000 - T * INTERVAL), Keys.authority, clock=lambda: int(time.time() * 1000)
    )
    ledger = Ledger(chain)
    assert ledger.do(
        SELLER, "offer", {"interval": T, "round": 1, "price": 100, "quantity": 10, "clean": False}
    )
    bid = {"interval": T, "round": 0, "demands": [{"seller": SELLER.public, "quantity": 10}]}
    assert ledger.do(BUYER, "bid", bid)
    return ledger, chain.tip.time


def _move(ledger: Ledger, round_: int, quantity: int) -> None:
    body = {"interval": T, "round": round_, "demands": [{"seller": SELLER.public, "quantity": quantity}]}
    assert ledger.do(BUYER, "move", body)


def test_the_closer_waits_out_a_move_that_lands_while_it_sleeps() -> None:
    ledger, _ = _open_interval()

    async def run() -> bool:
        async def peer() -> None:
            await asyncio.sleep(QUIET / 2000)
            _move(ledger, 1, 7)

        moving = asyncio.create_task(peer())
        closed = await close_interval(_agent(ledger), T, SELLER.public)
        await moving
        return closed

    assert asyncio.run(run())
    [(when, landed)] = ledger.trades  # one `trade`, never refused
    last = moved(ledger.chain.state, T)
    assert landed and contract.closed(ledger.chain.state, T)
    assert [t["quantity"] for _, t in query.trades(ledger.chain.state, T)] == [7]  # the move counted
    assert last is not None and when >= last + QUIET  # closed once the book stood still after the move


def test_a_trade_refused_because_the_book_moved_is_sent_again_once_quiet() -> None:
    ledger, _ = _open_interval()
    ledger.before_trade.append(lambda: _move(ledger, 1, 4))  # a move lands just before the closer's trade
    assert asyncio.run(close_interval(_agent(ledger), T, SELLER.public))
    (_, first_landed), (second, landed) = ledger.trades
    last = moved(ledger.chain.state, T)
    assert not first_landed and landed and last is not None and second >= last + QUIET  # the new quiet period
    assert [t["quantity"] for _, t in query.trades(ledger.chain.state, T)] == [4]

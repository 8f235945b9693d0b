"""The DSO node reopens an interval on the MGMC chain itself (design step 6, review M1): `DsoLoop.reopen` against
a real market contract on a `LocalChain` standing in for its non-voting MGMC-chain replica.

It sends `market.reopen` under its `dso` key for the next iteration, with a deadline, only once the interval is
closed (bounded wait), and never for an interval a day-ahead exchange clear closed (the contract refuses it;
the MGMCs re-plan with the forward trades kept); it reports the reopening's iteration or None and why (no
MGMC chain, nothing closed, forward-traded, refused with the contract's reason): the verdict then says
`rebargain: false` and the MGMCs keep their trades.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from peergrid_dso.interval_node import REOPEN_WAIT_S, DsoLoop, forward_traded
from peergrid_dso.node_chains import Submitted
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

T = 9
NOW_MS = 10**12


class Follower:
    """The DSO's MGMC-chain replica: its state is the chain's sealed state."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    @property
    def app(self) -> Any:
        return SimpleNamespace(state=self.chain.state)


class Adapter:
    """`ChainAdapter` over a LocalChain: signs, submits, seals one block (final at once)."""

    def __init__(self, local: LocalChain) -> None:
        self.chain, self.local = "mgmc", local  # `chain` names the replica, as in ChainAdapter
        self.sent: list[tuple[bytes, str, dict[str, Any], float]] = []
        self.node = SimpleNamespace(replicas={"mgmc": Follower(local)}, clock=lambda: NOW_MS)
        self.changed = SimpleNamespace(wait=self._wait)
        self.waits = 0

    async def _wait(self, timeout: float) -> None:
        self.waits += 1
        await asyncio.sleep(0.01)

    async def submit(
        self, key: Keypair, kind: str, body: dict[str, Any], timeout: float = 8.0, precheck: bool = False
    ) -> Submitted:
        self.sent.append((key.public, kind, dict(body), timeout))
        result = self.local.sign_and_submit(key, kind, body, NOW_MS)
        if not result.ok:
            return Submitted(False, "refused", f"{result.reason.value}: {result.detail}")  # as ChainAdapter
        self.local.seal(NOW_MS)
        return Submitted(True, txid=result.txid)


def setup(
    max_reopens: int = 3, contracts: tuple[str, ...] = ("market",)
) -> tuple[LocalChain, Adapter, DsoLoop, Keypair, Keypair, Keypair]:
    authority, dso, seller, buyer = (Keypair.generate() for _ in range(4))
    genesis = Genesis(
        chain="mgmc", time=0, authorities=(authority.public,),
        accounts=(Account(dso.public, ("dso",)), Account(seller.public, ("anonym",), balance=10**9),
                  Account(buyer.public, ("anonym",), balance=10**9)),
        contracts=contracts, params=Params(max_reopens=max_reopens),
    )  # fmt: skip
    chain = LocalChain(genesis, authority)
    adapter = Adapter(chain)
    loop = DsoLoop(SimpleNamespace(rebargain_wait_s=0.05), *[None] * 7, dso, None, None)  # type: ignore[arg-type]
    loop.mgmc = adapter  # type: ignore[assignment]
    return chain, adapter, loop, dso, seller, buyer


def trade_in(chain: LocalChain, seller: Keypair, buyer: Keypair) -> None:
    assert chain.sign_and_submit(seller, "offer", {"interval": T, "round": 1, "price": 200, "quantity": 900,
                                                   "clean": True}, NOW_MS).ok  # fmt: skip
    demands = [{"seller": seller.public, "quantity": 500}]
    assert chain.sign_and_submit(buyer, "bid", {"interval": T, "round": 1, "demands": demands}, NOW_MS).ok
    chain.seal(NOW_MS)


def close(chain: LocalChain, who: Keypair) -> None:
    assert chain.sign_and_submit(who, "trade", {"interval": T}, NOW_MS).ok
    chain.seal(NOW_MS)


def test_the_dso_reopens_a_closed_interval_for_each_iteration_with_a_deadline() -> None:
    chain, adapter, loop, dso, seller, buyer = setup()
    trade_in(chain, seller, buyer)
    # still open (the MGMCs are bargaining): a bounded wait, then nothing to reopen, nothing sent
    assert asyncio.run(loop.reopen(T, b"r" * 32)) == (None, "not closed")
    assert adapter.sent == [] and adapter.waits > 0
    close(chain, buyer)
    assert asyncio.run(loop.reopen(T, b"r" * 32)).iteration == 1
    [(sender, kind, body, timeout)] = adapter.sent
    assert (sender, kind) == (dso.public, "market.reopen") and timeout == REOPEN_WAIT_S + 2.0
    assert body == {"interval": T, "iteration": 1, "ref": b"r" * 32, "until": NOW_MS + REOPEN_WAIT_S * 1000}
    record = query.interval(chain.state, T)
    assert record["reopened"]["by"] == dso.public and not record["closed"]
    close(chain, seller)
    assert asyncio.run(loop.reopen(T, b"s" * 32)).iteration == 2  # the next iteration on the chain
    assert contract.reopening(chain.state, T)["ref"] == b"s" * 32  # type: ignore[index]


def test_no_reopening_when_refused_or_without_an_mgmc_chain() -> None:
    chain, _, loop, _, seller, buyer = setup(max_reopens=1)
    trade_in(chain, seller, buyer)
    close(chain, buyer)
    assert asyncio.run(loop.reopen(T, b"r" * 32)).iteration == 1
    close(chain, buyer)
    limited = asyncio.run(loop.reopen(T, b"r" * 32))  # the genesis limit: the MGMCs keep their trades
    assert limited.iteration is None and limited.why is not None and "at most 1" in limited.why
    assert contract.closed(chain.state, T)
    loop.mgmc = None
    assert asyncio.run(loop.reopen(T, b"r" * 32)) == (None, "no MGMC chain")


def day_ahead_clear(
    first: int, seller: Keypair, buyer: Keypair, coordinator: Keypair
) -> list[tuple[Keypair, str, dict[str, Any]]]:
    """The transactions of a two-member exchange session over intervals first, first + 1 whose clear closes
    `first` with one forward trade (900 Wh) and leaves `first + 1` (no trade) untouched: open, positions,
    one step, close, accepts, clear."""
    session, positions = "day-1", {seller: [900, 0], buyer: [-900, 0]}
    steps: list[tuple[Keypair, str, dict[str, Any]]] = [(coordinator, "exchange.open", {
        "session": session, "first_interval": first, "members": [seller.public, buyer.public],
        "prices": [50_000_000, 50_000_000], "rho": 5_000_000})]  # fmt: skip
    for m, q in positions.items():
        steps.append((m, "exchange.position", {"session": session, "iteration": 0, "positions": q}))
    steps.append((coordinator, "exchange.step", {"session": session, "iteration": 0, "rho": 5_000_000}))
    steps.append((coordinator, "exchange.close", {"session": session, "iteration": 1}))
    for m, q in positions.items():
        steps.append((m, "exchange.accept", {"session": session, "positions": q, "clean": False}))
    steps.append((coordinator, "exchange.clear", {"session": session}))
    return steps


def test_an_interval_the_day_ahead_clear_closed_is_not_reopened() -> None:
    """The decision reads the MGMC chain's market record: a cleared interval names its session; the DSO sends
    nothing for it (no 8-s wait for a reopening the contract refuses) and says why; an interval closed by
    intraday bargaining is still reopened."""
    chain, adapter, loop, dso, seller, buyer = setup(contracts=("market", "exchange"))
    for who, kind, body in day_ahead_clear(T + 1, seller, buyer, dso):
        result = chain.sign_and_submit(who, kind, body, NOW_MS)
        assert result.ok, (kind, result)
        chain.seal(NOW_MS)
    assert contract.closed(chain.state, T + 1) and not contract.closed(chain.state, T + 2)
    assert forward_traded(chain.state, T + 1) == "forward-traded by exchange session 'day-1'"
    assert forward_traded(chain.state, T + 2) is None  # no trade: left untouched, nothing closed
    skipped = asyncio.run(loop.reopen(T + 1, b"r" * 32))
    assert skipped == (None, "forward-traded by exchange session 'day-1'") and adapter.sent == []
    # the contract agrees: it would refuse the reopening for that reason
    body = {"interval": T + 1, "iteration": 1, "ref": b"r" * 32, "until": NOW_MS + 60_000}
    refused = chain.sign_and_submit(dso, "market.reopen", body, NOW_MS)
    assert not refused.ok and "forward trades" in str(refused)
    trade_in(chain, seller, buyer)  # the intraday market in another interval of the same chain
    close(chain, buyer)
    assert forward_traded(chain.state, T) is None
    assert asyncio.run(loop.reopen(T, b"r" * 32)).iteration == 1

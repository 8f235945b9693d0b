"""The DSO's `ChainAdapter` pipelines: consecutive nonces of one key in flight together (up to its bound), so
the cover pricer's N tariffs (one per MG) land in a block or two, not one block each (D6: 30 MGs took about
6 s, and every reopening or dispute settle queued behind them). The ledger's pool takes a sender's
transactions in nonce order and never skips a gap (`Mempool.reap`), so a refused nonce k would strand k+1..
until they are too old: the adapter fills k with an `operator_action` naming the refused transaction.

- a refused nonce below two others in flight: it is reported refused with the chain's reason, the gap is
  filled (on chain, naming it), and the two others land (a real single-authority replica, pumped by hand);
- 30 MGs' tariffs over a real Mosquitto (the MGMC chain's authority and the DSO's non-voting follower, as in
  `dso_node.DsoNode`): every one lands, in far fewer blocks than tariffs (one each before);
- the bound: past it, a submit waits for a block instead of signing.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso.node_chains import ChainAdapter, Changed
from peergrid_dso.tariff import CoverPricer, CoverTariff
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.mqtt_transport import MqttTransport
from peergrid_ledger.consensus.node import ChainReplica, Node, wall_ms
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore

from .test_refused_submit import Lab

CHAIN = "mgmc"
DAY = 96


def action(text: str, txs: list[bytes] | None = None) -> dict[str, Any]:
    return {"operator": "olga", "action": text, "txs": txs or []}


def test_a_refused_nonce_does_not_strand_the_ones_after_it(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    app = lab.replica.app
    nonce = app.next_nonce(lab.dso.public)
    twice = [b"t" * 32, b"t" * 32]  # the contract refuses it at any time: a transaction named twice

    async def run() -> tuple[list[Any], ChainAdapter]:
        adapter = ChainAdapter(lab.node, CHAIN, asyncio.get_running_loop(), lab.changed)
        bodies = [action("bad", twice), action("second"), action("third")]
        waiting = [
            asyncio.create_task(adapter.submit(lab.dso, "operator_action", b, timeout=20)) for b in bodies
        ]
        await asyncio.sleep(0.1)  # all three signed and in the pool before any block
        assert len(app.mempool) == 3 and app.next_nonce(lab.dso.public) == nonce
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:
            return list(await asyncio.gather(*waiting)), adapter
        finally:
            stop.set()
            await pumping

    (bad, second, third), adapter = asyncio.run(run())
    assert not bad.ok and bad.reason == "refused" and "named twice" in bad.detail, bad
    assert second.ok and third.ok, (second, third)  # (without the filler: both time out, stranded behind k)
    assert adapter.filled == 1
    assert app.next_nonce(lab.dso.public) == nonce + 3  # the filler took the refused one's nonce
    at = [lab.store.locate_tx(r.txid) for r in (second, third)]
    assert all(a is not None for a in at) and lab.store.locate_tx(bad.txid) is None
    filler = next(
        tx for h in range(1, app.head().height + 1) for tx in lab.store.block(h).txs if tx.nonce == nonce
    )
    assert filler.kind == "operator_action" and filler.body["txs"] == [bad.txid]  # the record names it
    lab.store.close()


def test_past_its_bound_a_submit_waits_for_a_block(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    app = lab.replica.app

    async def run() -> list[Any]:
        adapter = ChainAdapter(lab.node, CHAIN, asyncio.get_running_loop(), lab.changed, max_in_flight=2)
        waiting = [
            asyncio.create_task(adapter.submit(lab.dso, "operator_action", action(f"n{i}"), timeout=20))
            for i in range(3)
        ]
        await asyncio.sleep(0.3)
        assert len(app.mempool) == 2  # the third waits: nothing signed past the bound
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:
            return list(await asyncio.gather(*waiting))
        finally:
            stop.set()
            await pumping

    results = asyncio.run(run())
    assert all(r.ok for r in results), results
    lab.store.close()


class Feeder:
    """The MGMC chain's one authority and the DSO's follower over a real broker, and `mgs` enrolled anonyms."""

    def __init__(self, tmp_path: Path, broker: Any, mgs: int, period_ms: int = 200) -> None:
        self.authority, self.dso = Keypair.generate(), Keypair.generate()
        self.anonyms = {f"mg{i + 1}": Keypair.generate() for i in range(mgs)}
        genesis = Genesis(
            chain=CHAIN, time=wall_ms() - 1000, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, ("dso",)),
                      *(Account(k.public, ("anonym",)) for k in self.anonyms.values())),
            contracts=("market",), params=Params(settle_by_both=1, settle_interval_ms=6_000, settle_epoch_ms=0),
        )  # fmt: skip
        self.parts: dict[str, tuple[Node, MqttTransport, BlockStore]] = {}
        for name, key in (("authority", self.authority), ("dso", self.dso)):
            node = Node(key)
            transport = MqttTransport(broker.host, broker.port, "lab", key.public, [CHAIN], node.deliver,
                                      client_id=f"{name}-{tmp_path.name}")  # fmt: skip
            store = BlockStore.create(tmp_path / name, genesis)
            config = EngineConfig(block_period_ms=period_ms)
            node.replicas[CHAIN] = ChainReplica(store, key, config, transport, node.schedule_for(CHAIN))
            self.parts[name] = (node, transport, store)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = Changed()
        self.follower.on_commit.append(self.changed.fire)

    @property
    def follower(self) -> ChainReplica:
        return self.parts["dso"][0].replicas[CHAIN]

    async def up(self) -> None:
        for node, transport, _ in self.parts.values():
            node.attach_loop()
            transport.start()
            assert await asyncio.to_thread(transport.connected.wait, 20)
            self.tasks.append(asyncio.create_task(node.run(self.stop)))
        await asyncio.sleep(0.5)

    async def down(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 20)
        for _node, transport, store in self.parts.values():
            transport.stop()
            store.close()

    def pricer(self, adapter: Any, first: int = 36) -> CoverPricer:
        retail = tuple(140 + k for k in range(DAY))
        tariff = CoverTariff(15.0, {mg: (retail, (50,) * DAY) for mg in self.anonyms})
        accounts = {mg: k.public for mg, k in self.anonyms.items()}
        return CoverPricer(tariff, accounts, adapter, self.dso, first, first + 3)


async def price_all(feeder: Feeder, adapter_class: Any = ChainAdapter) -> tuple[int, int, float]:
    """One pricing pass of every MG: (landed, blocks it spanned on the follower, seconds)."""
    node = feeder.parts["dso"][0]
    adapter = adapter_class(node, CHAIN, asyncio.get_running_loop(), feeder.changed)
    pricer = feeder.pricer(adapter)
    height, started = feeder.follower.app.head().height, time.monotonic()
    landed = await pricer.price(None)
    return landed, feeder.follower.app.head().height - height, time.monotonic() - started


def test_thirty_tariffs_land_in_far_fewer_blocks_than_tariffs(tmp_path: Path, mosquitto: Any) -> None:
    async def run() -> tuple[int, int, float, Feeder]:
        feeder = Feeder(tmp_path, mosquitto, 30)
        await feeder.up()
        try:
            return (*await price_all(feeder), feeder)
        finally:
            await feeder.down()

    landed, blocks, _took, feeder = asyncio.run(run())
    assert landed == 30
    assert blocks < 15, blocks  # one block each before (30); here the first alone, then the rest together
    store = BlockStore.open(tmp_path / "dso")
    state = store.load_state()
    for key in feeder.anonyms.values():
        assert [market.tariff(state, key.public, t) for t in (36, 37, 38)] == [
            (176, 50),
            (177, 50),
            (178, 50),
        ]
    store.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(refused=st.lists(st.booleans(), min_size=1, max_size=8))
def test_any_pattern_of_refusals_in_a_burst_strands_nothing(tmp_path: Path, refused: list[bool]) -> None:
    """A burst of operator actions, each refused or not by the contract, all in the pool before the first
    block: each good one lands exactly once and in order, each bad one is reported refused, the key's nonces
    on chain have no gap, and every other transaction of the key there is a filler naming the refused one
    whose nonce it took (one may fill below a later one that is refused in turn: it was in flight then)."""
    lab = Lab(Path(tempfile.mkdtemp(dir=tmp_path)))
    app = lab.replica.app
    nonce = app.next_nonce(lab.dso.public)
    bodies = [action(f"n{i}", [b"t" * 32] * 2 if bad else None) for i, bad in enumerate(refused)]

    async def run() -> tuple[list[Any], ChainAdapter]:
        adapter = ChainAdapter(lab.node, CHAIN, asyncio.get_running_loop(), lab.changed)
        waiting = [
            asyncio.create_task(adapter.submit(lab.dso, "operator_action", b, timeout=30)) for b in bodies
        ]
        await asyncio.sleep(0.05)
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:
            return list(await asyncio.gather(*waiting)), adapter
        finally:
            stop.set()
            await pumping

    results, adapter = asyncio.run(run())
    try:
        for bad, result in zip(refused, results, strict=True):
            assert result.ok is not bad, (refused, result)
            assert (lab.store.locate_tx(result.txid) is None) is bad
        good = [i for i, bad in enumerate(refused) if not bad]
        landed = [tx for h in range(1, app.head().height + 1) for tx in lab.store.block(h).txs]
        ours = [tx for tx in landed if tx.sender == lab.dso.public]
        assert [tx.nonce for tx in ours] == list(range(nonce, app.next_nonce(lab.dso.public)))  # no gap
        actions = [tx.body["action"] for tx in ours if tx.body["operator"] == "olga"]
        assert actions == [f"n{i}" for i in good]  # each good one once, in the order they were asked
        fillers = [tx for tx in ours if tx.body["operator"] == "dso-node"]
        assert len(fillers) + len(good) == len(ours) and len(fillers) == adapter.filled
        assert all(f.body["txs"] == [results[f.nonce - nonce].txid] for f in fillers)  # each names its own
        if good:  # below the last good one every refused nonce was filled
            assert len(fillers) >= sum(refused[: good[-1]])
    finally:
        lab.store.close()

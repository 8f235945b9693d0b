"""The engine over the real ledger (blocks, state machine, LevelDB): stores verify, evidence lands on chain."""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path

from peergrid_ledger import keys
from peergrid_ledger.consensus.actions import Broadcast, Committed, EvidenceFound, Send, SetTimer
from peergrid_ledger.consensus.engine import Engine, EngineConfig
from peergrid_ledger.consensus.ledger_app import LedgerApp
from peergrid_ledger.consensus.messages import PREPARE, Evidence, sign_vote
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx
from peergrid_ledger.verify import verify_store

CHAIN = "ledger-consensus"
T0 = 1_767_225_600_000
CONFIG = EngineConfig(block_period_ms=100, round_timeout_ms=1000, max_future_drift_ms=5000)


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(name.encode()).digest())


AUTHORITIES = [key(f"authority-{i}") for i in range(4)]
MG = key("mg1")
DSO = key("dso")
NEWCOMER = key("authority-new")


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(Account(MG.public, ("anonym",), "anonym-1"), Account(DSO.public, ("dso",), "dso")),
    )


class Net:
    def __init__(self, root: Path) -> None:
        self.now = T0
        self.stores = [BlockStore.create(root / f"n{i}", genesis()) for i in range(4)]
        self.apps = [LedgerApp(s, k) for s, k in zip(self.stores, AUTHORITIES, strict=True)]
        self.engines = [
            Engine(a, CONFIG, k, keys.verify) for a, k in zip(self.apps, AUTHORITIES, strict=True)
        ]
        self.queue: deque[tuple[int, int, bytes]] = deque()
        self.timers: list[tuple[int, int, object]] = []
        self.evidence: list[Evidence] = []
        self.committed: list[Committed] = []
        for i, engine in enumerate(self.engines):
            self.do(i, engine.start(self.now))

    def do(self, i: int, actions: list) -> None:
        for a in actions:
            if isinstance(a, Broadcast):
                self.queue.extend((i, j, a.data) for j in range(4) if j != i)
            elif isinstance(a, Send):
                self.queue.append((i, [k.public for k in AUTHORITIES].index(a.to), a.data))
            elif isinstance(a, SetTimer):
                self.timers.append((a.at_ms, i, a.timer))
            elif isinstance(a, EvidenceFound):
                self.evidence.append(a.evidence)
            elif isinstance(a, Committed) and i == 0:
                self.committed.append(a)

    def run(self, ms: int) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += 10
            due = sorted((t for t in self.timers if t[0] <= self.now), key=lambda t: (t[0], t[1]))
            self.timers = [t for t in self.timers if t[0] > self.now]
            for _, i, timer in due:
                self.do(i, self.engines[i].on_timer(timer, self.now))  # type: ignore[arg-type]
            while self.queue:
                i, j, data = self.queue.popleft()
                self.do(j, self.engines[j].on_message(data, self.now, AUTHORITIES[i].public))

    def submit(self, raw: bytes) -> None:
        for app in self.apps:
            app.mempool.add(raw, self.now)


def test_authorities_finalise_ledger_blocks_that_verify(tmp_path: Path) -> None:
    net = Net(tmp_path)
    for nonce in range(1, 31):
        body = {"interval": nonce, "root": hashlib.sha256(b"%d" % nonce).digest(), "readings": 96}
        net.submit(sign_tx(MG, CHAIN, "der_commitment", nonce, net.now, body).raw)
    bad = sign_tx(
        key("stranger"),
        CHAIN,
        "der_commitment",
        1,
        net.now,
        {"interval": 1, "root": bytes(32), "readings": 1},
    )
    assert net.apps[0].mempool.add(bad.raw, net.now).reason == "unknown sender"  # type: ignore[union-attr]
    net.run(1500)
    heads = {app.tip.hash for app in net.apps}
    assert len(heads) == 1 and net.apps[0].tip.height >= 5
    assert sum(len(c.block) for c in net.committed) > 0
    assert net.apps[0].next_nonce(MG.public) == 31  # all 30 landed, in nonce order
    for store in net.stores:
        report = verify_store(store)
        assert report.ok, report.summary()


def test_equivocation_evidence_is_accepted_by_the_state_machine(tmp_path: Path) -> None:
    net = Net(tmp_path)
    liar = AUTHORITIES[3]
    a = sign_vote(CHAIN, liar.sign, liar.public, PREPARE, 1, 0, b"\x01" * 32)
    b = sign_vote(CHAIN, liar.sign, liar.public, PREPARE, 1, 0, b"\x02" * 32)
    body = net.apps[0].evidence_body(Evidence(a, b))
    reporter = AUTHORITIES[0]
    tx = sign_tx(reporter, CHAIN, "evidence", 1, net.now, body)
    net.submit(tx.raw)
    net.run(600)
    assert net.stores[0].locate_tx(tx.txid) is not None
    assert verify_store(net.stores[1]).ok


def test_governance_changes_the_authority_set_from_a_defined_height(tmp_path: Path) -> None:
    net = Net(tmp_path)
    tx = sign_tx(DSO, CHAIN, "gov.add_authority", 1, net.now, {"key": NEWCOMER.public})
    net.submit(tx.raw)
    net.run(1500)  # the newcomer runs no replica: 4 of 5 are still a quorum (4)
    where = net.stores[0].locate_tx(tx.txid)
    assert where is not None
    effective = where[0] + net.apps[0].genesis.params.authority_change_delay
    assert NEWCOMER.public not in net.apps[0].validators(effective - 1)
    assert NEWCOMER.public in net.apps[0].validators(effective)
    assert net.apps[0].tip.height > effective
    later = [c for c in net.committed if c.height >= effective]
    assert later and all(len(c.certificate.seals) >= 4 for c in later)
    for store in net.stores:
        assert verify_store(store).ok

"""Deterministic simulation of a consensus network, with the invariants checked on every run.

Promises: `run_seed(seed)` derives a whole scenario from the seed — 4–7 authorities, observers, link delay,
loss, duplication and reordering, partitions that heal, crashes and restarts with stores kept, Byzantine
authorities (at most f), governance changes of the authority set, client transactions (some invalid) — runs a
chaos phase then a calm phase, and reports violations of: safety (two different final blocks at one height
on any honest replica), validity (an honest store that does not re-verify from genesis) and liveness (the
honest replicas fail to grow the chain during the calm phase). The same seed always replays the same run:
`python -m peergrid_ledger.consensus.simulation --seed N`. Most seeds use a cheap keyed-hash signature
stand-in; every 25th seed uses real Ed25519. A seed's scenario is drawn in `sim_scenario` (`Scenario`,
`scenario_for`, re-exported here as importers knew them); this module runs it and checks it.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from functools import partial

from .. import codec, keys
from .actions import Action, Broadcast, Committed, EvidenceFound, Send, SetTimer, Timer
from .app import Accepted, MemoryWal, Signer, VerifyFn
from .byzantine import Byzantine
from .engine import Engine
from .messages import MessageError, WireMessage, decode_wire
from .sigcache import SignatureCache
from .sim_app import (
    EVIDENCE,
    GOV,
    PAY,
    SimApp,
    SimGenesis,
    SimKeys,
    SimMemo,
    SimStore,
    make_tx,
)
from .sim_scenario import Scenario, scenario_for
from .simnet import CONSENSUS, TX, LinkModel, SimNetwork
from .simulation_checks import verify_chains

CHAIN = "sim-chain"


class _Ed25519Keys:
    def key(self, name: str) -> keys.Keypair:
        import hashlib

        return keys.Keypair.from_seed(hashlib.sha256(name.encode()).digest())

    verify = staticmethod(keys.verify)


@dataclass
class Report:
    seed: int
    scenario: str
    heights: dict[str, int]
    violations: list[str] = field(default_factory=list)
    evidence_on_chain: int = 0
    delivered: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay(self, profile: str = "test") -> str:
        extra = "" if profile == "test" else f" --profile {profile}"
        return f".venv/bin/python -m peergrid_ledger.consensus.simulation --seed {self.seed}{extra}"


class SimNode:
    def __init__(self, sim: Simulation, name: str, key: Signer, byzantine: str | None) -> None:
        self.sim, self.name, self.key = sim, name, key
        self.store, self.wal = SimStore(), MemoryWal()
        self.incarnation = 0
        self.nonce = 0
        self.byzantine = None
        if byzantine is not None:
            self.byzantine = Byzantine(
                byzantine,
                key,  # type: ignore[arg-type]
                lambda: self.app,
                lambda: [n for n in sim.nodes if n != name],
                lambda peer, data: sim.net.send(name, peer, CONSENSUS, data),
                random.Random(sim.rng.random()),
            )
        self.boot()

    def boot(self) -> None:
        self.incarnation += 1
        sim = self.sim
        self.app = SimApp(sim.genesis, self.store, self.key, sim.checked, memo=sim.memo)
        if self.name in sim.stale:
            frozen = sim.genesis.validators
            self.app.validators = lambda height: frozen  # type: ignore[method-assign]
        self.engine = Engine(self.app, sim.scenario.config, self.key, sim.checked, self.wal)
        self.perform(self.engine.start(sim.net.now))

    def receive(self, source: str, channel: str, data: bytes) -> None:
        now = self.sim.net.now
        if channel == TX:
            if isinstance(self.app.mempool.add(data, now), Accepted):
                self.perform(self.engine.on_pending(now))
            return
        message = self.sim.decode(data)
        sender = self.sim.nodes[source].key.public
        if isinstance(message, MessageError):
            self.perform(self.engine.on_message(data, now, sender))  # counts the drop
        else:
            self.perform(self.engine.on_decoded(message, now, sender))

    def perform(self, actions: list[Action]) -> None:
        net = self.sim.net
        for action in actions:
            if isinstance(action, Broadcast):
                if self.byzantine is not None:
                    self.byzantine.broadcast(action.data)
                else:
                    net.broadcast(self.name, CONSENSUS, action.data)
            elif isinstance(action, Send):
                peer = self.sim.by_key.get(action.to)
                if peer is not None:
                    net.send(self.name, peer, CONSENSUS, action.data)
            elif isinstance(action, SetTimer):
                incarnation = self.incarnation
                net.at(action.at_ms, partial(self._fire, incarnation, action.timer))
            elif isinstance(action, Committed):
                self.sim.on_commit(self, action)
            elif isinstance(action, EvidenceFound):
                self.nonce = max(self.nonce, self.app.mempool.next_nonce(self.key.public))
                self.submit(make_tx(CHAIN, self.key, EVIDENCE, self.nonce, action.evidence.encode()))
                self.nonce += 1

    def submit(self, tx: bytes) -> None:
        if isinstance(self.app.mempool.add(tx, self.sim.net.now), Accepted):
            self.perform(self.engine.on_pending(self.sim.net.now))
        self.sim.net.broadcast(self.name, TX, tx)

    def _fire(self, incarnation: int, timer: Timer) -> None:
        if incarnation == self.incarnation and self.sim.net.up[self.name]:
            self.perform(self.engine.on_timer(timer, self.sim.net.now))

    def crash(self) -> None:
        self.sim.net.up[self.name] = False
        self.incarnation += 1

    def restart(self) -> None:
        self.sim.net.up[self.name] = True
        self.boot()


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed ^ 0x5EED)
        self.net = SimNetwork(random.Random(scenario.seed))
        keyring: SimKeys | _Ed25519Keys = _Ed25519Keys() if scenario.real_crypto else SimKeys()
        self.verify: VerifyFn = keyring.verify
        self.checked = SignatureCache(self.verify)
        """One signature cache for every replica, engine and the validity check (an engine would keep its
        own, `sigcache.cached`): it answers as `verify` does and remembers successes only, so sharing it
        changes no answer, only how often one signature is checked again."""
        total = scenario.authorities + scenario.observers + 1
        names = [f"node{i}" for i in range(total)]
        node_keys = [keyring.key(f"{scenario.seed}/{name}") for name in names]
        self.admin = keyring.key(f"{scenario.seed}/admin")
        self.clients = [keyring.key(f"{scenario.seed}/client{i}") for i in range(3)]
        self.genesis = SimGenesis(
            CHAIN,
            tuple(k.public for k in node_keys[: scenario.authorities]),
            self.admin.public,
            tuple([k.public for k in node_keys] + [c.public for c in self.clients]),
        )
        self.decided: dict[int, bytes] = {}
        self._decoded: dict[bytes, WireMessage | MessageError] = {}
        self.memo = SimMemo()  # the replicas' parses of txs and blocks, computed once for all of them
        self.violations: list[str] = []
        self.nodes: dict[str, SimNode] = {}
        self.stale = {names[i] for i in scenario.stale}
        self.by_key = {k.public: name for name, k in zip(names, node_keys, strict=True)}
        for name in names:
            self.net.attach(name, partial(self._receive, name))
        for i, (name, key) in enumerate(zip(names, node_keys, strict=True)):
            self.nodes[name] = SimNode(self, name, key, scenario.byzantine.get(i))
        self.honest = [
            name for i, name in enumerate(names) if i not in scenario.byzantine and i not in scenario.stale
        ]

    def _receive(self, name: str, source: str, channel: str, data: bytes) -> None:
        self.nodes[name].receive(source, channel, data)

    def decode(self, data: bytes) -> WireMessage | MessageError:
        """Decoded messages shared by every replica (they are immutable), to keep each seed cheap."""
        known = self._decoded.get(data)
        if known is None:
            try:
                known = decode_wire(CHAIN, data)
            except MessageError as exc:
                known = exc
            if len(self._decoded) > 2048:
                self._decoded.clear()
            self._decoded[data] = known
        return known

    def on_commit(self, node: SimNode, committed: Committed) -> None:
        if node.byzantine is not None or node.name in self.stale:
            return
        known = self.decided.setdefault(committed.height, committed.block_hash)
        if known != committed.block_hash:
            self.violations.append(
                f"safety: {node.name} finalised {committed.block_hash.hex()[:12]} at height {committed.height}, "
                f"another replica finalised {known.hex()[:12]}"
            )

    def _schedule(self) -> None:
        sc, net = self.scenario, self.net
        names = list(self.nodes)
        net.link = sc.chaos_link
        for start, end, groups in sc.partitions:
            net.at(start, partial(net.partition, [[names[i] for i in group] for group in groups]))
            net.at(end, net.heal)
        for index, down, up in sc.crashes:
            net.at(down, self.nodes[names[index]].crash)
            net.at(up, self.nodes[names[index]].restart)
        nonces = {GOV: 0}
        for at, op, index in sc.governance:
            key = self.nodes[names[index]].key.public
            net.at(
                at, partial(self._submit_anywhere, make_tx(CHAIN, self.admin, GOV, nonces[GOV], [op, key]))
            )
            nonces[GOV] += 1
        for c, client in enumerate(self.clients):
            nonce, t = 0, self.rng.randrange(100, 400)
            while t < sc.chaos_ms + sc.calm_ms:
                if self.rng.random() < 0.1:  # an invalid one: bad signature or replayed nonce
                    bad = make_tx(CHAIN, client, PAY, max(0, nonce - 1), b"replay")
                    net.at(t, partial(self._submit_anywhere, bad))
                tx = make_tx(CHAIN, client, PAY, nonce, b"c%d" % c)
                net.at(t, partial(self._submit_anywhere, tx))
                nonce += 1
                t += self.rng.randrange(150, 600)
        net.at(sc.chaos_ms, self._calm)

    def _submit_anywhere(self, tx: bytes) -> None:
        up = [n for n in self.honest if self.net.up[n]]
        if up:
            self.nodes[self.rng.choice(up)].submit(tx)

    def _calm(self) -> None:
        self.net.heal()
        self.net.link = LinkModel(1, 50, 0.0, self.scenario.chaos_link.duplicate)
        for name in self.honest:
            if not self.net.up[name]:
                self.nodes[name].restart()
        self.calm_start_height = max(self.nodes[n].app.head().height for n in self.honest)

    def run(self) -> Report:
        sc = self.scenario
        self._schedule()
        self.net.run_until(sc.chaos_ms + sc.calm_ms)
        heights = {name: node.app.head().height for name, node in self.nodes.items()}
        report = Report(sc.seed, sc.describe(), heights, self.violations, delivered=self.net.delivered)
        problems = verify_chains(self.genesis, [self.nodes[n].store for n in self.honest], self.checked)
        for name, problem in zip(self.honest, problems, strict=True):
            if problem is not None:
                report.violations.append(f"validity: {name}: {problem}")
            if heights[name] < self.calm_start_height + sc.min_growth:
                report.violations.append(
                    f"liveness: {name} at height {heights[name]}, honest max was {self.calm_start_height} when calm began"
                )
        first = self.nodes[self.honest[0]].store.blocks
        report.evidence_on_chain = sum(
            1 for block in first for tx in codec.decode(block)["txs"] if codec.decode(tx)[0] == EVIDENCE
        )
        return report


def run_seed(seed: int, profile: str = "test") -> Report:
    return Simulation(scenario_for(seed, profile)).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m peergrid_ledger.consensus.simulation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", help="a range A:B of seeds")
    parser.add_argument("--profile", choices=["test", "soak"], default="test")
    args = parser.parse_args(argv)
    if args.seed is not None:
        seeds = range(args.seed, args.seed + 1)
    elif args.seeds:
        a, b = (int(x) for x in args.seeds.split(":"))
        seeds = range(a, b)
    else:
        parser.error("give --seed N or --seeds A:B")
    failed = 0
    for seed in seeds:
        report = run_seed(seed, args.profile)
        status = "ok" if report.ok else "FAIL"
        print(f"seed {seed}: {status} heights={sorted(set(report.heights.values()))} {report.scenario}")
        for violation in report.violations:
            print(f"  {violation}")
        if not report.ok:
            failed += 1
            print(f"  replay: {report.replay(args.profile)}")
    return 1 if failed else 0


__all__ = [  # Scenario and scenario_for moved to sim_scenario; importers of simulation still find them
    "CHAIN",
    "Report",
    "Scenario",
    "SimNode",
    "Simulation",
    "main",
    "run_seed",
    "scenario_for",
]


if __name__ == "__main__":
    sys.exit(main())

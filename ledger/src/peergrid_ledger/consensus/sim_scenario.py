"""The scenario of one seed of the consensus simulation (`simulation.Simulation` runs it).

Promises: `scenario_for(seed, profile)` derives, from the seed alone, a whole hostile network - 4-7 authorities,
observers, link delay, loss and duplication, partitions that heal, crashes and restarts, Byzantine authorities
(at most f), governance changes of the authority set - and the engine's timing (`EngineConfig`); the same seed
always gives the same `Scenario`. "test" keeps a seed short; "soak" draws longer chaos and calm phases.
Pure; no I/O.
`simulation` re-exports both names, as its importers knew them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .byzantine import BEHAVIOURS
from .engine import EngineConfig
from .messages import max_faulty
from .simnet import LinkModel


@dataclass
class Scenario:
    seed: int
    authorities: int
    observers: int
    byzantine: dict[int, str]
    chaos_link: LinkModel
    partitions: list[tuple[int, int, list[list[int]]]]  # (from ms, to ms, groups of node indexes)
    crashes: list[tuple[int, int, int]]  # (node index, crash at ms, restart at ms)
    governance: list[tuple[int, str, int]]  # (at ms, "add"|"remove", node index)
    real_crypto: bool
    chaos_ms: int
    calm_ms: int
    config: EngineConfig
    min_growth: int = 3
    stale: set[int] = field(default_factory=set)
    """Nodes that ignore governance and keep voting with the genesis authority set (a revoked authority
    that carries on): not honest, so excluded from the invariants; never drawn by `scenario_for`."""

    def describe(self) -> str:
        return (
            f"n={self.authorities} observers={self.observers} byzantine={self.byzantine} "
            f"loss={self.chaos_link.loss} dup={self.chaos_link.duplicate} delay<={self.chaos_link.max_delay_ms}ms "
            f"partitions={len(self.partitions)} crashes={len(self.crashes)} governance={self.governance} "
            f"ed25519={self.real_crypto}"
        )


def scenario_for(seed: int, profile: str = "test") -> Scenario:
    rng = random.Random(seed)
    n = rng.choice([4, 4, 4, 5, 6, 7])
    f = max_faulty(n)
    observers = rng.choice([0, 1, 1])
    total = n + observers + 1  # the last node is a spare that governance may add
    chaos_ms = 6_000 if profile == "test" else rng.choice([10_000, 30_000, 60_000])
    calm_ms = 14_000 if profile == "test" else 30_000
    byzantine: dict[int, str] = {}
    for index in rng.sample(range(n), rng.randint(0, f)):
        byzantine[index] = rng.choice(BEHAVIOURS)
    honest = [i for i in range(total) if i not in byzantine]
    link = LinkModel(
        min_delay_ms=rng.choice([1, 5, 20]),
        max_delay_ms=rng.choice([20, 60, 200, 600]),
        loss=rng.choice([0.0, 0.0, 0.02, 0.1, 0.3]),
        duplicate=rng.choice([0.0, 0.05, 0.2]),
    )
    partitions = []
    if rng.random() < 0.5:
        start = rng.randrange(0, chaos_ms // 2)
        cut = rng.sample(range(total), total)
        split = rng.randint(1, total - 1)
        partitions.append(
            (start, rng.randrange(start + 500, chaos_ms), [sorted(cut[:split]), sorted(cut[split:])])
        )
    crashes = []
    if rng.random() < 0.5:
        for index in rng.sample(honest, rng.randint(1, min(2, len(honest)))):
            down = rng.randrange(0, chaos_ms - 1000)
            crashes.append((index, down, rng.randrange(down + 200, chaos_ms)))
    governance = []
    if rng.random() < 0.25:
        if len(byzantine) <= max_faulty(n + 1):
            governance.append((rng.randrange(500, chaos_ms), "add", total - 1))
        elif n > 4 and len(byzantine) <= max_faulty(n - 1):
            victim = rng.choice([i for i in range(n) if i not in byzantine])
            governance.append((rng.randrange(500, chaos_ms), "remove", victim))
    config = EngineConfig(
        block_period_ms=500,
        round_timeout_ms=1000,
        max_backoff_exponent=3,
        max_future_drift_ms=2000,
        sync_batch=16,
        heartbeat_ms=0 if seed % 2 else 1500,  # odd seeds: a block every period; even: idle heartbeats
    )
    return Scenario(
        seed,
        n,
        observers,
        byzantine,
        link,
        partitions,
        crashes,
        governance,
        seed % 25 == 0,
        chaos_ms,
        calm_ms,
        config,
    )

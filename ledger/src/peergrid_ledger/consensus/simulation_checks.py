"""The simulation's validity check over every honest store at once, answering as `verify_chain` on each.

Promises: `verify_chains(genesis, stores, verify)[i] == verify_chain(genesis, stores[i], verify)` for every i
(the same first failure, word for word, or None). Why it can share work: at height k `verify_chain` reads
blocks 1..k and certificate k only, and the authorities it checks certificate k against come from blocks
1..k-1. Honest replicas hold one chain (that is safety), some a prefix of it, each with its own certificates
(the commit seals each one collected). So the blocks of a chain are re-executed once, and each store's
certificates are checked against that run's authorities. Must never take a replica's word for anything:
the check builds its own replica and keeps its own memo.
"""

from __future__ import annotations

from collections.abc import Sequence

from .app import Rejected, VerifyFn
from .messages import Certificate, verify_certificate
from .sim_app import SimApp, SimGenesis, SimMemo, SimStore

_UNUSED = Certificate(0, ())
"""What the check's own replica keeps beside each block: nothing reads it (the state depends on blocks only)."""


class _BlockRun:
    """One chain's blocks re-executed from genesis: each height's block hash and authorities, and the first
    height whose block does not verify (what `verify_chain` would say there), if any."""

    def __init__(self, genesis: SimGenesis, blocks: list[bytes], verify: VerifyFn, memo: SimMemo) -> None:
        self.blocks = blocks
        self.hashes: list[bytes] = []
        self.authorities: list[Sequence[bytes]] = []
        self.failure: tuple[int, str] | None = None
        replica = SimApp(genesis, SimStore(), None, verify, memo=memo)
        for height, block in enumerate(blocks, start=1):
            info = replica.inspect(block)
            if isinstance(info, Rejected):
                self.failure = (height, f"height {height}: {info.reason}")
                return
            verdict = replica.validate(block)
            if isinstance(verdict, Rejected):
                self.failure = (height, f"height {height}: {verdict.reason}")
                return
            self.hashes.append(info.block_hash)
            self.authorities.append(replica.validators(height))
            replica.commit(block, _UNUSED)

    def covers(self, blocks: list[bytes]) -> bool:
        return self.blocks[: len(blocks)] == blocks


def verify_chains(genesis: SimGenesis, stores: Sequence[SimStore], verify: VerifyFn) -> list[str | None]:
    memo = SimMemo()
    runs: list[_BlockRun] = []
    answers: list[str | None] = [None] * len(stores)
    for i in sorted(range(len(stores)), key=lambda i: -len(stores[i].blocks)):  # longest first: most reuse
        store = stores[i]
        run = next((r for r in runs if r.covers(store.blocks)), None)
        if run is None:
            run = _BlockRun(genesis, store.blocks, verify, memo)
            runs.append(run)
        answers[i] = _first_failure(genesis.chain_id, run, store, verify)
    return answers


def _first_failure(chain_id: str, run: _BlockRun, store: SimStore, verify: VerifyFn) -> str | None:
    for height, certificate in enumerate(store.certificates[: len(store.blocks)], start=1):
        if run.failure is not None and run.failure[0] == height:
            return run.failure[1]
        index = height - 1
        if not verify_certificate(
            chain_id, height, run.hashes[index], certificate, run.authorities[index], verify
        ):
            return f"height {height}: commit certificate does not verify"
    if len(store.certificates) != len(store.blocks):  # as verify_chain's zip(strict=True)
        raise ValueError("a store holds a different number of blocks and certificates")
    return None

"""What the DSO writes to the DSO chain: switching plans and results, adjustment contracts, enrolment.

Promises: `ChainRecorder` turns domain records into the ledger's transaction kinds (`switching_plan`, one
`switching_step` per executed relay operation, `switching_result`, `adjustment_contract`, `enrol`,
`authorise`) signed by the DSO key and submitted to the injected chain (anything with
`sign_and_submit(keypair, kind, body)`, e.g. `peergrid_ledger.chain.LocalChain`).
A rejection by the chain raises `ChainRejected` with the ledger's reason: a DSO record that does not land is
an operator-visible failure, not a silent one. Adjustment contracts are sealed boxes to the addressee's key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from peergrid_dso.services.switching import StepRecord, SwitchingPlan
from peergrid_ledger.keys import Keypair, seal


class ChainRejected(RuntimeError):
    pass


class Chain(Protocol):
    def sign_and_submit(self, keypair: Keypair, kind: str, body: dict[str, Any]) -> Any: ...


def switch_name(branch: int) -> str:
    return f"s{branch}"


@dataclass
class ChainRecorder:
    chain: Chain
    dso: Keypair
    submitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def submit(self, kind: str, body: dict[str, Any]) -> Any:
        result = self.chain.sign_and_submit(self.dso, kind, body)
        if not getattr(result, "ok", False):
            raise ChainRejected(
                f"{kind} rejected: {getattr(result, 'reason', '?')} {getattr(result, 'detail', '')}"
            )
        self.submitted.append((kind, body))
        return result

    # --- switching (RecorderProtocol of the executor) ---
    def plan(self, plan: SwitchingPlan) -> None:
        actions = [{"switch": switch_name(op.branch), "close": op.close} for op in plan.operations]
        self.submit("switching_plan", {"plan": plan.plan_id, "interval": plan.interval, "actions": actions})

    def step(self, plan: SwitchingPlan, index: int, step: StepRecord) -> None:
        self.submit(
            "switching_step",
            {
                "plan": plan.plan_id, "step": index, "switch": switch_name(step.branch), "close": step.close,
                "ok": step.ok, "rollback": step.rollback, "status": step.status,
                "at_ms": max(0, round(step.at * 1000)), "detail": step.detail[:256],
            },
        )  # fmt: skip

    def result(self, plan: SwitchingPlan, steps: list[StepRecord]) -> None:
        # The ledger keeps one result per switch: its last read-back state and whether all its steps succeeded.
        final: dict[int, dict[str, Any]] = {}
        for op in plan.operations:
            final[op.branch] = {
                "switch": switch_name(op.branch),
                "closed": op.branch not in plan.from_open,
                "ok": False,
            }
        for s in steps:
            entry = final[s.branch]
            if s.ok:
                entry["closed"] = s.close
            entry["ok"] = s.ok and (entry["ok"] or not s.rollback)
        self.submit("switching_result", {"plan": plan.plan_id, "results": list(final.values())})

    # --- adjustment contracts ---
    def adjustment(self, to: bytes, interval: int, contract: dict[str, Any]) -> bytes:
        ciphertext = seal(to, json.dumps(contract, sort_keys=True).encode())
        self.submit("adjustment_contract", {"interval": interval, "to": to, "ciphertext": ciphertext})
        return ciphertext

    # --- enrolment ---
    def enrol(self, mgmc: bytes, anonym: bytes, label: str) -> None:
        self.submit("enrol", {"mgmc": mgmc, "anonym": anonym, "label": label})

    def authorise(self, key: bytes, authorised: bool) -> None:
        self.submit("authorise", {"key": key, "authorised": authorised})


@dataclass(frozen=True)
class Landed:
    """A DSO transaction that is final on the networked chain (what `Operations` reports as sealed)."""

    txid: bytes
    height: int


class NetworkedChain:
    """The DSO chain (or the MGMC chain the DSO follows) as the DSO's networked replica sees it: `sign_and_submit` goes through the node's
    `ChainAdapter` (final before it returns), reads come from the replica's LevelDB store (safe from any
    thread). `pending` lists what this thread submitted since its last `seal()`; `seal()` only closes that
    list — the consensus seals blocks, so there is nothing left to seal by hand."""

    def __init__(self, adapter: Any, store: Any) -> None:
        import threading

        self.adapter, self.store = adapter, store
        self._mine = threading.local()

    @property
    def genesis(self) -> Any:
        return self.store.genesis

    @property
    def height(self) -> int:
        return int(self.store.head_height())

    def block(self, height: int) -> Any:
        return self.store.block(height)

    def certificate(self, height: int) -> Any:
        return self.store.certificate(height)

    def locate_tx(self, txid: bytes) -> tuple[int, int] | None:
        found: tuple[int, int] | None = self.store.locate_tx(txid)
        return found

    def sign_and_submit(self, keypair: Keypair, kind: str, body: dict[str, Any]) -> Any:
        result = self.adapter.sign_and_submit(keypair, kind, body)
        if getattr(result, "ok", False):
            mine = self._list()
            where = self.locate_tx(result.txid)  # final before the adapter returns: its block is stored
            mine.append(Landed(result.txid, where[0] if where is not None else self.height))
            del mine[:-100]  # the loop's worker threads never seal: keep their lists short
        return result

    def _list(self) -> list[Landed]:
        if not hasattr(self._mine, "txs"):
            self._mine.txs = []
        txs: list[Landed] = self._mine.txs
        return txs

    @property
    def pending(self) -> list[Landed]:
        return list(self._list())

    def seal(self) -> tuple[Landed]:
        mine = self._list()
        top = Landed(b"", max((tx.height for tx in mine), default=self.height))  # where the last one landed
        mine.clear()
        return (top,)

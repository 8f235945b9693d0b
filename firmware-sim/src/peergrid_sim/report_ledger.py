"""The testbed report's ledger figures: what the lab's chains hold once its processes stopped.

Promises: `stores(workdir)` lists every replica's store of each chain (`mgmc`, `dso`) under `<workdir>/nodes`;
`ledger_figures(stores)` gives per chain each replica's head (height and hash), whether all heads are identical
and agree at the lowest, the spread of the heads, block times (mean, p50, max and the last 400 gaps, ms) and
the blocks decided after a round change (a chain without any store: `no_store`, no heads and no agreement),
and on the MGMC chain whether each settled trade's settlement has an inclusion proof that verifies (`proofs`: settled, verified, and one line per failure); `verify_stores(stores)`
runs `peergrid-ledger verify` on every store as a third party would, a few at a time ("ok" or the end of
what it said). Assumes no process holds the stores (LevelDB's lock). Never changes a store: only reads.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def stores(workdir: Path) -> dict[str, list[Path]]:
    nodes = workdir / "nodes"
    return {
        "mgmc": sorted([*nodes.glob("mgmc-*/mgmc.db"), *nodes.glob("dso/mgmc.db")]),
        "dso": sorted([*nodes.glob("mgmc-*/dso.db"), *nodes.glob("dso/dso.db")]),
    }


def _no_store() -> dict[str, Any]:
    """A chain's figures where no store of it was found: no heads, and so no agreement to report."""
    return {
        "heads": {},
        "head_hashes": {},
        "identical_heads": False,
        "lowest_head": 0,
        "agree_at_lowest_head": False,
        "head_spread": 0,
        "block_time_ms": {"mean": None, "p50": None, "max": None},
        "round_changes": 0,
        "block_times_series": [],
        "no_store": True,
    }


def ledger_figures(paths: dict[str, list[Path]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per chain: heads, agreement at the lowest head, block times, round changes; and settled-trade proofs."""
    from peergrid_ledger.proof import build_proof, check_proof
    from peergrid_ledger.store import BlockStore

    figures: dict[str, Any] = {}
    proofs: dict[str, Any] = {"settled": 0, "verified": 0, "failed": []}
    for chain, dbs in paths.items():
        if not dbs:  # no replica kept this chain (a lab whose start failed, a pruned workdir): nothing agrees
            figures[chain] = _no_store()
            continue
        heads, hashes_at = {}, {}
        opened = [(p, BlockStore.open(p)) for p in dbs]
        try:
            for path, store in opened:
                heads[str(path.parent.name)] = store.head_height()
            low = min(heads.values()) if heads else 0
            for path, store in opened:
                hashes_at[str(path.parent.name)] = store.header(low).hash.hex() if low > 0 else ""
            _, ref = max(opened, key=lambda o: o[1].head_height())
            times, rounds = [], []
            for h in range(1, ref.head_height() + 1):
                header = ref.header(h)
                times.append(header.time)
                rounds.append(header.round)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            head_hashes = {
                str(path.parent.name): store.header(store.head_height()).hash.hex()
                if store.head_height()
                else ""
                for path, store in opened
            }
            figures[chain] = {
                "heads": heads,
                "head_hashes": head_hashes,
                "identical_heads": len(set(heads.values())) == 1 and len(set(head_hashes.values())) == 1,
                "lowest_head": low,
                "agree_at_lowest_head": len(set(hashes_at.values())) == 1,
                "head_spread": (max(heads.values()) - low) if heads else 0,
                "block_time_ms": {
                    "mean": sum(gaps) / len(gaps) if gaps else None,
                    "p50": sorted(gaps)[len(gaps) // 2] if gaps else None,
                    "max": max(gaps) if gaps else None,
                },
                "round_changes": sum(1 for r in rounds if r > 0),
                "block_times_series": gaps[-400:],
            }
            if chain == "mgmc":
                from peergrid_ledger.contracts import market

                for key, raw in ref.state_items():
                    if not key.startswith(b"mkt/trade/"):
                        continue
                    from peergrid_ledger.codec import decode

                    trade = decode(raw)
                    settlement = trade.get("settlement")
                    if not settlement:
                        continue
                    proofs["settled"] += 1
                    where = ref.locate_tx(settlement["txid"])
                    try:
                        assert where is not None, "settlement not found in the store"
                        doc = build_proof(ref.block(where[0]), ref.certificate(where[0]), settlement["txid"])
                        check_proof(json.loads(json.dumps(doc)), ref.header(where[0]).hash)
                        proofs["verified"] += 1
                    except Exception as exc:
                        proofs["failed"].append(f"{key[len(b'mkt/trade/') :].hex()[:16]}: {exc}")
                del market
        finally:
            for _, store in opened:
                store.close()
    return figures, proofs


def verify_stores(paths: dict[str, list[Path]]) -> dict[str, str]:
    """`peergrid-ledger verify` on every store, as a third party would run it (a few at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    tool = Path(sys.executable).parent / "peergrid-ledger"

    def verify(db: Path) -> tuple[str, str]:
        done = subprocess.run([str(tool), "verify", "--db", str(db)], capture_output=True, text=True)
        return f"{db.parent.name}/{db.name}", "ok" if done.returncode == 0 else (done.stderr or done.stdout)[
            -300:
        ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(verify, [db for dbs in paths.values() for db in dbs]))

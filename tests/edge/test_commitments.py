"""Readings -> leaves -> Merkle root -> signed der_commitment in the on-disk outbox; every reading proves."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge import commitments
from peergrid_edge.store import EdgeStore
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import decode_tx, sign_tx

KEY = Keypair.from_seed(bytes(32))


def sign(nonce: int, body: dict[str, object]) -> bytes:
    return sign_tx(KEY, "mgmc", commitments.DER_COMMITMENT, nonce, 1_700_000_000_000, body).raw


def leaf(i: int) -> bytes:
    return commitments.reading_leaf(f"dev{i % 3}", "pv", 1000.0 + i, {"power_w": 100.0 * i, "soc_pct": None})


def test_leaf_is_canonical_and_round_trips() -> None:
    a = commitments.reading_leaf("pv1", "pv", 12.3456, {"power_w": 1.5, "energy_wh": None})
    assert a == commitments.reading_leaf("pv1", "pv", 12.3456, {"energy_wh": None, "power_w": 1.5})
    assert commitments.leaf_record(a) == {
        "device": "pv1",
        "nature": "pv",
        "at": 12.346,
        "values": {"power_w": 1.5},
    }


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.data())
def test_every_reading_proves_and_a_changed_one_does_not(n: int, data: st.DataObject) -> None:
    leaves = [leaf(i) for i in range(n)]
    root = commitments.commitment_body(5, leaves)["root"]
    index = data.draw(st.integers(0, n - 1))
    proof = commitments.prove(5, leaves, index)
    assert commitments.check(proof, root)
    forged = commitments.InclusionProof(5, index, n, leaf(index + 1000), proof.path, proof.root)
    assert not commitments.check(forged, root)


def test_seal_queues_one_commitment_per_interval_in_order(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "db")
    for interval in (10, 11, 12):
        for i in range(5):
            store.add_reading(interval, leaf(i + interval))
    assert store.open_intervals() == [10, 11, 12]
    assert store.seal(10) is not None and store.seal(11) is not None
    assert store.seal(10) is None  # never twice
    with pytest.raises(ValueError):
        store.add_reading(10, leaf(0))
    queued = list(store.pending())
    assert [q.seq for q in queued] == [1, 2] and [q.nonce for q in queued] == [1, 2]
    assert [q.body["interval"] for q in queued] == [10, 11]
    txs = [decode_tx(sign(q.nonce, q.body)) for q in queued]
    assert all(tx.signature_ok() and tx.kind == "der_commitment" for tx in txs)
    assert txs[0].body["root"] == store.sealed_root(10) and txs[0].body["readings"] == 5
    with pytest.raises(ValueError):
        store.mark_submitted(2)  # in order only
    store.mark_submitted(1)
    store.close()

    reopened = EdgeStore(tmp_path / "db")  # the queue and cursor survive a restart
    assert [q.seq for q in reopened.pending()] == [2] and reopened.queued() == 1
    assert reopened.open_intervals() == [12]
    proof = reopened.prove(11, 3)
    assert commitments.check(proof, txs[1].body["root"])
    with pytest.raises(KeyError):
        reopened.prove(12, 0)  # not committed yet
    reopened.close()


def test_prune_deletes_only_old_sealed_readings(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "db")
    for interval in (1, 2, 3):
        for i in range(4):
            store.add_reading(interval, leaf(i))
    store.seal(1)
    assert store.prune(before_interval=3) == 4  # interval 2 is old but not sealed: kept
    assert store.leaves(1) == [] and len(store.leaves(2)) == 4 and store.sealed_root(1) is not None
    store.close()


def test_prove_command_prints_a_proof_that_checks(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    store = EdgeStore(data / "edge.db")
    for i in range(6):
        store.add_reading(42, leaf(i))
    store.seal(42)
    root = store.sealed_root(42)
    store.close()
    config = tmp_path / "edge.yaml"
    config.write_text(f"node_id: n1\nmg: mg1\ndata_dir: {data}\n")
    exe = str(Path(sys.executable).parent / "peergrid-edge")
    out = subprocess.run(
        [exe, "prove", "--config", str(config), "--interval", "42", "--index", "4"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    proof = commitments.InclusionProof(
        doc["interval"],
        doc["index"],
        doc["tree_size"],
        bytes.fromhex(doc["leaf"]),
        tuple(bytes.fromhex(p) for p in doc["path"]),
        bytes.fromhex(doc["root"]),
    )
    assert commitments.check(proof, root) and doc["reading"]["values"] == {"power_w": 400.0}
    missing = subprocess.run(
        [exe, "prove", "--config", str(config), "--interval", "43", "--index", "0"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "not committed" in missing.stderr


def test_prove_on_a_data_dir_without_a_store_makes_none(tmp_path: Path) -> None:
    """`peergrid-edge prove` is a reader: pointed at a data_dir with no store it says so and leaves nothing behind
    (before, it opened with the daemon's create and left an empty new store in the folder)."""
    import subprocess
    import sys

    data = tmp_path / "data"
    config = tmp_path / "edge.yaml"
    config.write_text(f"node_id: n1\nmg: mg1\ndata_dir: {data}\n")
    exe = str(Path(sys.executable).parent / "peergrid-edge")
    out = subprocess.run(
        [exe, "prove", "--config", str(config), "--interval", "1", "--index", "0"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "cannot open the store" in out.stderr, out.stderr
    assert not (data / "edge.db").exists()

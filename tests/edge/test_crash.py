"""kill -9 of the daemon at arbitrary moments never corrupts its store: every sealed interval still proves,
the outbox nonces stay contiguous, and a restarted daemon carries on."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from edge_helpers import edge_settings

from peergrid_edge import commitments
from peergrid_edge.store import EdgeStore
from peergrid_ledger.tied import tied_popen

BIN = Path(sys.executable).parent


def test_kill_9_at_random_moments_keeps_the_store_consistent(run_sim, tmp_path: Path) -> None:
    sim = run_sim([{"name": "pv1", "kind": "pv"}, {"name": "bess1", "kind": "battery"}])
    settings = edge_settings(tmp_path, sim, ledger={"commit_interval_s": 0.5})
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    rng = random.Random(7)
    for _ in range(6):
        daemon = tied_popen(
            [str(BIN / "peergrid-edge"), "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(2.0, 4.0))  # start-up (imports) takes part of it on a loaded machine
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        store = EdgeStore(settings.data_dir / "edge.db")
        try:
            queued = list(store.pending())
            assert [q.nonce for q in queued] == list(range(1, len(queued) + 1))  # never submitted: no broker
            for q in queued:
                interval = q.body["interval"]
                assert store.sealed_root(interval) == q.body["root"]
                proof = store.prove(interval, q.body["readings"] - 1)
                assert commitments.check(proof, q.body["root"])
        finally:
            store.close()
    assert len(queued) >= 3

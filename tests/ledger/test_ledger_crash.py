"""kill -9 a block writer at random moments, 50 times; after each, the store verifies and never goes back.

The writer is a forked child process (already holding the imported ledger code, so each run starts in
milliseconds rather than the ~0.5 s a fresh interpreter takes here); it opens the store itself, appends
blocks as fast as it can, and is killed with SIGKILL at a random moment, mostly inside a synced write.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from pathlib import Path

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tied import tie_to
from peergrid_ledger.verify import verify_store

KILLS = 50


def key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(name.encode()).digest())


GENESIS = Genesis(
    chain="crash-test",
    time=0,
    authorities=(key("authority").public,),
    accounts=(Account(key("mg1").public, ("anonym",)),),
)


def writer(path: Path, ready_fd: int) -> None:
    """Append one-transaction blocks forever (until killed)."""
    store = BlockStore.open(path)
    chain = LocalChain.open(store, key("authority"))
    os.write(ready_fd, chain.height.to_bytes(8, "big"))
    sender = key("mg1")
    while True:
        interval = chain.height
        root = hashlib.sha256(b"%d" % interval).digest()
        assert chain.sign_and_submit(
            sender, "der_commitment", {"interval": interval, "root": root, "readings": 96}
        ).ok
        chain.seal()


def start_writer(path: Path) -> tuple[int, int]:
    """Fork a writer; returns its pid and the height it reopened."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            tie_to(parent)()  # a killed pytest leaves no writer looping on behind
            os.close(read_fd)
            writer(path, write_fd)
        finally:
            os._exit(status)
    os.close(write_fd)
    data = b""
    while len(data) < 8:
        chunk = os.read(read_fd, 8 - len(data))
        assert chunk, "writer died before it was ready"
        data += chunk
    os.close(read_fd)
    return pid, int.from_bytes(data, "big")


def test_kill_minus_nine_never_leaves_a_half_written_block(tmp_path: Path) -> None:
    path = tmp_path / "db"
    BlockStore.create(path, GENESIS).close()
    rng = random.Random(20261125)
    highest = 0
    advanced = 0
    for attempt in range(KILLS):
        pid, reopened = start_writer(path)
        try:
            assert reopened == highest  # the writer reopened exactly what we last verified
            time.sleep(rng.uniform(0.0, 0.04))
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        with BlockStore.open(path) as store:
            report = verify_store(store)
            assert report.ok, f"after kill {attempt + 1}: {report.summary()}"
            assert report.head >= highest, "a committed block disappeared"
            store.load_state()  # raises if the stored state does not match the head's state root
            advanced += report.head > highest
            highest = report.head
    assert advanced >= KILLS // 4, f"writer made progress in only {advanced} of {KILLS} runs"

"""D6: `peergrid-dso serve` stops in one line (exit 2) where the closed loop's config names the keys of an MG
that enrolled again with new ones and only the DSO chain says the old keys are revoked (the enrolment file still
says authorised: a revocation made outside the console, or the file missing the console's).

Before, that fault was found only once the node had opened its store, inside uvicorn's startup
(`console.state.build_console`): 'Traceback ... ConfigError', uvicorn's 'Application startup failed', exit 3.
Now `serve` reads the revocations from the DSO chain's store on disk before the node opens it (`live.stored_word`)
and says the file-based check's own words (`enrolment_file.check_at_start`). A `ConfigError` found only as the node
starts inside the web server's start (a store another process holds) ends `serve` in its one line too, exit 2
(`app.StartRefusal`), on its own port or an inherited socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from helpers_replica import Wire, pump, wall_ms

from peergrid_dso.live import stored_word
from peergrid_dso.services.enrolment import Enrolment
from peergrid_dso.services.enrolment_file import EnrolmentFile
from peergrid_ledger import keys
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import sign_tx

PEERGRID_DSO = Path(sys.executable).parent / "peergrid-dso"
CHAIN = "dso-d6"


def dso_chain_revoking(
    tmp_path: Path, dso: Keypair, revoked: Keypair, anonym: Keypair, chain: str = CHAIN
) -> Path:
    """The DSO chain's genesis (mg-school's MGMC enrolled there) and its store, where the DSO revoked that MGMC,
    as a revocation made outside the console leaves it. The genesis file's path."""
    genesis = Genesis(
        chain=chain, time=wall_ms() - 1000, authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(revoked.public, ("mgmc",), "mg-school"),
                  Account(anonym.public, ("anonym",))),
    )  # fmt: skip
    path = tmp_path / "dso-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    store = BlockStore.create(tmp_path / "dso.db", genesis)
    wire = Wire()
    replica = ChainReplica(store, dso, EngineConfig(block_period_ms=50), wire, wire.schedule)
    replica.start(wall_ms())
    for key in (revoked.public, anonym.public):  # both, as a complete revocation leaves them (R43)
        body = {"key": key, "operator": "olga"}
        tx = sign_tx(dso, chain, "gov.revoke", replica.app.next_nonce(dso.public), wall_ms(), body)
        assert type(replica.submit(tx.raw, wall_ms())).__name__ == "Accepted"
        for _ in range(10):
            if replica.app.next_nonce(dso.public) > tx.nonce:
                break
            pump(replica, wire, due_only=False)
        assert replica.app.next_nonce(dso.public) > tx.nonce, replica.app.refusal(tx.txid)
    store.close()
    return path


def config(tmp_path: Path, genesis: Path, mg: tuple[Keypair, Keypair], broker_port: int) -> Path:
    node, anonym = mg
    loop = {
        "key_file": str(tmp_path / "dso.key"),
        "dso_chain": {"genesis": str(genesis), "data_dir": str(tmp_path / "dso.db")},
        "mgs": {"mg-school": {"node": node.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
        "intervals": 1,
    }
    console = {"users_file": str(tmp_path / "data" / "console-users.json"), "lab_market": False}
    path = tmp_path / "dso.yaml"
    doc = {"node_id": "dso", "broker": {"host": "127.0.0.1", "port": broker_port}, "console": console}
    path.write_text(yaml.safe_dump(doc | {"http": {"host": "127.0.0.1", "port": 0}, "loop": loop}))
    return path


def test_serve_stops_in_one_line_on_keys_the_dso_chain_revoked_though_the_file_says_authorised(
    tmp_path: Path, mosquitto: Any
) -> None:
    dso, old, old_anonym, new, new_anonym = (Keypair.generate() for _ in range(5))
    keys.write_keyfile(tmp_path / "dso.key", dso)
    genesis = dso_chain_revoking(tmp_path, dso, old, old_anonym)
    (tmp_path / "data").mkdir()
    queue = EnrolmentFile(tmp_path / "data" / "enrolments.json")
    kept = [
        Enrolment(old.public, old_anonym.public, "mg-school", "authorised"),  # revoked on the chain since
        Enrolment(new.public, new_anonym.public, "mg-school", "authorised"),
    ]
    queue.write(kept)
    path = config(tmp_path, genesis, (old, old_anonym), mosquitto.port)
    done = subprocess.run([str(PEERGRID_DSO), "serve", "--config", str(path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    # before: uvicorn's start, the node's, then 'Traceback ... ConfigError: ...' and exit 3
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("peergrid-dso: config error: loop.mgs.mg-school names MGMC ")
    assert "mg-school enrolled again with new keys" in done.stderr and new.public.hex() in done.stderr
    # read before the node: nothing written, the file as it was (the chain's word is the running server's to keep)
    assert [e.to_json() for e in queue.read().values()] == [e.to_json() for e in kept]


def test_the_stored_word_of_a_store_locked_another_chains_or_none_yet(tmp_path: Path) -> None:
    dso, old, old_anonym, other = (Keypair.generate() for _ in range(4))
    genesis = dso_chain_revoking(tmp_path, dso, old, old_anonym)
    chain = SimpleNamespace(
        dso_chain=SimpleNamespace(genesis=genesis, data_dir=tmp_path / "dso.db"), mgmc_chain=None
    )
    pairs = [(old.public, old_anonym.public), (other.public, other.public)]
    assert stored_word(chain, pairs) == ({old.public}, set())  # its anonym revoked too: not enrolled
    with BlockStore.open(tmp_path / "dso.db"):  # held by another process (its LevelDB lock)
        assert stored_word(chain, pairs) is None
    (tmp_path / "other").mkdir()
    elsewhere = dso_chain_revoking(tmp_path / "other", dso, old, old_anonym, "dso-other")
    other_chain = SimpleNamespace(
        dso_chain=SimpleNamespace(genesis=elsewhere, data_dir=tmp_path / "dso.db"), mgmc_chain=None
    )
    with pytest.raises(ConfigError, match=r"dso\.db: holds another chain's store \(genesis differs\)$"):
        stored_word(other_chain, pairs)  # the node's own words, before the web server starts
    first = SimpleNamespace(
        dso_chain=SimpleNamespace(genesis=genesis, data_dir=tmp_path / "none"), mgmc_chain=None
    )
    assert stored_word(first, pairs) is None and not (tmp_path / "none").exists()


@pytest.mark.parametrize("listening", ["its own port", "an inherited socket (--listen-fd)"])
def test_a_config_error_only_the_nodes_start_finds_ends_serve_in_one_line(
    tmp_path: Path, mosquitto: Any, listening: str
) -> None:
    """Where the fault shows only as the node starts inside the web server's start (here the DSO chain's store
    held by another process: this check reads no word from it, the node cannot open it), `serve` ends with the
    node's one line, exit 2 (`app.StartRefusal`): uvicorn's own lines before it, no traceback."""
    dso, mgmc, anonym = (Keypair.generate() for _ in range(3))
    keys.write_keyfile(tmp_path / "dso.key", dso)
    genesis = dso_chain_revoking(tmp_path, dso, Keypair.generate(), Keypair.generate())
    path = config(tmp_path, genesis, (mgmc, anonym), mosquitto.port)
    argv = [str(PEERGRID_DSO), "serve", "--config", str(path)]
    with socket.create_server(("127.0.0.1", 0)) as listener, BlockStore.open(tmp_path / "dso.db"):
        fds = (listener.fileno(),) if listening.endswith("(--listen-fd)") else ()
        argv += [f"--listen-fd={fd}" for fd in fds]
        # another server's node holds the store
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, pass_fds=fds)
    # before: 'Traceback ... ConfigError: .../dso.db: cannot open ledger store (...)', exit 3
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"peergrid-dso: config error: {tmp_path / 'dso.db'}: cannot open ledger store"), (
        last
    )

"""`peergrid-ledger node --config FILE`: one standalone replica process for one or more chains.

Promises: the YAML config is validated (unknown keys, missing files: exit 2 with one line); each chain's store
is created from its genesis on first start and reopened (refusing another chain's store) afterwards; the
process runs until SIGTERM or SIGINT, then closes its stores cleanly. `kill -9` at any moment loses nothing
final: blocks are committed in one synced batch and votes are in the WAL before they are sent.

Example config:

    key_file: /etc/peergrid/node.key
    feeder: lab
    broker_host: 127.0.0.1
    broker_port: 1883
    status_file: /run/peergrid/ledger-status.json
    chains:
      - genesis: /etc/peergrid/mgmc-genesis.json
        data_dir: /var/lib/peergrid/mgmc
        block_period_ms: 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from .. import keys
from ..genesis import Genesis, GenesisError
from ..settings import ConfigError, StrictSettings, exit_with_config_error, load_settings
from ..store import BlockStore, StoreError
from .engine import HEARTBEAT_MS, EngineConfig
from .mempool import MempoolLimits
from .mqtt_transport import MqttTransport
from .node import ChainReplica, FileWal, Node

PROGRAM = "peergrid-ledger node"


class ChainSettings(StrictSettings):
    genesis: Path
    data_dir: Path
    block_period_ms: int = Field(1000, ge=50, le=600_000)
    round_timeout_ms: int = Field(2000, ge=100, le=600_000)
    max_future_drift_ms: int = Field(2000, ge=0, le=600_000)
    max_backoff_exponent: int = Field(4, ge=0, le=10)
    sync_batch: int = Field(64, ge=1, le=1024)
    halt_height: int | None = Field(None, ge=0)
    heartbeat_ms: int = Field(HEARTBEAT_MS, ge=0, le=600_000)
    """An empty block after this long without a transaction (at most block_period_ms: one every period)."""
    mempool_max_txs: int = Field(50_000, ge=1)
    sender_rate_per_s: float = Field(5000.0, gt=0)


class NodeSettings(StrictSettings):
    key_file: Path
    feeder: str = Field("lab", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(1883, ge=1, le=65535)
    client_id: str = ""
    status_file: Path | None = None
    chains: list[ChainSettings] = Field(min_length=1)


def load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.from_json(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read genesis: {exc.strerror}") from None
    except (ValueError, GenesisError) as exc:
        raise ConfigError(f"{path}: not a genesis document ({str(exc)[:120]})") from None


def open_store(data_dir: Path, genesis: Genesis) -> BlockStore:
    try:
        if data_dir.is_dir() and any(data_dir.iterdir()):
            store = BlockStore.open(data_dir)
            if store.genesis.hash != genesis.hash:
                store.close()
                raise ConfigError(f"{data_dir}: holds another chain's store (genesis differs)")
            return store
        data_dir.mkdir(parents=True, exist_ok=True)
        return BlockStore.create(data_dir, genesis)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


def build_node(settings: NodeSettings) -> tuple[Node, MqttTransport, list[BlockStore]]:
    try:
        keypair = keys.read_keyfile(settings.key_file)
    except keys.KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    node = Node(keypair, settings.status_file)
    chains = [(c, load_genesis(c.genesis)) for c in settings.chains]
    names = [g.chain for _, g in chains]
    if len(set(names)) != len(names):
        raise ConfigError("chains: the same chain is configured twice")
    transport = MqttTransport(
        settings.broker_host,
        settings.broker_port,
        settings.feeder,
        keypair.public,
        names,
        node.deliver,
        settings.client_id,
    )
    stores = []
    for chain_settings, genesis in chains:
        store = open_store(chain_settings.data_dir, genesis)
        stores.append(store)
        config = EngineConfig(
            block_period_ms=chain_settings.block_period_ms,
            round_timeout_ms=chain_settings.round_timeout_ms,
            max_future_drift_ms=chain_settings.max_future_drift_ms,
            sync_batch=chain_settings.sync_batch,
            max_backoff_exponent=chain_settings.max_backoff_exponent,
            halt_height=chain_settings.halt_height,
            heartbeat_ms=chain_settings.heartbeat_ms,
        )
        limits = MempoolLimits(
            max_txs=chain_settings.mempool_max_txs,
            rate_per_sender=chain_settings.sender_rate_per_s,
            burst_per_sender=int(chain_settings.sender_rate_per_s),
            max_per_sender=max(1024, int(chain_settings.sender_rate_per_s)),
            max_nonce_gap=max(1024, int(chain_settings.sender_rate_per_s)),
        )
        wal = FileWal(chain_settings.data_dir.parent / f"{chain_settings.data_dir.name}.wal")
        node.replicas[genesis.chain] = ChainReplica(
            store, keypair, config, transport, node.schedule_for(genesis.chain), wal, limits, clock=node.clock
        )
    return node, transport, stores


async def _serve(settings: NodeSettings) -> None:
    node, transport, stores = build_node(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node.attach_loop()
    transport.start()
    try:
        await node.run(stop)
    finally:
        transport.stop()
        for store in stores:
            store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="run one ledger replica")
    parser.add_argument("--config", required=True, type=Path, help="YAML node config")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, NodeSettings)
        asyncio.run(_serve(settings))
    except ConfigError as exc:
        exit_with_config_error(PROGRAM, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

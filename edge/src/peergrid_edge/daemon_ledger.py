"""The MGMC daemon's ledger side (split from `daemon.py`): its embedded replicas, and the outbox of DER commitments.

Promises: `embedded_ledger` builds the daemon's `EdgeLedger` from its settings (one `ChainSpec` per configured
chain, each store under the daemon's data dir), or None where the settings name no replicas. The outbox: every
closed interval's readings are sealed into a `der_commitment` queued on disk at a fixed nonce (`seal_closed`),
old readings pruned past `retention_days` (`prune_old`), and the queue submitted in order, one at a time,
signed at submission (the chain checks the transaction's time), the cursor moving only when the sink took it
(`submit_pending`): islanded it stays queued and is retried in order next round; a taken nonce renumbers it and
the ones after it from the chain's next (`NonceTaken`); a refusal the chain never takes back drops it, logged
once, the rest moving down into its unused nonce (`Refused`). A coordinated halt submits nothing. Functions of
the daemon (`EdgeDaemon`), whose clock, store, key and sink they use; no clocks or I/O of their own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from peergrid_edge import commitments
from peergrid_edge.config import EdgeSettings
from peergrid_edge.link import MqttLink, NonceTaken, Refused
from peergrid_edge.store import Queued
from peergrid_ledger import keys
from peergrid_ledger.tx import sign_tx

if TYPE_CHECKING:
    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_edge.replicas import EdgeLedger

log = logging.getLogger("peergrid.edge")


def embedded_ledger(settings: EdgeSettings, keypair: keys.Keypair, link: MqttLink) -> EdgeLedger | None:
    """The daemon's ledger replicas over its own link (None: its settings name none)."""
    replicas = settings.ledger.replicas
    if replicas is None:
        return None
    from peergrid_edge.replicas import ChainSpec, EdgeLedger

    specs = [
        ChainSpec(
            name=name,
            genesis=chain.genesis,
            data_dir=settings.data_dir / f"{name}.db",
            block_period_ms=chain.block_period_ms,
            round_timeout_ms=chain.round_timeout_ms,
            wal_fsync=chain.wal_fsync,
        )
        for name, chain in (("mgmc", replicas.mgmc), ("dso", replicas.dso))
        if chain is not None
    ]
    return EdgeLedger(
        keypair, link, settings.feeder, specs, status_file=settings.data_dir / "ledger-status.json"
    )


def sign(daemon: EdgeDaemon, queued: Queued) -> bytes:
    """Signed now, with the nonce fixed when the interval was sealed (the chain checks tx time)."""
    time_ms = int(daemon.clock.wall() * 1000)
    return sign_tx(daemon.keypair, daemon.chain_id, queued.kind, queued.nonce, time_ms, queued.body).raw


def seal_closed(daemon: EdgeDaemon) -> int:
    current = commitments.interval_of(daemon.clock.wall(), daemon.settings.ledger.commit_interval_s)
    sealed = 0
    for interval in daemon.store.open_intervals():
        if interval < current and daemon.store.seal(interval) is not None:
            sealed += 1
    return sealed


def prune_old(daemon: EdgeDaemon) -> int:
    days = daemon.settings.ledger.retention_days
    if days is None:
        return 0
    interval_s = daemon.settings.ledger.commit_interval_s
    return daemon.store.prune(commitments.interval_of(daemon.clock.wall() - days * 86_400, interval_s))


async def commit_loop(daemon: EdgeDaemon) -> None:
    rounds = 0
    while not daemon.stopping.is_set():
        if rounds % 3600 == 0:
            daemon.prune_old_readings()
        rounds += 1
        daemon.seal_closed_intervals()
        await daemon._submit_pending()
        await daemon._sleep(1.0)


async def submit_pending(daemon: EdgeDaemon) -> None:
    timeout = daemon.settings.ledger.submit_timeout_s
    if daemon.ledger is not None and daemon.ledger.halted:
        return  # a coordinated stop: what is queued stays queued on disk
    for queued in list(daemon.store.pending()):
        raw = daemon._sign(queued)
        try:
            taken = not daemon.stopping.is_set() and await daemon.tx_sink.submit(raw, timeout)
        except NonceTaken as lost:  # another transaction of this key holds its nonce: never lands there
            moved = daemon.store.renumber(queued.seq, lost.next_nonce)
            log.warning("outbox: the %s of seq %d lost its nonce (%s): it and the %d queued after it are "
                        "signed again from nonce %d", queued.kind, queued.seq, lost, moved - 1,
                        lost.next_nonce)  # fmt: skip
            return  # the next round signs them at their new nonces
        except Refused as refused:  # never lands: retried, it would hold back all queued after it
            log.error("outbox: the chain refused the %s of seq %d for good (%s): dropped, interval %s is never "
                      "committed", queued.kind, queued.seq, refused, queued.body.get("interval"))  # fmt: skip
            daemon.store.mark_submitted(queued.seq)
            daemon.store.renumber(queued.seq + 1, refused.next_nonce)
            return  # the next round signs the rest at their nonces, moved down into the unused one
        if not taken:
            return  # islanded: keep it queued, retry in order next round
        daemon.store.mark_submitted(queued.seq)

"""The settle-by-both lab's interval clock, posted on the MGMC chain once its t0 is fixed (`market.clock`).

Why: a settle-by-both lab used to fix the MGMC chain's clock in its genesis, before the DSO node's readiness
was known, so its t0 could not move when that node came up late (T5's note). Now the genesis keeps a
provisional clock, t0 moves at the DSO's readiness as in every other lab (`dso_ready.moved_t0`), and
`ClockPoster` sends `market.clock` {epoch_ms} for the moved t0 under the lab's clock key (`LabChains.clock`,
role `clock` in the MGMC genesis, which posts the clock and nothing else: its own nonces, so it never races
the DSO node's own postings, and none of the DSO's other powers; review23 F2) from before
the MGMCs start until a block holding it is announced; `wait` fails the lab with one line when none is by t0.
The transaction is gossiped as the chain's replicas gossip theirs (a signed envelope on the chain's `tx`
topic, sent again each `period_s`: nothing keeps it for authorities that are not up yet) and found in the
block announcements (`block` topic: a committed block with its certificate). A position of an MGMC (an offer,
bid or exchange accept: `POSITION_KINDS`) announced before the clock landed keeps it out for good
(`market_clock` refuses a post while an anonym the genesis names holds a position, and every lab anonym is in
its genesis): the poster stops and `wait` fails the lab at once with one line naming that position, rather than
at t0 with "not in a block" (`clock_news` judges one block, pure). Threads: paho's network thread only;
`landed` and `over` are Events. Never used outside the lab.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_ledger.block import decode_block
from peergrid_ledger.consensus.messages import SyncResponse, decode_wire
from peergrid_ledger.consensus.transport import (
    BLOCK,
    TX,
    encode_tx_batch,
    read_envelope,
    seal_envelope,
    topic,
)
from peergrid_ledger.keys import Keypair
from peergrid_ledger.keyspace import ROLE_CLOCK, ROLE_DSO
from peergrid_ledger.tx import Tx, sign_tx

# the roles `market.clock` takes (market_clock.set_clock); a new lab's genesis gives its clock key `clock` only
CLOCK_ROLES = frozenset({ROLE_CLOCK, ROLE_DSO})
# the positions of an anonym after which `market.clock` is refused while they stand (contracts/market_clock.py)
POSITION_KINDS = frozenset({"offer", "bid", "exchange.accept"})


def clock_epoch_ms(t0_s: float, first_interval: int, interval_s: float) -> int:
    """The clock's epoch for a lab whose first interval starts at `t0_s`: as `SettleByBoth.for_lab` set the
    genesis' (the chain's interval k ends at most 1 ms before the lab's, never after)."""
    return math.floor(t0_s * 1000) - first_interval * round(interval_s * 1000)


def clock_news(txs: Iterable[Tx], txid: bytes) -> tuple[bool, str | None]:
    """What one committed block's transactions, in order, say of the clock post `txid`: whether it landed, and
    the kind of the first position before it (which keeps it out: `POSITION_KINDS`), or None."""
    for tx in txs:
        if tx.txid == txid:
            return True, None
        if tx.kind in POSITION_KINDS:
            return False, tx.kind
    return False, None


class ClockPoster:
    """Sends one `market.clock` until a block holding it is announced (`landed`)."""

    def __init__(
        self, broker: tuple[str, int], feeder: str, chain: str, key: Keypair, epoch_ms: int, period_s: float = 0.5
    ) -> None:  # fmt: skip
        self.chain, self.feeder, self.key, self.epoch_ms, self.period_s = (
            chain,
            feeder,
            key,
            epoch_ms,
            period_s,
        )
        tx = sign_tx(key, chain, "market.clock", 1, int(time.time() * 1000), {"epoch_ms": epoch_ms})
        self.txid = tx.txid
        self._envelope = seal_envelope(chain, TX, key, encode_tx_batch([tx.raw]))
        self.landed = threading.Event()
        self.over = threading.Event()  # landed, or kept out by a position (`preempted`)
        self.preempted: str | None = None  # the position that came first: its kind and the block's height
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lab-clock-{chain}"[:64])
        self.client.on_connect = self._subscribe
        self.client.on_message = self._announced
        self.client.connect(*broker)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send, name="lab-clock", daemon=True)
        self._sender.start()

    def _subscribe(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(topic(self.feeder, self.chain, BLOCK), qos=1)

    def _send(self) -> None:
        while not (self.over.is_set() or self._stop.is_set()):
            self.client.publish(topic(self.feeder, self.chain, TX), self._envelope, qos=1)
            self._stop.wait(self.period_s)

    def _announced(self, client: Any, userdata: Any, message: Any) -> None:
        """A block announcement: landed once one holds the transaction, kept out once one holds a position
        before it (anything undecodable is skipped: the replicas check the signatures, this only looks for its
        own txid and the positions' kinds)."""
        with contextlib.suppress(Exception):
            envelope, _ = read_envelope(self.chain, message.payload)
            wire = decode_wire(self.chain, envelope.body)
            if isinstance(wire, SyncResponse):
                for raw, _cert in wire.blocks:
                    block = decode_block(raw)
                    landed, position = clock_news(block.txs, self.txid)
                    if self.over.is_set():
                        return
                    if landed:
                        self.landed.set()
                    elif position is not None:
                        self.preempted = f"{position} at height {block.header.height}"
                    if landed or position is not None:
                        self.over.set()
                        return

    def wait(self, until_s: float) -> str | None:
        """Until the wall time `until_s` (the lab's t0) at most: None once the clock landed, else the line (at
        once where a position kept it out)."""
        self.over.wait(max(0.0, until_s - time.time()))
        if self.landed.is_set():
            return None
        if self.preempted is not None:
            return (
                f"the interval clock (market.clock, epoch {self.epoch_ms} ms) cannot land on the MGMC chain: a "
                f"position ({self.preempted}) came before it, and the chain refuses a clock while an anonym "
                f"holds a position: the chain would settle on its genesis' provisional clock"
            )
        return (
            f"the interval clock (market.clock, epoch {self.epoch_ms} ms) was not in a block of the MGMC chain "
            f"by t0 ({until_s:.1f}): the chain would settle on its genesis' provisional clock"
        )

    def stop(self) -> None:
        self._stop.set()
        self._sender.join(timeout=2)
        self.client.loop_stop()
        self.client.disconnect()


def clock_key(chains: Any) -> Keypair | None:
    """The lab's clock key where its MGMC genesis settles by both and names it with a role that posts the clock
    (`clock`; `dso` in a lab directory whose genesis was written before that role, kept as written); None
    elsewhere, and for a lab directory whose genesis was written before the key (its clock stays the
    genesis', t0 fixed)."""
    doc = json.loads(chains.mgmc_genesis.read_text(encoding="utf-8"))
    if chains.clock is None or not doc.get("params", {}).get("settle_by_both"):
        return None
    named = {
        bytes.fromhex(a["key"]) for a in doc.get("accounts", []) if CLOCK_ROLES & set(a.get("roles", ()))
    }
    return chains.clock if chains.clock.public in named else None


def post_clock(chains: Any, broker: tuple[str, int], feeder: str, timing: Any) -> ClockPoster | None:
    """Start posting the clock of `timing`'s t0 (a `LoopTiming`, t0 moved already) where `clock_key` allows."""
    key = clock_key(chains)
    if key is None:
        return None
    chain = json.loads(chains.mgmc_genesis.read_text(encoding="utf-8"))["chain"]
    epoch = clock_epoch_ms(timing.t0, timing.first_interval, timing.interval_s)
    return ClockPoster(broker, feeder, chain, key, epoch)


@contextlib.contextmanager
def clock_posted(
    chains: Any, broker: tuple[str, int], feeder: str, timing: Any
) -> Iterator[ClockPoster | None]:
    """`post_clock` for the block inside, stopped after it whatever happens (None: nothing to post)."""
    poster = post_clock(chains, broker, feeder, timing)
    try:
        yield poster
    finally:
        if poster is not None:
            poster.stop()

"""A transaction the block refuses that is not its sender's first in that block (L7, found by H2's DSO
enrolments sent together on consecutive nonces): the proposer judged it on the committed state, without its
sender's earlier transactions in the block, so it was a nonce gap ("nonce 2 out of order (expected 1)") and
was discarded for good with that reason, also one that only waited for its own time. Now it is left to the
pool's recheck once the block commits, which judges it on the state it would land on: refused for good it
goes with the contract's reason, waiting for its time it stays and lands.

Two authorities' `LedgerApp`s over LevelDB, driven directly: the height's proposer builds, the other
validates, both commit under a certificate of both seals; every transaction enters both pools (gossip).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import keys
from peergrid_ledger.block import commit_vote, decode_block
from peergrid_ledger.consensus.app import Accepted
from peergrid_ledger.consensus.ledger_app import LedgerApp
from peergrid_ledger.consensus.messages import Certificate
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.store import BlockStore
from peergrid_ledger.tx import Tx, sign_tx
from peergrid_ledger.verify import verify_store

CHAIN = "behind-own-nonce"
T0 = 1_767_225_600_000
STEP_MS = 500
FUTURE = 5_000  # the genesis default tx_max_future_ms


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"behind/" + name.encode()).digest())


AUTHORITIES = [key("authority-0"), key("authority-1")]
DSO = key("dso")
SENDERS = [key(f"mg{i}") for i in range(3)]


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(
            Account(DSO.public, ("dso",), "dso"),
            *(Account(k.public, ("anonym",), f"mg{i}") for i, k in enumerate(SENDERS)),
        ),
    )


class Chain:
    """Two replicas; `step` advances the clock and, when a pool has something to propose, makes a block."""

    def __init__(self, root: Path) -> None:
        self.now = T0 + 1000
        self.apps = [
            LedgerApp(BlockStore.create(root / f"n{i}", genesis()), k) for i, k in enumerate(AUTHORITIES)
        ]

    def sign(self, who: keys.Keypair, nonce: int, kind: str, body: dict[str, Any], ahead_ms: int = 0) -> Tx:
        return sign_tx(who, CHAIN, kind, nonce, self.now + ahead_ms, body)

    def submit(self, tx: Tx) -> list[bool]:
        """Into every pool; which took it."""
        return [isinstance(app.mempool.add(tx.raw, self.now), Accepted) for app in self.apps]

    def step(self) -> bool:
        """STEP_MS later; a block if its proposer has a sender's next transaction (True when one was made)."""
        self.now += STEP_MS
        height = self.apps[0].tip.height + 1
        proposer = height % len(self.apps)
        if not self.apps[proposer].pending():
            return False
        app = self.apps[proposer]
        timestamp = max(self.now, app.tip.time + 1)
        raw = app.build_block(height, 0, timestamp, AUTHORITIES[proposer].public)
        header = decode_block(raw).header
        seals = tuple(sorted(commit_vote(k, header) for k in AUTHORITIES))
        for other in self.apps:
            assert isinstance(other.validate(raw), Accepted)
            other.commit(raw, Certificate(0, seals))
        return True

    def landed(self, tx: Tx) -> bool:
        return all(app.store.locate_tx(tx.txid) is not None for app in self.apps)

    def refusals(self, tx: Tx) -> list[str | None]:
        return [app.refusal(tx.txid) for app in self.apps]

    def pooled(self, tx: Tx) -> list[bool]:
        return [tx.txid in app.mempool for app in self.apps]


def enrolment(mgmc: bytes, anonym: bytes, label: str) -> dict[str, Any]:
    return {"mgmc": mgmc, "anonym": anonym, "label": label, "operator": "ops"}


def test_a_refusal_behind_the_senders_own_nonce_in_a_block_is_the_contracts_not_a_nonce_gap(
    tmp_path: Path,
) -> None:
    """H2's case: the DSO enrols two MGs at once; the second names the MGMC as its own anonym. The block
    takes the first and refuses the second ("the anonym must differ ..."). The proposer used to discard it
    as "nonce-gap: nonce 2 out of order (expected 1)"; now no pool refuses it until the first is committed,
    and then every pool gives the contract's reason (the proposer of the next block discards it, the other
    replica's recheck evicts it), so the DSO can fill nonce 2 knowing why."""
    chain = Chain(tmp_path)
    mg_a, anon_a, mg_b = key("mgmc-a"), key("anonym-a"), key("mgmc-b")
    first = chain.sign(DSO, 1, "enrol", enrolment(mg_a.public, anon_a.public, "mg-a"))
    second = chain.sign(DSO, 2, "enrol", enrolment(mg_b.public, mg_b.public, "mg-b"))
    assert chain.submit(first) == chain.submit(second) == [True, True]
    assert chain.step()  # height 1: both reaped into one block, the first lands, the second is refused
    assert chain.landed(first) and not chain.landed(second)
    assert chain.refusals(second) == [None, None] and chain.pooled(second) == [True, True]
    for _ in range(2):
        chain.step()
    reasons = chain.refusals(second)
    assert reasons == ["invalid: the anonym must differ from the MGMC's identity key"] * 2, reasons
    assert chain.pooled(second) == [False, False] and len(chain.apps[0].mempool) == 0
    filler = chain.sign(DSO, 2, "enrol", enrolment(mg_b.public, key("anonym-b").public, "mg-b"))
    assert chain.submit(filler) == [True, True]
    chain.step()
    assert chain.landed(filler) and not chain.landed(second)
    for app in chain.apps:
        assert verify_store(app.store).ok
        app.store.close()


def test_a_transaction_behind_its_senders_own_nonce_that_waits_for_its_time_stays_and_lands(
    tmp_path: Path,
) -> None:
    """The second of two injections is dated 12 s ahead: the block refuses it (time-out-of-bounds) and the
    chain takes it once block time reaches it. It was discarded as a nonce gap by the proposer; now it waits
    in both pools and lands in a later block, past its time less the chain's tolerance."""
    chain = Chain(tmp_path)
    mg = SENDERS[0]
    first = chain.sign(mg, 1, "equivalent_injection", {"interval": 1, "injection": 500, "revision": 0})
    ahead = chain.sign(
        mg, 2, "equivalent_injection", {"interval": 1, "injection": 400, "revision": 1}, 12_000
    )
    assert chain.submit(first) == chain.submit(ahead) == [True, True]
    assert chain.step()
    assert chain.landed(first) and not chain.landed(ahead)
    assert chain.pooled(ahead) == [True, True] and chain.refusals(ahead) == [None, None]
    for _ in range(40):
        chain.step()
        if chain.landed(ahead):
            break
        assert chain.pooled(ahead) == [True, True] and chain.refusals(ahead) == [None, None]
        assert "time-out-of-bounds" in (chain.apps[0].mempool.waiting(ahead.txid) or "")
    assert chain.landed(ahead)
    height, _ = chain.apps[0].store.locate_tx(ahead.txid) or (0, 0)
    assert height > 1 and chain.apps[0].store.header(height).time >= ahead.time - FUTURE


@dataclass(frozen=True)
class Planned:
    """One transaction of a sender's batch: the chain takes it iff `revision` beats the interval's last."""

    interval: int
    revision: int
    ahead_ms: int
    submit_step: int


PLANNED = st.builds(
    Planned,
    st.integers(1, 2),
    st.integers(0, 3),
    st.sampled_from([0, 0, 0, 7_000, 14_000]),
    st.integers(0, 3),
)


def expected_landings(batch: list[Planned]) -> list[bool]:
    """The chain's rule, apart: in nonce order each lands iff its revision beats the interval's last landed
    one (`equivalent_injection`); one that does not is refused and its nonce filled by a harmless one."""
    last: dict[int, int] = {}
    lands = []
    for planned in batch:
        ok = planned.interval not in last or planned.revision > last[planned.interval]
        if ok:
            last[planned.interval] = planned.revision
        lands.append(ok)
    return lands


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(PLANNED, min_size=1, max_size=6), min_size=1, max_size=len(SENDERS)))
def test_no_transaction_the_chain_would_take_is_discarded_whatever_the_batches(
    batches: list[list[Planned]],
) -> None:
    """Senders send batches on consecutive nonces (some dated ahead, some refused for good by the revision
    rule, submitted over a few steps, so refused ones sit anywhere in a block); a sender that reads a
    refusal from its node (replica 0) fills that nonce with an injection for an interval of its own, as the
    edge and the DSO adapter do. At the end exactly the transactions the rule takes have landed, each
    refused one is refused with the rule's reason on the sender's node, and no pool names a nonce gap."""
    with tempfile.TemporaryDirectory() as root:
        chain = Chain(Path(root))
        txs: dict[int, list[Tx]] = {}
        filled: set[bytes] = set()
        for step in range(200):
            for s, batch in enumerate(batches):
                for nonce, planned in enumerate(batch, 1):
                    if planned.submit_step == step:
                        body = {"interval": planned.interval, "injection": 100, "revision": planned.revision}
                        tx = chain.sign(SENDERS[s], nonce, "equivalent_injection", body, planned.ahead_ms)
                        txs.setdefault(s, []).append(tx)
                        assert chain.submit(tx) == [True, True]
                        txs[s].sort(key=lambda t: t.nonce)
                    for tx in txs.get(s, []):
                        if tx.txid not in filled and chain.refusals(tx)[0] is not None:
                            filled.add(tx.txid)
                            body = {"interval": 100 + tx.nonce, "injection": 0, "revision": 0}
                            chain.submit(chain.sign(SENDERS[s], tx.nonce, "equivalent_injection", body))
            chain.step()
            if step > 3 and all(len(app.mempool) == 0 for app in chain.apps):
                break
        assert all(len(app.mempool) == 0 for app in chain.apps), "the pools never drained"
        assert chain.now - T0 < genesis().params.tx_max_age_ms  # nothing could age out
        for s, batch in enumerate(batches):
            for tx, lands in zip(txs[s], expected_landings(batch), strict=True):
                reasons = chain.refusals(tx)
                assert chain.landed(tx) == lands, (s, tx.nonce, reasons)
                assert not any("nonce-gap" in (r or "") for r in reasons), reasons
                if lands:
                    assert reasons == [None, None]
                else:
                    assert "revision must increase" in (reasons[0] or ""), reasons
                    assert reasons[1] is None or "revision must increase" in reasons[1]
        for app in chain.apps:
            app.store.close()

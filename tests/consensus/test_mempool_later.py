"""A transaction is judged no earlier than its own time (the session-9 note: an accept sent as its round
opened by its sender's clock, refused "not open yet" at the tip's time, was evicted as a `duplicate` after
two strikes though the next block would take it): refused at the tip's time but taken once block time
reaches its own, it waits in the pool and lands; refused at its own time too it still goes, with its reason;
and the wait is bounded by the transaction's own time, so future-dated transactions cannot fill the pool.

Real replicas (`ChainReplica` over LevelDB) on the seeded in-memory network (`LedgerNet`), and the pool alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import keys
from peergrid_ledger.consensus.app import Accepted, Rejected
from peergrid_ledger.consensus.ledger_net import CONFIG, LedgerNet
from peergrid_ledger.consensus.mempool import STRIKES, Later, Mempool, MempoolLimits, TxMeta
from peergrid_ledger.contracts.exchange_clearing import accepted
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.tx import sign_tx

T0 = 1_767_225_600_000
CHAIN = "later-chain"
AGE = 120_000  # genesis tx_max_age_ms (the default), FUTURE its tx_max_future_ms
FUTURE = 5_000


def key(name: str) -> keys.Keypair:
    return keys.Keypair.from_seed(hashlib.sha256(b"later/" + name.encode()).digest())


AUTHORITIES = [key(f"authority-{i}") for i in range(4)]
DSO = key("dso")
P1, P2, P3, P4 = (key(f"p{i}") for i in range(1, 5))
FINALS = {P1: [3000, 1000], P2: [1000, 1000], P3: [-2000, -1500], P4: [-1000, -100]}


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time=T0,
        authorities=tuple(k.public for k in AUTHORITIES),
        accounts=(
            Account(DSO.public, ("dso",), "dso"),
            *(Account(k.public, ("anonym",), f"p{i}") for i, k in enumerate(FINALS, 1)),
        ),
        contracts=("market", "exchange"),
        params=Params(credit_limit=10**12, accept_rounds=2, accept_wait_ms=10_000),
    )


def land(net: LedgerNet, who: keys.Keypair, kind: str, body: dict[str, Any], on: str = "n1") -> bytes:
    txid, verdict = net.submit(on, who, kind, body)
    assert isinstance(verdict, Accepted), verdict
    for _ in range(40):
        net.run(100)
        if all(r.store.locate_tx(txid) is not None for r in net.replicas.values()):
            return txid
    raise AssertionError(f"{kind} did not land: {net.replicas[on].refusal(txid)}")


def closed_session(net: LedgerNet, deadline: int) -> None:
    """Session day-1 with FINALS stepped, closed, with deadline `deadline` (block time)."""
    members = [m.public for m in FINALS]
    body = {"session": "day-1", "first_interval": 100, "members": members, "prices": [50_000_000] * 2}
    land(net, DSO, "exchange.open", {**body, "rho": 5_000_000, "deadline": deadline})
    for m, positions in FINALS.items():
        land(net, m, "exchange.position", {"session": "day-1", "iteration": 0, "positions": positions})
    land(net, DSO, "exchange.step", {"session": "day-1", "iteration": 0, "rho": 5_000_000})
    land(net, DSO, "exchange.close", {"session": "day-1", "iteration": 1})


def accept_at(net: LedgerNet, on: str, time_ms: int) -> tuple[bytes, Accepted | Rejected]:
    """P1's round-2 answer (its round-1 accept unchanged), signed by a clock that reads `time_ms`."""
    nonce = net.replicas[on].app.next_nonce(P1.public)
    body = {"session": "day-1", "positions": FINALS[P1], "clean": False}
    tx = sign_tx(P1, CHAIN, "exchange.accept", nonce, time_ms, body)
    return tx.txid, net.replicas[on].submit(tx.raw, net.now)


def early_round(tmp_path: Path, seed: int) -> tuple[LedgerNet, int]:
    """A closed session whose deadline is 12 s away; P1..P3 accepted, P4 never does, so round 2 opens only
    once a block's time passes the deadline."""
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES, seed=seed, config=CONFIG)
    deadline = net.now + 12_000
    closed_session(net, deadline)
    for m in (P1, P2, P3):
        land(net, m, "exchange.accept", {"session": "day-1", "positions": FINALS[m], "clean": False})
    assert net.now < deadline - 3_000
    return net, deadline


def test_an_accept_from_a_clock_ahead_of_the_chains_waits_for_its_round_and_lands(tmp_path: Path) -> None:
    """P1's clock runs 2.5 s ahead of the proposers' (within the chain's 5-s tolerance): it sends its round-2
    answer as the deadline passes by its clock, dated so; by block time round 2 is not open yet (`duplicate`:
    "round 2 opens once every member accepted ... or the deadline passed"). It was evicted after two blocks
    (and discarded by the proposer) though the block after the deadline would take it; now it waits in
    every pool (no strike) and lands in the first block past the deadline."""
    net, deadline = early_round(tmp_path, 7)
    while net.now < deadline - 2_500:
        net.run(100)
    early, verdict = accept_at(net, "n2", deadline + 1)
    assert isinstance(verdict, Accepted)
    net.run(1_000)  # several blocks refuse it at their time
    for name, replica in net.replicas.items():
        assert early in replica.app.mempool, (name, replica.refusal(early))
        assert "duplicate" in (replica.app.mempool.waiting(early) or ""), name
        assert replica.store.locate_tx(early) is None
    while net.now <= deadline + 500:
        net.run(200)
    for name, replica in net.replicas.items():
        where = replica.store.locate_tx(early)
        assert where is not None, (name, replica.refusal(early))
        assert replica.store.header(where[0]).time > deadline
        assert replica.refusal(early) is None and len(replica.app.mempool) == 0
    mine = accepted(net.replicas["n0"].app.state, "day-1", P1.public)
    assert mine is not None and mine["round"] == 2


def test_an_accept_sent_before_its_round_opens_by_its_own_clock_is_still_refused(tmp_path: Path) -> None:
    """Dated before the deadline, the chain refuses it at its own time too: it goes after two blocks, its
    reason kept, so its sender can use the nonce for something else (the edge's forward agent answers again
    after the next block; its coordinator's clear at the hard stop moves on to its next answer)."""
    net, deadline = early_round(tmp_path, 8)
    early, verdict = accept_at(net, "n2", net.now)
    assert isinstance(verdict, Accepted)
    net.run(1_500)
    assert net.now < deadline
    for name, replica in net.replicas.items():
        assert early not in replica.app.mempool, name
        assert replica.app.mempool.waiting(early) is None, name
        assert "round 2 opens once" in (replica.refusal(early) or ""), name


def test_a_true_duplicate_still_leaves_every_pool_with_its_reason(tmp_path: Path) -> None:
    """A refusal no later block time cures (a member that declined accepts again: `duplicate` at every
    time) is evicted as before, its reason kept for the submitter."""
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES, seed=6, config=CONFIG)
    closed_session(net, net.now + 60_000)
    land(net, P4, "exchange.accept", {"session": "day-1", "positions": [0, 0], "clean": False})
    again, verdict = net.submit(
        "n3", P4, "exchange.accept", {"session": "day-1", "positions": [0, 0], "clean": False}
    )
    assert isinstance(verdict, Accepted)
    net.run(1_500)
    for name, replica in net.replicas.items():
        assert again not in replica.app.mempool, name
        assert "already declined" in (replica.refusal(again) or ""), name


def test_a_transaction_dated_ahead_of_the_chain_waits_for_its_time_and_one_never_valid_goes(
    tmp_path: Path,
) -> None:
    """Dated 20 s ahead (the chain takes 5 s): it waits and lands once block time reaches it (before, too,
    by `time-out-of-bounds` being a waiting cure). Dated ahead but refused by its contract at any time:
    it waited for good before (that cure was unconditional); now it goes after two strikes."""
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES, seed=9, config=CONFIG)
    replica = net.replicas["n1"]
    ahead = sign_tx(P1, CHAIN, "equivalent_injection", 1, net.now + 20_000, injection(0))
    assert isinstance(replica.submit(ahead.raw, net.now), Accepted)
    net.run(2_000)
    assert ahead.txid in replica.app.mempool and replica.store.locate_tx(ahead.txid) is None
    assert "time-out-of-bounds" in (replica.app.mempool.waiting(ahead.txid) or "")
    net.run(17_000)
    assert all(r.store.locate_tx(ahead.txid) is not None for r in net.replicas.values())
    never = sign_tx(P1, CHAIN, "equivalent_injection", 2, net.now + 20_000, injection(0))  # same revision
    assert isinstance(replica.submit(never.raw, net.now), Accepted)
    net.run(1_500)
    for name, r in net.replicas.items():
        assert never.txid not in r.app.mempool, name
        assert "revision must increase" in (r.refusal(never.txid) or ""), name


def injection(revision: int) -> dict[str, int]:
    return {"interval": 1, "injection": 500, "revision": revision}


def test_the_pool_refuses_a_transaction_dated_beyond_the_wait_the_chain_allows(tmp_path: Path) -> None:
    net = LedgerNet(tmp_path, genesis(), AUTHORITIES[:1], seed=1, config=CONFIG)
    replica = net.replicas["n0"]
    too_far = sign_tx(P1, CHAIN, "equivalent_injection", 1, net.now + FUTURE + AGE + 1, injection(0))
    verdict = replica.submit(too_far.raw, net.now)
    assert isinstance(verdict, Rejected) and "ahead of this node's clock" in verdict.reason
    assert len(replica.app.mempool) == 0
    edge = sign_tx(P1, CHAIN, "equivalent_injection", 1, net.now + FUTURE + AGE, injection(0))
    assert isinstance(replica.submit(edge.raw, net.now), Accepted)


def test_a_flood_of_future_dated_transactions_does_not_fill_the_pool() -> None:
    """Many senders each send transactions dated a year ahead: none enters, so the pool keeps room for the
    transactions that can land; a pool without the bound (max_ahead_ms None) fills and refuses them."""
    year = 365 * 24 * 3600 * 1000

    def pool(max_ahead_ms: int | None) -> Mempool:
        def check(tx: bytes) -> TxMeta:
            sender, nonce, time = tx.split(b"/")
            return TxMeta(hashlib.sha256(tx).digest(), sender, int(nonce), int(time))

        return Mempool(check, lambda sender: 0, MempoolLimits(max_txs=1000), max_ahead_ms)

    for bound, entered in ((FUTURE + AGE, 0), (None, 1000)):
        mempool = pool(bound)
        for sender in range(100):
            for nonce in range(20):
                mempool.add(b"s%d/%d/%d" % (sender, nonce, T0 + year), T0)
        assert len(mempool) == entered
        honest = mempool.add(b"honest/0/%d" % T0, T0)
        assert isinstance(honest, Accepted) == (bound is not None), honest


def test_a_later_verdict_takes_no_strike_and_names_what_it_waited_for_when_it_ages_out() -> None:
    nonces: dict[bytes, int] = {}
    pool = Mempool(
        lambda tx: TxMeta(hashlib.sha256(tx).digest(), tx[:1], int(tx[1:])), lambda s: nonces.get(s, 0)
    )
    assert isinstance(pool.add(b"a0", 0), Accepted)
    txid = hashlib.sha256(b"a0").digest()
    verdicts: list[Rejected | Later] = [Later("duplicate: round 2 opens once ...")] * 5
    for _ in range(5):
        assert pool.recheck(lambda tx, is_next: verdicts.pop()) == []
    assert txid in pool and pool.waiting(txid) == "duplicate: round 2 opens once ..."
    too_old = Rejected("time-out-of-bounds: too old to land")
    assert pool.recheck(lambda tx, is_next: too_old) == []  # a strike, as any refusal of a next one
    assert pool.waiting(txid) is not None
    ((gone, reason),) = pool.recheck(lambda tx, is_next: too_old)
    assert gone == txid and txid not in pool and pool.waiting(txid) is None
    assert reason == pool.refusal(txid)
    assert reason.startswith("time-out-of-bounds") and "it waited for a later block: duplicate: " in reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["land", "later", "refuse"]), max_size=12))
def test_only_refusals_running_evict_a_next_transaction_whatever_waits_between(verdicts: list[str]) -> None:
    """The recheck as a state machine over one sender's next transaction: `Later` and None never strike and
    each ends a run of refusals; STRIKES refusals running evict it, naming what it last waited for."""
    pool = Mempool(lambda tx: TxMeta(hashlib.sha256(tx).digest(), b"a", 0), lambda s: 0)
    assert isinstance(pool.add(b"a0", 0), Accepted)
    txid = hashlib.sha256(b"a0").digest()
    verdict_of = {"land": None, "later": Later("duplicate: not open yet"), "refuse": Rejected("refused")}
    running, waited, evicted_at = 0, None, None
    for i, name in enumerate(verdicts):
        gone = pool.recheck(lambda tx, is_next, name=name: verdict_of[name])  # type: ignore[misc]
        running = running + 1 if name == "refuse" else 0
        waited = "duplicate: not open yet" if name == "later" else None if name == "land" else waited
        if running == STRIKES:
            evicted_at = i
            expected = "refused" + ("" if waited is None else "; it waited for a later block: " + waited)
            assert gone == [(txid, expected)] and pool.refusal(txid) == expected
            break
        assert gone == [] and txid in pool
        assert pool.waiting(txid) == waited
    assert (txid in pool) == (evicted_at is None)

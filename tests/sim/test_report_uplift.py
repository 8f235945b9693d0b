"""The testbed report's `uplift` section (`report_uplift`): the balance change of one transaction alone, replayed
from a real store (the block's earlier transactions counted before it, later ones not), what an outcome's
payments say each balance moves by (a part owed as a debt moves nothing), and a lab without a store, or whose
chain holds no uplift, said rather than raised. The section on a settled uplift is read by the day-ahead lab
test (tests/sim/test_closedloop_dayahead.py) on the lab's own chain."""

from __future__ import annotations

import time
from pathlib import Path

from peergrid_ledger import keys
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.results import Accepted
from peergrid_ledger.store import BlockStore
from peergrid_sim.report_uplift import anonym_names, expected_moves, settle_moves, uplift_section

A, B, C, SEALER = (keys.Keypair.generate() for _ in range(4))


def _store(path: Path) -> tuple[BlockStore, list[bytes]]:
    """A payments chain in a real store: block 1 A pays B 100; block 2 B pays C 30, A pays C 5, C pays A 1."""
    genesis = Genesis(
        chain="report-uplift", time=int(time.time() * 1000) - 1000, authorities=(SEALER.public,),
        accounts=tuple(Account(k.public, ("anonym",), n, balance=1000) for k, n in ((A, "a"), (B, "b"), (C, "c"))),
        contracts=("payments",), params=Params(credit_limit=0),
    )  # fmt: skip
    store = BlockStore.create(path, genesis)
    chain = LocalChain(genesis, SEALER, store)
    txids = []
    for block in (((A, B, 100),), ((B, C, 30), (A, C, 5), (C, A, 1))):
        for payer, payee, amount in block:
            result = chain.sign_and_submit(
                payer, "pay", {"payee": payee.public, "amount": amount, "ref": "r"}
            )
            assert isinstance(result, Accepted), result
            txids.append(result.txid)
        chain.seal()
    return store, txids


def test_one_transactions_balance_change_is_replayed_alone(tmp_path: Path) -> None:
    store, txids = _store(tmp_path / "mgmc.db")
    try:
        moves = settle_moves(store, {txids[0]: 1, txids[2]: 2})
    finally:
        store.close()
    assert moves == {txids[0]: {A.public: -100, B.public: 100}, txids[2]: {A.public: -5, C.public: 5}}


def test_an_outcomes_payments_say_what_moves_a_debt_moving_nothing() -> None:
    done = {
        "payments": [[A.public, B.public, 700, 0], [A.public, C.public, 300, 100], [B.public, C.public, 5, 5]]
    }
    assert expected_moves(done) == {A.public: -900, B.public: 700, C.public: 200}
    assert expected_moves({"payments": []}) == {}


def test_a_lab_without_a_store_or_without_an_uplift_says_so(tmp_path: Path) -> None:
    assert uplift_section(tmp_path) == {"sessions": [], "error": "no MGMC chain store in the lab's nodes"}
    (tmp_path / "nodes" / "mgmc-mg1").mkdir(parents=True)
    store, _ = _store(tmp_path / "nodes" / "mgmc-mg1" / "mgmc.db")
    store.close()
    assert uplift_section(tmp_path) == {"sessions": []}  # a chain that never claimed nor settled one
    (tmp_path / "nodes" / "dso").mkdir()
    (tmp_path / "nodes" / "dso" / "mgmc.db").write_text("not a store")  # the DSO's replica first: unreadable
    section = uplift_section(tmp_path)
    assert section["sessions"] == [] and "mgmc.db" in section["error"]


def test_the_lab_anonyms_are_named_by_their_key_files(tmp_path: Path) -> None:
    keys.write_keyfile(tmp_path / "anonym-mg2.key", B)
    (tmp_path / "anonym-mg9.key").write_text("garbage")  # unreadable: left out, the key shown by its hex
    (tmp_path / "anonym-mg8.key").write_text("garbage")
    (tmp_path / "anonym-mg8.key").chmod(0o600)  # private but no key
    assert anonym_names(tmp_path) == {B.public: "mg2"}

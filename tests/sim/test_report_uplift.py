"""The testbed report's `uplift` section (`report_uplift`): the balance change of one transaction alone, replayed
from a real store (the block's earlier transactions counted before it, later ones not), what an outcome's
payments say each balance moves by (a part owed as a debt moves nothing), and a lab without a store, or whose
chain holds no uplift, said rather than raised; and the whole section on a funded uplift settled on a real
chain, with the capacities the DSO posted and each member's bound as the chain checked its claim (the lab's
own day, paid since the DSO posts the lab MGs' capacities, is read by tests/sim/test_closedloop_dayahead.py)."""

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
    assert uplift_section(tmp_path) == {"sessions": [], "capacities": {}}  # never claimed nor settled one
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


def _settled_day(path: Path) -> dict[str, bytes]:
    """A real MGMC-like chain in a store: an exchange session over two intervals (p1 sells 1000 Wh in each, p2
    and p3 buy 600 and 400), cleared; p1 claims a gain of 40,000 micro-units, p2 and p3 surpluses of 30,000 and
    10,000; the buyers settle the four trades on their word; p2 settles the uplift, paying p1 30,000 + 10,000.
    p1's accept states its trading window [36, 37]. Before the session the DSO posts p1's connection capacity
    (1,000 Wh from interval 36: below its 1,000,000-Wh rule) and p3's (500 Wh from 36, then 800 from 37); p2
    has none. The lab's keys directory beside the store names p1..p3 as mg1..mg3."""
    from peergrid_ledger.contracts.market_state import NO_RULES

    dso, p1, p2, p3, sealer = (keys.Keypair.generate() for _ in range(5))
    rules = {**NO_RULES, "max_quantity": 1_000_000}  # a gain is claimed only with a max_quantity rule (U-C)
    genesis = Genesis(
        chain="mgmc-report", time=int(time.time() * 1000) - 60_000, authorities=(sealer.public,),
        accounts=(Account(dso.public, ("dso",), "dso"),
                  *(Account(k.public, ("anonym",), f"anonym-{i}", balance=10**9, rules=rules)
                    for i, k in enumerate((p1, p2, p3)))),
        # nobody prices the cover: the chain's own spread bounds the gain (review18 U-1)
        contracts=("market", "exchange", "uplift"), params=Params(credit_limit=0, uplift_max_spread=250),
    )  # fmt: skip
    (path / "nodes" / "dso").mkdir(parents=True)
    store = BlockStore.create(path / "nodes" / "dso" / "mgmc.db", genesis)
    chain = LocalChain(genesis, sealer, store)
    now = [genesis.time + 1000]

    def send(who: keys.Keypair, kind: str, body: dict[str, object]) -> None:
        now[0] += 10
        result = chain.sign_and_submit(who, kind, body, time_ms=now[0])
        assert isinstance(result, Accepted), (kind, result)
        chain.seal(now[0])

    members, positions = (p1, p2, p3), {p1: [1000, 1000], p2: [-600, -600], p3: [-400, -400]}
    members_key = [k.public for k in members]
    opening = {"session": "day", "first_interval": 36, "members": members_key, "prices": [100_000_000] * 2,
               "rho": 5_000_000}  # fmt: skip
    for k, start, wh in ((p1, 36, 1000), (p3, 36, 500), (p3, 37, 800)):
        send(dso, "market.capacity", {"account": k.public, "from_interval": start, "wh": wh})
    send(dso, "exchange.open", opening)
    for k in members:
        send(k, "exchange.position", {"session": "day", "iteration": 0, "positions": positions[k]})
    send(dso, "exchange.step", {"session": "day", "iteration": 0, "rho": 5_000_000})
    send(dso, "exchange.close", {"session": "day", "iteration": 1})
    for k in members:  # p1 states its trading window (as the edge's first accept does), the others none
        window = {"window": [36, 37]} if k is p1 else {}
        send(k, "exchange.accept", {"session": "day", "positions": positions[k], "clean": False, **window})
    send(dso, "exchange.clear", {"session": "day"})
    for k, gain, surplus in ((p1, 40_000, 0), (p2, 0, 30_000), (p3, 0, 10_000)):
        send(k, "uplift.claim", {"session": "day", "gain": gain, "surplus": surplus})
    from peergrid_ledger import query

    for interval in (36, 37):
        for tid, trade in query.trades(chain.state, interval):
            buyer = p2 if trade["buyer"] == p2.public else p3
            send(buyer, "settle", {"trade": tid, "delivered": trade["quantity"]})
    send(p2, "uplift.settle", {"session": "day"})
    store.close()
    for name, k in (("mg1", p1), ("mg2", p2), ("mg3", p3)):
        keys.write_keyfile(path / "keys" / f"anonym-{name}.key", k)
    return {"mg1": p1.public, "mg2": p2.public, "mg3": p3.public}


def test_a_settled_uplift_on_a_real_chain_is_reported_with_the_balances_it_moved(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    _settled_day(tmp_path)
    [paid] = uplift_section(tmp_path)["sessions"]
    assert paid["claims"] == {
        "mg1": {"gain": 40_000, "surplus": 0},
        "mg2": {"gain": 0, "surplus": 30_000},
        "mg3": {"gain": 0, "surplus": 10_000},
    }
    assert paid["windows"] == {"mg1": [36, 37]}  # a member that stated none is absent: the session's bound
    # each bound: min(max_quantity, capacity) x the genesis spread (nobody priced the cover) per interval
    assert paid["bounds"] == {"mg1": 2 * 1000 * 250, "mg2": 2 * 1_000_000 * 250, "mg3": (500 + 800) * 250}
    assert (paid["settled"], paid["funded"], paid["owed"], paid["surplus"]) == (True, True, 40_000, 40_000)
    assert paid["credits"] == {"mg1": 40_000} and paid["charges"] == {"mg2": 30_000, "mg3": 10_000}
    assert sorted((p["payer"], p["payee"], p["amount"], p["owed"]) for p in paid["payments"]) == [
        ("mg2", "mg1", 30_000, 0), ("mg3", "mg1", 10_000, 0),
    ]  # fmt: skip
    # the settle alone, replayed: not the trades' payments settled in the blocks before it
    assert paid["moved"] == {"mg1": 40_000, "mg2": -30_000, "mg3": -10_000} and paid["balances_match"]
    assert uplift_section(tmp_path)["capacities"] == {"mg1": [[36, 1000]], "mg3": [[36, 500], [37, 800]]}

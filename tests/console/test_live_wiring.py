"""The console wired to the closed loop's DSO node, piece by piece (the browser test runs the whole testbed).

A `loop:` section is checked before the server starts; an interval record from the loop reaches the feeder
view with its alarms; the networked DSO chain tells an operator action the transactions it caused; the
loop's switching plans from the topology the relays confirmed and leaves an operator's change alone when it
wanted none; the market view rebuilds each round's prices, the trades and their settlement from MGMC-chain
blocks and state, with the MGs' costs only where the lab gives the MGMCs' records.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from console.lab_client import lab_client
from peergrid_dso.cli import main as dso_main
from peergrid_dso.config import DsoSettings
from peergrid_dso.services.dso_chain import NetworkedChain

LOOP = {
    "key_file": "/nonexistent/dso.key",
    "dso_chain": {"genesis": "/nonexistent/dso-genesis.json", "data_dir": "/nonexistent/dso.db"},
    "mgs": {"mg1": {"node": "aa" * 32, "anonym": "bb" * 32, "bus": 18}},
}


def test_a_loop_section_is_typed_and_strict() -> None:
    settings = DsoSettings.model_validate({"loop": LOOP})
    assert (
        settings.loop is not None
        and settings.loop.mgmc_chain is None
        and settings.loop.reconfigure_every == 4
    )
    with pytest.raises(ValidationError, match="extra"):
        DsoSettings.model_validate({"loop": LOOP | {"relays": "x"}})
    with pytest.raises(ValidationError):
        DsoSettings.model_validate(
            {"loop": LOOP | {"mgs": {"mg1": {"node": "aa", "anonym": "bb", "bus": 0}}}}
        )


def test_an_unreadable_dso_key_stops_serve_with_one_line(tmp_path: Path, capsys: Any) -> None:
    import yaml

    config = tmp_path / "dso.yaml"
    config.write_text(yaml.safe_dump({"loop": LOOP | {"key_file": str(tmp_path / "absent.key")}}))
    with pytest.raises(SystemExit) as exited:
        dso_main(["serve", "--config", str(config)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "loop.key_file" in err and len(err.splitlines()) == 1


@pytest.fixture
def client(users_file: Path) -> Iterator[TestClient]:
    with lab_client(users_file) as c:
        yield c


def test_an_interval_record_reaches_the_feeder_view(client: TestClient) -> None:
    from console.helpers import PASSWORD

    state = client.app.state.console  # type: ignore[attr-defined]
    record = {
        "interval": 41, "secure": False, "height": 77, "adjustments": [{"mg": "mg5"}],
        "after": {"open": [7, 9, 14, 32, 37], "vmin_pu": 0.89, "violations": ["bus 18: voltage 0.8900 pu"]},
        "plan": {"id": "interval-41", "operations": [{"branch": 7}], "alarm": "branch 7: timeout; rolled back"},
        "unmet": "no adjustment within the MGs' ranges meets vmin",
    }  # fmt: skip
    state.on_interval(record)
    r = client.post("/console/api/login", json={"username": "vera", "password": PASSWORD})
    assert r.status_code == 200
    feeder = client.get("/console/api/feeder").json()
    assert feeder["interval"]["interval"] == 41 and feeder["interval"]["secure"] is False
    assert feeder["interval"]["switch_ops"] == 1 and feeder["interval"]["height"] == 77
    alarms = "\n".join(feeder["alarms"])
    assert "interval 41: bus 18" in alarms and "rolled back" in alarms and "meets vmin" in alarms
    assert state.ops.interval == 42  # operator plans now belong to the next interval
    state.on_interval({"interval": 42, "error": "failed; see the DSO node log"})
    assert "interval 42: the DSO failed" in "\n".join(client.get("/console/api/feeder").json()["alarms"])


def test_a_revocation_that_failed_half_way_is_recorded_and_can_be_repeated(client: TestClient) -> None:
    """The MGMC chain did not answer: the console says so (409, repeat it), the DSO-chain revocations that
    landed are named by an operator_action marked incomplete, and the repeat finishes without resending them."""
    from console.helpers import PASSWORD
    from peergrid_dso.services.dso_chain import ChainRejected
    from peergrid_dso.services.enrolment import enrolment_digest
    from peergrid_ledger.keys import Keypair

    class MgmcChain:
        def __init__(self) -> None:
            self.down, self.records = True, []

        def submit(self, kind: str, body: dict[str, Any]) -> None:
            if self.down:
                raise ChainRejected(f"{kind} rejected: timeout not final in 8.0 s")
            self.records.append((kind, body))

    dso = client.app.state.dso  # type: ignore[attr-defined]
    dso.enrolment.mgmc_recorder = mgmc_chain = MgmcChain()
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    token = dso.enrolment.issue_token()
    sig = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, "mg1"))
    dso.enrolment.request(token, mgmc.public, anonym.public, "mg1", sig)
    r = client.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
    csrf = {"X-CSRF-Token": r.json()["csrf"]}
    r = client.post(f"/console/api/enrolment/{mgmc.public.hex()}/revoke", headers=csrf)
    assert r.status_code == 409 and "incomplete, repeat it" in r.json()["detail"], r.text
    chain = dso.chain
    txs = [tx for h in range(1, chain.height + 1) for tx in chain.block(h).txs]
    revokes = [tx.txid for tx in txs if tx.kind == "gov.revoke"]
    (incomplete,) = [tx for tx in txs if tx.kind == "operator_action"]
    assert (
        "(incomplete)" in incomplete.body["action"]
        and incomplete.body["txs"] == revokes
        and len(revokes) == 2
    )
    mgmc_chain.down = False
    r = client.post(f"/console/api/enrolment/{mgmc.public.hex()}/revoke", headers=csrf)
    assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
    txs = [tx for h in range(1, chain.height + 1) for tx in chain.block(h).txs]
    assert [tx.txid for tx in txs if tx.kind == "gov.revoke"] == revokes  # not sent again
    assert [kind for kind, _ in mgmc_chain.records] == ["gov.revoke", "gov.revoke"]
    assert txs[-1].kind == "operator_action" and txs[-1].body["txs"] == []  # nothing new on the DSO chain


def test_the_loop_no_longer_waits_for_a_revoked_mg() -> None:
    from peergrid_dso.interval_node import DsoLoop
    from peergrid_dso.loop_settings import LoopSettings
    from peergrid_ledger import keyspace

    mgs = {
        mg: {"node": str(i) * 64, "anonym": "bb" * 32, "bus": 18 + i} for i, mg in enumerate(["mg1", "mg2"])
    }
    settings = LoopSettings.model_validate(LOOP | {"mgs": mgs})
    revoked = {keyspace.revoked(bytes.fromhex("1" * 64))}  # mg2's node key, revoked on the DSO chain
    state = SimpleNamespace(get=lambda key: b"x" if key in revoked else None)
    loop = DsoLoop(settings, SimpleNamespace(app=SimpleNamespace(state=state)), *[None] * 9)  # type: ignore[arg-type]
    assert loop.active_mgs() == {"mg1"}


class FakeStore:
    genesis = SimpleNamespace(chain="dso-lab")

    def __init__(self) -> None:
        self.top = 5

    def head_height(self) -> int:
        return self.top

    def locate_tx(self, txid: bytes) -> tuple[int, int]:
        return (self.top, 0)


class FakeAdapter:
    def __init__(self, store: FakeStore) -> None:
        self.store, self.n = store, 0

    def sign_and_submit(self, keypair: Any, kind: str, body: dict[str, Any]) -> Any:
        self.n += 1
        self.store.top += 1
        ok = kind != "refused"
        return SimpleNamespace(ok=ok, txid=bytes([self.n]) * 32, reason="" if ok else "mempool", detail="")


def test_the_networked_chain_tells_each_thread_what_it_caused() -> None:
    store = FakeStore()
    chain = NetworkedChain(FakeAdapter(store), store)
    assert chain.height == 5 and chain.pending == []
    chain.sign_and_submit(None, "switching_plan", {})  # type: ignore[arg-type]
    chain.sign_and_submit(None, "refused", {})  # type: ignore[arg-type]
    other: list[Any] = []
    worker = threading.Thread(target=lambda: other.append(chain.sign_and_submit(None, "enrol", {})))  # type: ignore[arg-type]
    worker.start()
    worker.join()
    assert [tx.txid for tx in chain.pending] == [
        bytes([1]) * 32
    ]  # not the refused one, not the other thread's
    (sealed,) = chain.seal()
    assert sealed.height == 6 and chain.pending == []  # where its own last transaction landed


def test_the_loop_switches_from_the_confirmed_topology_and_leaves_an_operators_change(tmp_path: Path) -> None:
    from peergrid_dso.drivers.relay_memory import InMemoryRelays
    from peergrid_dso.dso_node import LiveTopology, LockedExecutor
    from peergrid_dso.feeder.cases import case33bw
    from peergrid_dso.interval_node import DsoLoop
    from peergrid_dso.services.interval import IntervalPlanner
    from peergrid_dso.services.switching import SwitchingExecutor, SwitchingService

    feeder = case33bw({"mg1": 18})
    initial = feeder.initially_open()
    relays = InMemoryRelays({b.number: b.closed for b in feeder.branches})
    recorded: list[str] = []
    recorder = SimpleNamespace(
        plan=lambda p: recorded.append(p.plan_id), step=lambda *_: None, result=lambda p, steps: None
    )
    lock = threading.RLock()
    switching = SwitchingService(LockedExecutor(SwitchingExecutor(relays, recorder), lock), auto=True)  # type: ignore[arg-type]
    live = LiveTopology(initial)
    loop = DsoLoop(
        None, None, None, None, None, recorder, switching, IntervalPlanner(feeder, initial), None, live, lock
    )  # type: ignore[arg-type]
    injections = {"mg1": (0.1, 0.0)}
    # an operator closed tie 33 and opened branch 7 after the loop's analysis, which wanted no change
    relays.command(33, True)
    relays.command(7, False)
    live.open_set = tuple(sorted((set(initial) - {33}) | {7}))
    plan, result = loop.switch(40, initial, initial, injections)
    assert plan is None and result is None and live.open_set == tuple(sorted((set(initial) - {33}) | {7}))
    # the loop's reconfiguration is planned from what the relays confirmed, not from its analysis
    optimum = (7, 9, 14, 32, 37)
    confirmed = live.open_set
    plan, result = loop.switch(41, optimum, initial, injections)
    assert plan is not None and result.ok and tuple(sorted(plan.from_open)) == confirmed
    assert live.open_set == optimum == loop.planner.open_set
    assert sorted(b for b, closed in relays.closed.items() if not closed) == list(optimum)


def test_the_live_market_rebuilds_rounds_trades_and_costs_from_the_chain(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from peergrid_dso.console.live_market import LiveMarket
    from peergrid_ledger import query

    a, b, c = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32  # anonyms of mg1 (seller), mg2 (seller), mg3 (buyer)

    def tx(kind: str, sender: bytes, **body: Any) -> Any:
        return SimpleNamespace(kind=kind, sender=sender, body=body)

    blocks = [
        [tx("offer", a, interval=40, round=1, price=150, quantity=20_000, clean=True),
         tx("offer", b, interval=40, round=1, price=200, quantity=10_000, clean=False),
         tx("bid", c, interval=40, round=0, demands=[])],
        [tx("move", a, interval=40, round=2, price=180, quantity=20_000),
         tx("move", c, interval=40, round=1, demands=[{"seller": a, "quantity": 5_000}])],
        [tx("move", a, interval=40, round=3, price=180, quantity=20_000), tx("trade", a, interval=40)],
    ]  # fmt: skip
    store = SimpleNamespace(
        head_height=lambda: len(blocks), block=lambda h: SimpleNamespace(txs=blocks[h - 1])
    )
    trade = {"seller": a, "buyer": c, "price": 180, "quantity": 5_000,
             "settlement": {"amount": 180 * 4_000, "delivered": 4_000}}  # fmt: skip
    monkeypatch.setattr(query, "trades", lambda state, t: [(b"t" * 32, trade)] if t == 40 else [])
    records = tmp_path / "records"
    records.mkdir()
    (records / "mgmc-mg1.jsonl").write_text(
        json.dumps({"interval": 40, "cost_p2p": -1.0, "cost_conventional": -0.5, "p2p_money": 0.72}) + "\n"
        + json.dumps({"interval": 41, "error": "failed"}) + "\n{half a li",
    )  # fmt: skip
    from peergrid_ledger.contracts import market_state

    monkeypatch.setattr(market_state, "reopening", lambda state, t: None)
    genesis = SimpleNamespace(params=SimpleNamespace(max_rounds=0))
    replica = SimpleNamespace(store=store, app=SimpleNamespace(state=None, genesis=genesis))
    names = {a.hex(): "mg1", b.hex(): "mg2", c.hex(): "mg3"}
    market = LiveMarket(replica, lambda fn: fn(), names, 0.25, records).report()
    assert market["status"] == "ready" and "MGMC chain" in market["source"]
    (iv,) = market["intervals"]
    assert iv["interval"] == 40 and iv["hours"] == [10.0, 10.25] and iv["rounds"] == 3 and iv["closed"]
    assert iv["converged"]  # round 3 repeats round 2
    assert iv["round_cap"] is None and iv["reopened_at"] is None  # the genesis sets no cap; never reopened
    by_round = {(p["round"], p["seller"]): p["price"] for p in iv["prices"]}
    assert by_round == {(1, "mg1"): 0.15, (1, "mg2"): 0.2, (2, "mg1"): 0.18, (2, "mg2"): 0.2,
                        (3, "mg1"): 0.18, (3, "mg2"): 0.2}  # fmt: skip
    assert iv["trades"] == [{"seller": "mg1", "buyer": "mg3", "quantity_kwh": 5.0, "price": 0.18}]
    assert iv["settlements"] == [
        {"seller": "mg1", "buyer": "mg3", "delivered_kwh": 4.0, "amount": 0.72, "ok": True}
    ]
    assert iv["cost_p2p"] == {"mg1": -1.0} and iv["cost_conventional"] == {"mg1": -0.5}
    # the buyer mg3 has not written its record yet: no welfare of the seller alone (U2)
    # (mg2, which traded nothing, is named too: its figure is not in either)
    assert iv["welfare"] == {
        "p2p": None, "conventional": None, "central": None, "waiting": ["mg2", "mg3"], "missing": {},
        "partial": False,
    }  # fmt: skip
    (records / "mgmc-mg3.jsonl").write_text(
        json.dumps({"interval": 40, "cost_p2p": 2.0, "cost_conventional": 2.5, "p2p_money": -0.72}) + "\n"
    )
    (records / "mgmc-mg2.jsonl").write_text(
        json.dumps({"interval": 40, "cost_p2p": 0.0, "cost_conventional": 0.0, "p2p_money": 0.0}) + "\n"
    )  # sold nothing, costs nothing
    (iv,) = LiveMarket(replica, lambda fn: fn(), names, 0.25, records).report()["intervals"]
    # physical cost: mg1 -1.0 + 0.72, mg3 2.0 - 0.72; conventional -0.5 + 2.5
    assert iv["welfare"] == {
        "p2p": -1.0, "conventional": -2.0, "central": None, "waiting": [], "missing": {}, "partial": False
    }  # fmt: skip
    pilot = LiveMarket(replica, lambda fn: fn(), names, 0.25, None).report()
    assert pilot["intervals"][0]["cost_p2p"] == {} and "private" in pilot["source"]


def test_the_live_market_gives_the_chains_round_cap_and_where_a_reopened_interval_went_on(
    monkeypatch: Any,
) -> None:
    from peergrid_dso.console.live_market import LiveMarket
    from peergrid_ledger import query
    from peergrid_ledger.contracts import market_state

    a, c = b"\x0a" * 32, b"\x0c" * 32  # anonyms of mg1 (seller) and mg3 (buyer)

    def tx(kind: str, sender: bytes, **body: Any) -> Any:
        return SimpleNamespace(kind=kind, sender=sender, body=body)

    # interval 40 closed after the cap's 2 rounds, reopened at round 2 and closed again after 2 more
    blocks = [
        [tx("offer", a, interval=40, round=1, price=150, quantity=20_000, clean=True)],
        [tx("move", a, interval=40, round=2, price=160, quantity=20_000), tx("trade", a, interval=40)],
        [tx("move", a, interval=40, round=3, price=170, quantity=20_000)],
        [tx("move", a, interval=40, round=4, price=175, quantity=20_000), tx("trade", a, interval=40)],
        [tx("offer", a, interval=41, round=1, price=150, quantity=20_000, clean=True)],
    ]  # fmt: skip
    store = SimpleNamespace(
        head_height=lambda: len(blocks), block=lambda h: SimpleNamespace(txs=blocks[h - 1])
    )
    trade = {"seller": a, "buyer": c, "price": 175, "quantity": 5_000}
    monkeypatch.setattr(query, "trades", lambda state, t: [(b"t" * 32, trade)] if t == 40 else [])
    monkeypatch.setattr(
        market_state, "reopening", lambda state, t: {"round": 2, "reopens": 1} if t == 40 else None
    )
    genesis = SimpleNamespace(params=SimpleNamespace(max_rounds=2))
    replica = SimpleNamespace(store=store, app=SimpleNamespace(state=None, genesis=genesis))
    names = {a.hex(): "mg1", c.hex(): "mg3"}
    reopened, still_open = LiveMarket(replica, lambda fn: fn(), names, 0.25).report()["intervals"]
    assert (reopened["rounds"], reopened["round_cap"], reopened["reopened_at"]) == (4, 2, 2)
    assert (
        not reopened["converged"] and reopened["closed"]
    )  # prices still moved in round 4: the cap stopped it
    assert (still_open["rounds"], still_open["round_cap"], still_open["reopened_at"]) == (1, 2, None)
    assert not still_open["closed"] and still_open["trades"] == []

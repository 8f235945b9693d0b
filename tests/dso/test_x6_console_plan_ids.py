"""The console's plan ids outlive a restart of `peergrid-dso serve` in live mode (X6).

The real path: the server with a `loop:` section (the DSO node on its own thread, a persistent DSO-chain store,
a real Mosquitto), an operator's manual switching in its first life, the server stopped and started again on
the same store, the same manual switching again. Before: the console counted `manual-N` from 1 in each life,
so the second life's `switching_plan` reused `manual-1 by olga`, the chain refused it as a duplicate, and the
route answered 500 - manual switching and plan approval blocked after every restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from console.helpers import PASSWORD, USERS, fast_hasher
from fastapi.testclient import TestClient

from peergrid_dso.app import create_app
from peergrid_dso.auth.users import UserStore
from peergrid_dso.config import DsoSettings
from peergrid_ledger import keys, query
from peergrid_ledger.genesis import Account, Genesis


def settings_doc(tmp_path: Path, broker: Any) -> dict[str, Any]:
    dso, mgmc, anonym = keys.Keypair.generate(), keys.Keypair.generate(), keys.Keypair.generate()
    keys.write_keyfile(tmp_path / "dso.key", dso)
    genesis = Genesis(
        chain="dso-x6", time=int(time.time() * 1000) - 1000, authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(mgmc.public, ("mgmc",), "mg1")),
    )  # fmt: skip
    (tmp_path / "dso-genesis.json").write_text(json.dumps(genesis.to_json()))
    users = tmp_path / "users.json"
    store = UserStore(users, hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    return {
        "node_id": "dso",
        "broker": {"host": broker.host, "port": broker.port},
        "console": {"users_file": str(users), "lab_market": False, "lab_drift": False},
        "loop": {
            "key_file": str(tmp_path / "dso.key"),
            "dso_chain": {"genesis": str(tmp_path / "dso-genesis.json"), "data_dir": str(tmp_path / "dso.db"),
                          "block_period_ms": 200},
            "mgs": {"mg1": {"node": mgmc.public.hex(), "anonym": anonym.public.hex(), "bus": 18}},
            "intervals": 1,
        },
    }  # fmt: skip


@contextmanager
def serving(doc: dict[str, Any]) -> Iterator[TestClient]:
    """One life of the server: started with its DSO node, stopped (the node's stores closed) on leaving."""
    app = create_app(DsoSettings.model_validate(doc), listen=False)
    # a server error is the 500 a browser gets, not an exception in the test
    with TestClient(app, base_url="http://127.0.0.1:8080", raise_server_exceptions=False) as client:
        yield client


def login(client: TestClient) -> dict[str, str]:
    answer = client.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
    return {"X-CSRF-Token": answer.json()["csrf"]}


def close_tie(client: TestClient, branch: int) -> Any:
    csrf = login(client)
    preview = client.post(f"/console/api/switches/{branch}/preview", headers=csrf, json={"close": True})
    assert preview.status_code == 200 and preview.json()["confirm"], preview.text
    return client.post(f"/console/api/switches/{branch}/operate", headers=csrf,
                       json={"close": True, "confirm": preview.json()["confirm"]})  # fmt: skip


def recorded_plan(client: TestClient, plan_id: str) -> Any:
    loop: Any = client.app.state.loop  # type: ignore[attr-defined]
    return loop.call(lambda: query.switching_plan(loop.node.replica.app.state, plan_id))


def test_manual_switching_goes_again_after_a_restart_on_the_same_chain(
    tmp_path: Path, mosquitto: Any
) -> None:
    doc = settings_doc(tmp_path, mosquitto)
    with serving(doc) as client:
        first = close_tie(client, 33)
        assert first.status_code == 200 and first.json()["ok"], first.text
        first_plan = first.json()["plan"]
        assert recorded_plan(client, first_plan) is not None
    # a restart: the relays are in memory, so they start open again where the feeder says; the chain persists
    with serving(doc) as client:
        again = close_tie(client, 33)
        assert again.status_code == 200, again.text  # before: 500 (switching_plan rejected: duplicate)
        body = again.json()
        assert body["ok"] and body["plan"] != first_plan and body["plan"].endswith(" by olga")
        assert recorded_plan(client, body["plan"]) is not None
        assert recorded_plan(client, first_plan) is not None  # the first life's record is still there

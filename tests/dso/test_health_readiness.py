"""`/api/health` says what the DSO node knows is final of its start's postings (D10): the MGs `enrolled` on the
DSO chain and `tariffs_through`, the last interval through which every configured MG's cover prices are final
on the MGMC chain (null while the loop's first is not, or when it prices nothing).

Over real states (`LocalChain`s: the DSO chain with core `enrol` and `gov.revoke`, the MGMC chain with the
market contract's `market.tariff` posted by the real `CoverPricer`), `start_postings.readiness` of a node made of those;
`EmbeddedLoop.readiness` on a running event loop (read there, the scan going on from its last answer, nothing
from a node that is not running); and the route's loop section, the fields beside `running` and `interval`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from peergrid_dso.live import EmbeddedLoop
from peergrid_dso.start_postings import readiness, tariffs_through
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.keys import Keypair

from .test_tariff_pricer import NOW_MS, Lab

MGS = ("mg1", "mg2")
FIRST, END = 36, 40


class Node:
    """What `readiness` reads of a `DsoNode`: its config's MGs, its DSO-chain replica, its loop's pricer."""

    def __init__(self, pricing: bool = True) -> None:
        self.lab = Lab(MGS, by_both=pricing)
        self.dso = Keypair.generate()
        self.mgmcs = {mg: Keypair.generate() for mg in MGS}
        genesis = Genesis(
            chain="dso-test", time=0, authorities=(self.dso.public,),
            accounts=(Account(self.dso.public, ("dso",), "dso"),
                      *(Account(k.public, ("mgmc",), mg) for mg, k in self.mgmcs.items())),
        )  # fmt: skip
        self.dso_chain = LocalChain(genesis, sealer=self.dso)
        entries = {
            mg: SimpleNamespace(node=self.mgmcs[mg].public.hex(), anonym=self.lab.anonyms[mg].public.hex())
            for mg in MGS
        }
        self.settings = SimpleNamespace(mgs=entries)
        self.replica = SimpleNamespace(app=SimpleNamespace(state=self.dso_chain.state))
        self.pricer = self.lab.pricer(FIRST, END)
        self.loop = SimpleNamespace(pricer=self.pricer, current=None)

    def dso_tx(self, kind: str, body: dict[str, Any]) -> None:
        assert self.dso_chain.sign_and_submit(self.dso, kind, body).ok
        self.dso_chain.seal()
        self.replica.app.state = self.dso_chain.state

    def enrol(self, mg: str) -> None:
        anonym = self.lab.anonyms[mg].public
        self.dso_tx("enrol", {"mgmc": self.mgmcs[mg].public, "anonym": anonym, "label": mg})

    def price(self, mg: str, first: int, count: int) -> None:
        body = self.lab.tariff.body(mg, self.lab.anonyms[mg].public, range(first, first + count))
        assert self.lab.chain.sign_and_submit(self.lab.dso, "market.tariff", body, NOW_MS).ok
        self.lab.chain.seal(NOW_MS)
        self.lab.adapter._app.state = self.lab.chain.state


def test_the_mgs_enrolled_are_those_final_on_the_dso_chain_and_not_revoked() -> None:
    node = Node()
    assert readiness(node) == {"enrolled": [], "pricing": True, "tariffs_through": None}  # type: ignore[arg-type]
    node.enrol("mg2")
    assert readiness(node)["enrolled"] == ["mg2"]  # type: ignore[arg-type]
    node.enrol("mg1")
    assert readiness(node)["enrolled"] == ["mg1", "mg2"]  # type: ignore[arg-type]
    node.dso_tx("gov.revoke", {"key": node.mgmcs["mg1"].public, "operator": "olga"})
    assert readiness(node)["enrolled"] == ["mg2"]  # type: ignore[arg-type]  # revoked: no longer enrolled


def test_tariffs_through_is_the_last_interval_every_mg_is_priced_through_from_the_first() -> None:
    node = Node()
    state = lambda: node.lab.chain.state  # noqa: E731
    accounts = [node.lab.anonyms[mg].public for mg in MGS]
    assert tariffs_through(state(), accounts, FIRST, END) is None
    node.price("mg1", FIRST, 4)
    assert tariffs_through(state(), accounts, FIRST, END) is None  # mg2 is not priced for the first yet
    node.price("mg2", FIRST + 1, 3)
    assert tariffs_through(state(), accounts, FIRST, END) is None  # nor now: its first interval is missing
    node.price("mg2", FIRST, 1)
    assert (
        tariffs_through(state(), accounts, FIRST, END) == END - 1
    )  # all four, and never past the loop's end
    assert tariffs_through(state(), accounts, FIRST, END - 2) == END - 3
    assert tariffs_through(state(), accounts[:1], FIRST + 4, END + 4) is None  # nothing from 40 on
    # from an earlier answer the scan goes on there: what lies before it is not read again
    assert tariffs_through(state(), accounts, FIRST, END, known=FIRST + 1) == END - 1
    assert (
        tariffs_through(SimpleNamespace(), accounts, FIRST, END, known=END - 1) == END - 1
    )  # (reads nothing)
    gap = Node()
    gap.price("mg1", FIRST, 4)
    gap.price("mg2", FIRST, 2)
    gap.price("mg2", FIRST + 3, 1)
    assert readiness(gap)["tariffs_through"] == FIRST + 1  # type: ignore[arg-type]  # 38 not priced for mg2


def test_a_node_that_prices_nothing_says_so_and_no_interval() -> None:
    node = Node(pricing=False)  # an MGMC chain that does not settle by both: the pricer posts nothing
    node.enrol("mg1")
    assert readiness(node) == {"enrolled": ["mg1"], "pricing": False, "tariffs_through": None}  # type: ignore[arg-type]
    node.loop.pricer = None  # no tariff file
    assert readiness(node)["pricing"] is False  # type: ignore[arg-type]


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def embedded(node: Node, loop: asyncio.AbstractEventLoop) -> EmbeddedLoop:
    """An `EmbeddedLoop` whose node runs on `loop` (its thread stands for the node's own)."""
    embedded = EmbeddedLoop.__new__(EmbeddedLoop)
    embedded.node, embedded._loop, embedded._error, embedded._priced_through = node, loop, None, None
    embedded._thread = threading.current_thread()  # alive
    return embedded


def test_the_embedded_loop_reads_it_on_the_nodes_loop_and_goes_on_from_its_last_answer(
    running_loop: asyncio.AbstractEventLoop,
) -> None:
    node = Node()
    node.enrol("mg1")
    for mg in MGS:
        node.price(mg, FIRST, 2)
    live = embedded(node, running_loop)
    threads = []
    real = node.pricer.settles_by_both

    def on_which_thread() -> bool:
        threads.append(threading.current_thread())
        return real()

    node.pricer.settles_by_both = on_which_thread  # type: ignore[method-assign]
    assert live.readiness() == {"enrolled": ["mg1"], "pricing": True, "tariffs_through": FIRST + 1}
    assert threads and threads[0] is not threading.current_thread()  # read on the node's event loop
    assert live._priced_through == FIRST + 1
    for mg in MGS:
        node.price(mg, FIRST + 2, 2)
    assert live.readiness()["tariffs_through"] == END - 1  # type: ignore[index]
    live._error = RuntimeError("the node died")
    assert live.readiness() is None  # not running: nothing to say


def test_health_carries_the_fields_in_its_loop_section(tmp_path: Path) -> None:
    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(tmp_path / "users.json"), "lab_market": False, "lab_drift": False}}
    )
    answers: list[dict[str, Any] | None] = [
        {"enrolled": ["mg1", "mg2"], "pricing": True, "tariffs_through": 37},
        None,  # too busy to answer in time: the fields are left out, the rest stands
    ]
    fake = SimpleNamespace(
        running=True, node=SimpleNamespace(loop=SimpleNamespace(current=36)), start_alarm=None
    )
    fake.readiness = lambda timeout: answers.pop(0)  # the route bounds its wait
    with TestClient(create_app(settings, listen=False), base_url="http://127.0.0.1:8080") as client:
        assert client.get("/api/health").json().get("loop") is None  # no loop section: no loop
        client.app.state.loop = fake  # type: ignore[attr-defined]
        doc = client.get("/api/health").json()
        assert doc["status"] == "ok" and doc["loop"] == {
            "running": True, "interval": 36, "start_alarm": None, "relay_alarm": None,
            "enrolled": ["mg1", "mg2"], "pricing": True,
            "tariffs_through": 37,
        }  # fmt: skip
        assert client.get("/api/health").json()["loop"] == {
            "running": True,
            "interval": 36,
            "start_alarm": None,
            "relay_alarm": None,
        }
        client.app.state.loop = None  # type: ignore[attr-defined]

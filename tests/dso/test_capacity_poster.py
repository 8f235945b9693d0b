"""The DSO node posts each MG's connection capacity (`tariff.CapacityPoster`, `market.capacity`) against a real
market and uplift contract on a `LocalChain` standing in for its non-voting MGMC-chain replica: the figure its
`loop.mgs` entry names (kW -> Wh per interval, rounded up), from the first interval after the anonym's last
traded one, once (a restart sends nothing), again where the config changed; refused: logged, not sent again;
not final: sent again; nothing on a chain without the uplift contract; a bad figure stops the start."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.loop_settings import MgEntry
from peergrid_dso.node_chains import Submitted
from peergrid_dso.tariff import CapacityPoster, capacity_wh
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Rejected
from peergrid_ledger.settings import ConfigError

NOW_MS = 10**12


class Adapter:
    """`ChainAdapter` over a LocalChain: submits and seals a block (final at once); `stall`: a timeout. Takes
    `kind` only."""

    kind = "market.capacity"

    def __init__(self, local: LocalChain) -> None:
        self.chain, self.local = "mgmc", local
        self._app = SimpleNamespace(genesis=local.genesis, state=local.state)
        self.node = SimpleNamespace(replicas={"mgmc": SimpleNamespace(app=self._app)})
        self.sent: list[dict[str, Any]] = []
        self.stall = False

    async def submit(
        self, key: Keypair, kind: str, body: dict[str, Any], precheck: bool = False
    ) -> Submitted:
        assert kind == self.kind and precheck
        self.sent.append(dict(body))
        if self.stall:
            return Submitted(False, "timeout", f"{kind} not final in 8 s")
        result = self.local.sign_and_submit(key, kind, body, NOW_MS)
        if result.ok:
            self.local.seal(NOW_MS)
        self._app.state = self.local.state
        if isinstance(result, Rejected):
            return Submitted(False, "refused", f"{result.reason.value}: {result.detail}")
        return Submitted(True, txid=result.txid)


class Lab:
    def __init__(
        self, contracts: tuple[str, ...] = ("market", "exchange", "uplift"), dso_role: str = "dso"
    ) -> None:
        self.dso, self.authority = Keypair.generate(), Keypair.generate()
        self.anonyms = {mg: Keypair.generate() for mg in ("mg1", "mg2")}
        genesis = Genesis(
            chain="mgmc", time=0, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, (dso_role,)),
                      *(Account(k.public, ("anonym",)) for k in self.anonyms.values())),
            contracts=contracts, params=Params(),
        )  # fmt: skip
        self.chain = LocalChain(genesis, self.authority)
        self.adapter = Adapter(self.chain)

    def settings(self, kw: dict[str, float | None], first: int = 36, minutes: float = 15.0) -> Any:
        mgs = {
            mg: MgEntry(node="00" * 32, anonym=k.public.hex(), bus=2, capacity_kw=kw.get(mg))
            for mg, k in self.anonyms.items()
        }
        return SimpleNamespace(mgs=mgs, interval_minutes=minutes, first_interval=first)

    def poster(self, kw: dict[str, float | None], first: int = 36) -> CapacityPoster:
        self.adapter._app.state = self.chain.state
        poster = CapacityPoster.from_settings(self.settings(kw, first), self.adapter, self.dso)
        assert poster is not None
        return poster

    def standing(self, mg: str, t: int) -> int | None:
        return market.capacity(self.chain.state, self.anonyms[mg].public, t)


def run(poster: CapacityPoster, stop_after: float = 5.0) -> None:
    async def go() -> None:
        await asyncio.wait_for(poster.run(asyncio.Event()), stop_after)

    asyncio.run(go())


def test_each_named_capacity_is_posted_once_from_the_loops_first_interval_and_a_restart_sends_nothing() -> (
    None
):
    lab = Lab()
    run(lab.poster({"mg1": 5.0, "mg2": None}))  # mg2 names none: nothing posted for it
    assert lab.adapter.sent == [{"account": lab.anonyms["mg1"].public, "from_interval": 36, "wh": 1250}]
    assert (lab.standing("mg1", 35), lab.standing("mg1", 36), lab.standing("mg1", 10**6)) == (
        None,
        1250,
        1250,
    )
    assert lab.standing("mg2", 36) is None
    run(lab.poster({"mg1": 5.0}))  # the restart reads the chain
    assert len(lab.adapter.sent) == 1


def test_a_changed_capacity_stands_from_the_interval_after_the_anonyms_last_traded_one() -> None:
    lab = Lab()
    run(lab.poster({"mg1": 5.0}))
    seller = lab.anonyms["mg1"]
    lab.chain.sign_and_submit(seller, "offer", {"interval": 40, "round": 1, "price": 100, "quantity": 10,
                                                "clean": True}, NOW_MS)  # fmt: skip
    lab.chain.seal(NOW_MS)
    run(lab.poster({"mg1": 2.0}))
    assert lab.adapter.sent[-1] == {"account": seller.public, "from_interval": 41, "wh": 500}
    assert [lab.standing("mg1", t) for t in (40, 41)] == [1250, 500]


def test_nothing_is_posted_on_a_chain_without_the_uplift_contract() -> None:
    lab = Lab(contracts=("market",))
    run(lab.poster({"mg1": 5.0, "mg2": 3.0}))
    assert lab.adapter.sent == []


def test_a_refused_capacity_is_logged_once_and_not_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(dso_role="mgmc")  # the node's key lacks the dso role: the chain refuses it
    poster = lab.poster({"mg1": 5.0})
    with caplog.at_level(logging.ERROR, "peergrid_dso.tariff"):
        run(poster)
        run(poster)
    assert len(lab.adapter.sent) == 1
    assert [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()] == [
        "the MGMC chain refuses mg1's connection capacity (1250 Wh from interval 36): forbidden: "
        "market.capacity needs one of the roles ['dso']; not sent again"
    ]


def test_one_not_final_in_time_is_sent_again_with_the_same_body() -> None:
    lab = Lab()
    poster = lab.poster({"mg1": 5.0})
    lab.adapter.stall = True
    assert asyncio.run(poster.post()) is False
    lab.adapter.stall = False
    assert asyncio.run(poster.post()) is True
    assert lab.adapter.sent[0] == lab.adapter.sent[1]
    assert lab.standing("mg1", 36) == 1250


def test_kw_become_wh_per_interval_rounded_up_and_a_bad_figure_is_a_config_error() -> None:
    assert capacity_wh(5.0, 15.0, "x") == 1250  # not 1251 from float noise
    assert capacity_wh(0.1, 15.0, "x") == 25
    assert capacity_wh(0.0001, 1.0, "x") == 1  # 0.0017 Wh: rounded up, never 0
    with pytest.raises(
        ConfigError,
        match=r"loop.mgs.mg1.capacity_kw: 1000000000000.0 kW is 250000000000000 Wh per interval, outside",
    ):
        CapacityPoster.from_settings(Lab().settings({"mg1": 1e12}), None, Keypair.generate())
    with pytest.raises(ValueError, match="greater than 0"):
        MgEntry(node="00" * 32, anonym="00" * 32, bus=2, capacity_kw=0)
    with pytest.raises(ValueError, match="finite"):
        MgEntry(node="00" * 32, anonym="00" * 32, bus=2, capacity_kw=float("inf"))
    assert CapacityPoster.from_settings(Lab().settings({}), None, Keypair.generate()) is None

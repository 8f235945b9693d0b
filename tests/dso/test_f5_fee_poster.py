"""The DSO posts the exchange fee its config names (`loop.exchange_fee`, `fee_poster.FeePoster`) as `market.fee` on
the MGMC chain (review39 R39-3: nothing in peergrid could post one). Against a real market/exchange/uplift
contract on a `LocalChain` standing in for the node's non-voting MGMC-chain replica, as the capacity poster's
tests: posted once, a restart posts nothing, a changed config posts again, a config that is the genesis' posts
nothing; refused by the chain: logged once, not sent again; not final: sent again. A bad entry stops the load
with the chain's own words (`market_fee.check_fee`), naming the key; a chain without the uplift contract stops
the start. `/api/health`'s loop section says the fee standing (`start_postings.readiness`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_dso.fee_poster import FeePoster
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.node_chains import Submitted
from peergrid_dso.start_postings import readiness
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts.market_fee import fee_in_force
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError, load_settings

from .test_capacity_poster import Adapter

TICK = 10**6  # nano-currency per kWh: 1 micro-unit per Wh


class FeeAdapter(Adapter):
    """The capacity tests' adapter over a LocalChain, for `market.fee`."""

    kind = "market.fee"


class Lab:
    """An MGMC chain whose genesis names the DSO (`dso_role`), two MGs' anonyms and, optionally, a fee."""

    def __init__(
        self,
        contracts: tuple[str, ...] = ("market", "exchange", "uplift"),
        dso_role: str = "dso",
        genesis_fee: tuple[int, int, str] | None = None,  # fee, cap, coordinator MG
    ) -> None:
        self.dso, self.authority = Keypair.generate(), Keypair.generate()
        self.anonyms = {mg: Keypair.generate() for mg in ("mg1", "mg2")}
        fee, cap, coordinator = genesis_fee or (0, 0, "")
        genesis = Genesis(
            chain="mgmc", time=0, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, (dso_role,)),
                      *(Account(k.public, ("anonym",)) for k in self.anonyms.values())),
            contracts=contracts, params=Params(exchange_fee=fee, uplift_fund_cap=cap),
            fee_coordinators=(self.anonyms[coordinator].public,) if coordinator else (),
        )  # fmt: skip
        self.chain = LocalChain(genesis, self.authority)
        self.adapter = FeeAdapter(self.chain)

    def doc(self, entry: dict[str, Any] | None) -> dict[str, Any]:
        """The loop section naming the two MGs (their anonyms this chain's) and `entry` as its exchange fee."""
        chain = {"genesis": "g.json", "data_dir": "db"}
        mgs = {mg: {"node": Keypair.generate().public.hex(), "anonym": k.public.hex(), "bus": 2 + i}
               for i, (mg, k) in enumerate(self.anonyms.items())}  # fmt: skip
        doc = {"key_file": "dso.key", "dso_chain": chain, "mgmc_chain": chain, "mgs": mgs}
        return doc | ({"exchange_fee": entry} if entry is not None else {})

    def settings(self, entry: dict[str, Any] | None) -> IntervalNodeSettings:
        return IntervalNodeSettings.model_validate(self.doc(entry))

    def poster(self, entry: dict[str, Any]) -> FeePoster:
        self.adapter._app.state = self.chain.state
        poster = FeePoster.from_settings(self.settings(entry), self.adapter, self.dso)
        assert poster is not None
        return poster

    def node_loop(self, entry: dict[str, Any] | None) -> Any:
        """The DSO node's loop (`DsoLoop`) of `entry`, following this chain with the DSO's key: what it builds
        at start."""
        from peergrid_dso.interval_node import DsoLoop

        none: Any = None
        s = self.settings(entry)
        return DsoLoop(s, none, none, none, none, none, none, none, self.dso, none, none, mgmc=self.adapter)

    def standing(self) -> tuple[int, int]:
        return fee_in_force(self.chain.state, self.chain.genesis.params)


def run(poster: FeePoster) -> None:
    asyncio.run(asyncio.wait_for(poster.run(asyncio.Event()), 5.0))


ONE_TICK = {"fee": TICK, "fund_cap": 50_000, "coordinators": ["mg1"]}


def test_the_configured_fee_is_posted_once_a_restart_posts_nothing_and_a_changed_one_posts_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lab = Lab()
    with caplog.at_level(logging.INFO, "peergrid_dso.fee_poster"):
        run(lab.poster(ONE_TICK))
        coordinator = lab.anonyms["mg1"].public
        assert lab.adapter.sent == [{"fee": TICK, "fund_cap": 50_000, "coordinators": [coordinator]}]
        assert lab.standing() == (TICK, 50_000)
        run(lab.poster(ONE_TICK))  # the restart reads the chain
        assert len(lab.adapter.sent) == 1
        run(lab.poster({"fee": 2 * TICK, "fund_cap": 0, "coordinators": ["mg2", "mg1"]}))
    assert lab.adapter.sent[-1] == {"fee": 2 * TICK, "fund_cap": 0, "coordinators": sorted(
        k.public for k in lab.anonyms.values())}  # fmt: skip
    assert lab.standing() == (2 * TICK, 0)
    assert [r.getMessage() for r in caplog.records] == [
        "market.fee posted on the MGMC chain: an exchange fee of 1,000,000 nano-currency per kWh per side (1 "
        "micro-unit/Wh), fund cap 50,000 micro-units, coordinators mg1, for the day-ahead sessions opened "
        "from now on",
        "the MGMC chain's standing exchange fee is the config's, an exchange fee of 1,000,000 nano-currency per "
        "kWh per side (1 micro-unit/Wh), fund cap 50,000 micro-units, coordinators mg1: nothing posted",
        "market.fee posted on the MGMC chain: an exchange fee of 2,000,000 nano-currency per kWh per side (2 "
        "micro-unit/Wh), fund cap 0 micro-units, coordinators mg1, mg2, for the day-ahead sessions opened "
        "from now on",
    ]


def test_a_changed_coordinator_alone_posts_again_and_a_fee_of_0_ends_the_fee() -> None:
    lab = Lab()
    run(lab.poster(ONE_TICK))
    run(lab.poster(ONE_TICK | {"coordinators": ["mg2"]}))
    assert lab.adapter.sent[-1]["coordinators"] == [lab.anonyms["mg2"].public]
    run(lab.poster({"fee": 0}))
    assert lab.adapter.sent[-1] == {"fee": 0, "fund_cap": 0} and lab.standing() == (0, 0)
    assert len(lab.adapter.sent) == 3


def test_the_genesis_fee_stands_until_a_config_says_otherwise() -> None:
    lab = Lab(genesis_fee=(3 * TICK, 7, "mg2"))
    run(lab.poster({"fee": 3 * TICK, "fund_cap": 7, "coordinators": ["mg2"]}))  # the genesis' own
    assert lab.adapter.sent == []
    assert Lab().poster({"fee": 0}).due() is False  # no fee in the genesis, none configured
    run(lab.poster({"fee": 0}))  # the DSO ends the genesis' fee
    assert lab.adapter.sent == [{"fee": 0, "fund_cap": 0}] and lab.standing() == (0, 0)


def test_a_refused_fee_is_logged_once_and_not_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(dso_role="mgmc")  # the node's key lacks the dso role: the chain refuses it
    poster = lab.poster(ONE_TICK)
    with caplog.at_level(logging.ERROR, "peergrid_dso.fee_poster"):
        run(poster)
        run(poster)
    assert len(lab.adapter.sent) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "the MGMC chain refuses market.fee (an exchange fee of 1,000,000 nano-currency per kWh per side (1 "
        "micro-unit/Wh), fund cap 50,000 micro-units, coordinators mg1): forbidden: market.fee needs one of "
        "the roles ['dso']; not sent again"
    ]


def test_one_not_final_in_time_is_sent_again_with_the_same_body() -> None:
    lab = Lab()
    poster = lab.poster(ONE_TICK)
    lab.adapter.stall = True
    assert asyncio.run(poster.post()) is False
    lab.adapter.stall = False
    assert asyncio.run(poster.post()) is True
    assert lab.adapter.sent[0] == lab.adapter.sent[1] and lab.standing() == (TICK, 50_000)


def test_a_first_not_final_is_told_at_info_and_a_second_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    """As the capacities and enrolments: the MGMC chain makes no block until its MGMCs run, which the lab starts
    after the DSO, so a first post not final in the wait is the start's course; a second is worth a WARNING."""
    lab = Lab()
    poster = lab.poster(ONE_TICK)
    lab.adapter.stall = True
    with caplog.at_level(logging.INFO, "peergrid_dso.fee_poster"):
        assert asyncio.run(poster.post()) is False
        assert asyncio.run(poster.post()) is False
    told = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
    assert told == [("INFO", "market.fee not final yet"), ("WARNING", "market.fee not final yet")]


def test_one_that_lands_after_the_wait_is_told_as_posted_not_as_nothing_posted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R40-1: the adapter gave up waiting (not final) but the post landed; the next pass finds it standing and
    says it was posted, not 'nothing posted' (which told the operator after the WARNING that it never was)."""
    lab = Lab()
    poster = lab.poster(ONE_TICK)
    stall = lab.adapter.submit

    async def lands_late(*args: Any, **kwargs: Any) -> Submitted:
        lab.adapter.submit = stall  # type: ignore[method-assign]
        await stall(*args, **kwargs)  # it lands on the chain ...
        return Submitted(False, "timeout", "market.fee not final in 8 s")  # ... after the adapter's wait

    lab.adapter.submit = lands_late  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, "peergrid_dso.fee_poster"):
        assert asyncio.run(poster.post()) is False
        assert asyncio.run(poster.post()) is True
    assert len(lab.adapter.sent) == 1 and lab.standing() == (TICK, 50_000)  # sent once, and it stands
    # a first not final is the start's course (INFO), and the landed post is told
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    told = caplog.records[1].getMessage()
    assert told.startswith("market.fee posted on the MGMC chain (final after the wait)")
    assert "nothing posted" not in caplog.text


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"fee": 250_000, "coordinators": ["mg1"]},
         "'loop.exchange_fee.fee': Value error, the fee must be a whole number of ticks (multiples of 1,000,000 "
         "nano-currency per kWh, 1 micro-unit per Wh) in [0, 10,000,000], got 250000"),
        ({"fee": 11 * TICK, "coordinators": ["mg1"]}, "in [0, 10,000,000], got 11000000"),
        ({"fee": "1000000", "coordinators": ["mg1"]},
         "'loop.exchange_fee.fee': Value error, must be a number (int), got '1000000'"),
        ({"fee": TICK}, "'loop.exchange_fee': Value error, coordinators: a fee needs 1 to 16 MGs whose day-ahead "
                        "sessions take it, got 0"),
        ({"fee": 0, "fund_cap": 5}, "'loop.exchange_fee': Value error, fund_cap and coordinators only with a fee "
                                    "above 0 (without one there is no fund)"),
        ({"fee": TICK, "coordinators": ["mg1", "mg1"]}, "coordinators: mg1 named twice"),
        ({"fee": TICK, "coordinators": ["mg9"]}, "'loop': Value error, exchange_fee.coordinators: mg9 is not an MG "
                                                 "of the loop (mgs: mg1, mg2)"),
        ({"fee": TICK, "fund_cap": 10**15 + 1, "coordinators": ["mg1"]}, "'loop.exchange_fee.fund_cap'"),
        ({"fee_uwh": 1, "coordinators": ["mg1"]}, "missing required key 'loop.exchange_fee.fee' (and 1 more)"),
    ],
)  # fmt: skip
def test_a_bad_entry_stops_the_load_naming_the_key(entry: dict[str, Any], words: str, tmp_path: Path) -> None:
    from peergrid_dso.config import DsoSettings

    config = tmp_path / "dso.yaml"  # as `peergrid-dso check-config` and `serve` load it
    config.write_text(yaml.safe_dump({"loop": Lab().doc(entry)}), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, DsoSettings)
    assert words in str(refused.value)


def test_the_entry_needs_the_mgmc_chain() -> None:
    doc = Lab().doc(ONE_TICK)
    del doc["mgmc_chain"]
    with pytest.raises(
        ValueError, match=r"exchange_fee: the DSO posts the fee \(market.fee\) on the MGMC chain"
    ):
        IntervalNodeSettings.model_validate(doc)


@pytest.mark.parametrize(("contracts", "missing"), [(("market", "exchange"), "uplift"),
                                                    (("market",), "exchange or uplift")])  # fmt: skip
def test_a_chain_without_the_uplift_contract_stops_the_start(
    contracts: tuple[str, ...], missing: str
) -> None:
    lab = Lab(contracts=contracts)
    with pytest.raises(ConfigError) as refused:
        lab.node_loop(ONE_TICK)  # the node's start
    assert str(refused.value) == (
        f"loop.exchange_fee: the MGMC chain (mgmc) has no {missing} contract, so it takes no exchange fee "
        "(market.fee is the uplift contract's, for the exchange's day-ahead sessions): remove loop.exchange_fee, "
        "or run a chain whose genesis has both"
    )
    assert lab.node_loop(None).fee is None  # without the entry the chain is fine


def test_the_node_makes_the_poster_and_runs_it_beside_the_enrolment() -> None:
    from peergrid_dso.interval_node import DsoLoop

    lab = Lab()
    loop = lab.node_loop(ONE_TICK)
    assert isinstance(loop.fee, FeePoster) and loop.capacity is None
    stand_in: Any = SimpleNamespace(pricer=None, capacity=None, fee=loop.fee, start_records=(),
                                    settings=SimpleNamespace(first_interval=0, intervals=0))  # fmt: skip

    async def enrol() -> None:
        await asyncio.sleep(0.05)  # the poster's first pass runs meanwhile

    stand_in.enrol, stand_in.record_start = enrol, lambda: DsoLoop.record_start(stand_in)
    asyncio.run(DsoLoop.run(stand_in, asyncio.Event()))
    assert lab.standing() == (TICK, 50_000)


def test_health_says_the_fee_standing_and_whether_it_is_the_configs() -> None:
    lab = Lab(genesis_fee=(3 * TICK, 7, "mg2"))
    dso = Keypair.generate()
    dso_chain = LocalChain(Genesis(chain="dso", time=0, authorities=(dso.public,)), dso)
    loop = lab.node_loop(ONE_TICK)
    node: Any = SimpleNamespace(settings=loop.settings, replica=SimpleNamespace(app=SimpleNamespace(state=dso_chain.state)),
                                loop=loop)  # fmt: skip
    found = readiness(node)
    assert found["exchange_fee"] == {"fee": 3 * TICK, "fund_cap": 7, "coordinators": ["mg2"], "posted": False,
                                     "as_configured": False}  # fmt: skip
    run(node.loop.fee)
    assert readiness(node)["exchange_fee"] == {"fee": TICK, "fund_cap": 50_000, "coordinators": ["mg1"],
                                               "posted": True, "as_configured": True}  # fmt: skip
    node.loop = lab.node_loop(None)  # no entry: the fee standing all the same
    assert readiness(node)["exchange_fee"]["as_configured"] is None
    no_uplift = Lab(contracts=("market",))
    node.loop = no_uplift.node_loop(None)
    assert "exchange_fee" not in readiness(node)  # a chain that takes no fee


def check_config(lab: Lab, tmp_path: Path, entry: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """`peergrid-dso check-config` of a config whose loop follows `lab`'s chain with `entry`: its one line (exit 0
    or 2)."""
    import json

    from peergrid_dso import cli
    from peergrid_ledger.keys import write_keyfile

    doc = lab.doc(entry)
    if not (tmp_path / "dso.key").exists():
        write_keyfile(tmp_path / "dso.key", lab.dso)
    dso_genesis = Genesis(chain="dso", time=0, authorities=(lab.dso.public,))
    for name, genesis in (("dso.json", dso_genesis), ("mgmc.json", lab.chain.genesis)):
        (tmp_path / name).write_text(json.dumps(genesis.to_json()), encoding="utf-8")
    doc["key_file"] = str(tmp_path / "dso.key")
    doc["dso_chain"] = {"genesis": str(tmp_path / "dso.json"), "data_dir": str(tmp_path / "dso-db")}
    doc["mgmc_chain"] = {"genesis": str(tmp_path / "mgmc.json"), "data_dir": str(tmp_path / "mgmc-db")}
    config = tmp_path / "dso.yaml"
    config.write_text(yaml.safe_dump({"loop": doc}), encoding="utf-8")
    try:
        cli.main(["check-config", "--config", str(config)])
    except SystemExit as stopped:
        assert stopped.code == 2
    out, err = capsys.readouterr()
    return (out + err).strip().replace(str(config), "dso.yaml")


def test_check_config_takes_the_entry_and_names_a_bad_fee(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = Lab()
    assert check_config(lab, tmp_path, ONE_TICK, capsys) == "dso.yaml: ok (loop: 2 MGs on case33bw)"
    assert check_config(lab, tmp_path, ONE_TICK | {"fee": 1_500_000}, capsys) == (
        "peergrid-dso: config error: dso.yaml: 'loop.exchange_fee.fee': Value error, the fee must be a whole "
        "number of ticks (multiples of 1,000,000 nano-currency per kWh, 1 micro-unit per Wh) in [0, 10,000,000], "
        "got 1500000"
    )


def test_check_config_refuses_the_entry_on_a_chain_without_the_uplift_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_config(Lab(contracts=("market", "exchange")), tmp_path, ONE_TICK, capsys) == (
        "peergrid-dso: config error: loop.exchange_fee: the MGMC chain (mgmc) has no uplift contract, so it takes "
        "no exchange fee (market.fee is the uplift contract's, for the exchange's day-ahead sessions): remove "
        "loop.exchange_fee, or run a chain whose genesis has both"
    )
    assert check_config(Lab(contracts=("market",)), tmp_path, {"fee": 0}, capsys).startswith(
        "peergrid-dso: config error: loop.exchange_fee: the MGMC chain (mgmc) has no exchange or uplift contract"
    )

"""The DSO's cover prices are on the chain before the forward day is cleared (review12 F6).

On a `settle_by_both` MGMC chain the day-ahead coordinator opens the session only once the DSO's cover prices
(`market.tariff`) of every member are on the chain for the intervals it trades, waiting at most
`tariff_wait_s` (and, with a deadline, a share of the time left to its close). Independent agents run the
session and its forward stage on one real single-authority `EdgeLedger` whose genesis settles by both; the
DSO's side is the DSO node's own code (`tariff.pricing_window`, `unpriced_runs`, `CoverTariff.body`: what its
`CoverPricer` posts at start), signed with the genesis' `dso` key. A DSO that comes late: the session opens
after its prices, and every forward trade carries them (without the wait the same DSO finds every cleared
interval closed and can never price it: the control). A DSO that never comes: one warning line, the day goes on unpriced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_helpers import BLOCK_MS
from pydantic import ValidationError
from test_edge_dayahead_session import CONFIG, SESSION, free_day, run_on, trading_key

from peergrid_controller.chain_venue import chain_rules
from peergrid_controller.dayahead import starting_prices
from peergrid_controller.model import Scenario
from peergrid_dso.tariff import CoverTariff, micro_per_wh, pricing_window, unpriced_runs
from peergrid_edge.config import MarketSettings
from peergrid_edge.dayahead_agent import TARIFF_SHARE, DayAheadAgent
from peergrid_edge.exchange_io import ROLE, Deadline, SessionFailed, submit_final
from peergrid_edge.forward_agent import ForwardAgent
from peergrid_edge.link import MqttLink
from peergrid_edge.replicas import ChainSpec, EdgeLedger
from peergrid_ledger import query
from peergrid_ledger.contracts import exchange, market
from peergrid_ledger.contracts.market_state import cover_prices
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

DSO = Keypair.from_seed(hashlib.sha256(b"edge-dayahead/dso").digest())
SETTLE_BY_BOTH = Params(settle_by_both=1, settle_interval_ms=900_000)


def priced_ledger(
    tmp_path: Path, scenario: Scenario, params: Params = SETTLE_BY_BOTH
) -> tuple[EdgeLedger, dict[str, Keypair]]:
    """A single-authority MGMC chain whose genesis names the DSO (role `dso`: it alone prices the cover) and
    the MGs' trading keys, settling by both (`params`)."""
    authority = Keypair.from_seed(hashlib.sha256(b"edge-dayahead/authority").digest())
    keys_ = {mg.name: trading_key(mg.name) for mg in scenario.microgrids}
    genesis = Genesis(
        chain="mgmc-tariffs", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(DSO.public, ("dso",), "dso"),
                  *(Account(keys_[mg.name].public, ("anonym",), mg.name, rules=chain_rules(mg.rules))
                    for mg in scenario.microgrids)),
        contracts=("market", "exchange"), params=params,
    )  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mgmc-genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    spec = ChainSpec(name="mgmc", genesis=path, data_dir=tmp_path / "mgmc.db", block_period_ms=BLOCK_MS,
                     round_timeout_ms=500, wal_fsync=False)  # fmt: skip
    return EdgeLedger(authority, MqttLink("test", "127.0.0.1", 9), "feeder", [spec]), keys_


def cover_tariff(scenario: Scenario) -> CoverTariff:
    """Each MG's cover prices as the DSO's tariff file gives them (the lab's: the scenario's own tariffs)."""
    return CoverTariff(
        scenario.interval_hours * 60,
        {
            mg.name: (
                tuple(micro_per_wh(p) for p in mg.tariff.retail),
                tuple(micro_per_wh(p) for p in mg.tariff.feed_in),
            )
            for mg in scenario.microgrids
        },
    )


async def dso_prices(ledger: EdgeLedger, scenario: Scenario, keys_: dict[str, Keypair]) -> list[str]:
    """What the DSO node's pricer does at its start (the loop's first day, its intervals 0..n-1): each MG's
    unpriced runs of the window, posted as `market.tariff`. Returns the refusals (the chain's reasons); a closed interval it never sends."""
    tariff = cover_tariff(scenario)
    window = pricing_window(0, scenario.intervals, None, tariff.per_day)
    refused = []
    for mg, key in sorted(keys_.items()):
        for run in unpriced_runs(ledger.state(ROLE), key.public, window):
            try:
                await submit_final(
                    ledger, DSO, "market.tariff", tariff.body(mg, key.public, run), 10.0, lambda: None
                )
            except SessionFailed as refusal:
                refused.append(str(refusal))
    return refused


def agents(
    ledger: EdgeLedger, keys_: dict[str, Keypair], scenario: Scenario, tariff_wait_s: float, **kwargs: Any
) -> list[DayAheadAgent]:
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    opening = starting_prices(scenario)
    return [
        DayAheadAgent(
            ledger,
            keys_[mg.name],
            mg,
            scenario.interval_hours,
            members,
            SESSION,
            0,
            opening,
            CONFIG,
            10.0,
            tariff_wait_s=tariff_wait_s,
            **kwargs,
        )
        for mg in scenario.microgrids
    ]


async def forward(ledger: EdgeLedger, keys_: dict[str, Keypair], scenario: Scenario) -> None:
    stages = [
        ForwardAgent(ledger, keys_[mg.name], mg, scenario.interval_hours, SESSION, timeout_s=10.0)
        for mg in scenario.microgrids
    ]
    done = await asyncio.wait_for(asyncio.gather(*(s.run() for s in stages)), 300)
    assert all(outcome.cleared for outcome in done), done


def forward_trades(ledger: EdgeLedger, scenario: Scenario) -> list[dict[str, Any]]:
    state = ledger.state(ROLE)
    return [trade for t in range(scenario.intervals) for _, trade in query.trades(state, t)]


def priced(ledger: EdgeLedger, trade: dict[str, Any]) -> bool:
    return cover_prices(ledger.state(ROLE), trade) is not None


@pytest.mark.parametrize("waits", [True, False], ids=["the coordinator waits", "control: no wait"])
def test_a_late_dsos_prices_are_on_every_forward_trade(
    tmp_path: Path, waits: bool, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = priced_ledger(tmp_path, scenario)
    stage = agents(ledger, keys_, scenario, tariff_wait_s=60.0 if waits else 0.0)
    seen: dict[str, Any] = {}

    async def late_dso() -> None:
        # the DSO node comes up after every MGMC is in the stage: the coordinator ready to open, waiting
        await asyncio.sleep(1.0)
        seen["session before the prices"] = exchange.session(ledger.state(ROLE), SESSION)
        seen["refused"] = await dso_prices(ledger, scenario, keys_)

    async def day() -> list[Any]:
        dso = asyncio.create_task(late_dso() if waits else asyncio.sleep(0))
        outcomes = await asyncio.wait_for(asyncio.gather(*(a.run() for a in stage)), 180)
        await forward(ledger, keys_, scenario)
        await dso
        if not waits:  # the same DSO, as late as the day-ahead stage was quick: after the clear
            seen["refused"] = await dso_prices(ledger, scenario, keys_)
        return outcomes

    with caplog.at_level(logging.INFO, logger="peergrid.edge.dayahead"):
        outcomes = run_on(ledger, day)
    assert all(o.completed for o in outcomes)
    ledger, _ = priced_ledger(tmp_path, scenario)  # what the agents left final
    try:
        trades = forward_trades(ledger, scenario)
        assert len(trades) >= 3  # forward trades: their intervals closed by the session's clear
        assert all(
            market.interval_record(ledger.state(ROLE), t["interval"]).get("session") == SESSION
            for t in trades
        )
        if waits:
            assert seen["session before the prices"] is None  # the coordinator had not opened
            assert seen["refused"] == []
            assert all(priced(ledger, trade) for trade in trades)
            coordinator = next(a for a in stage if a.is_coordinator)
            assert coordinator.unpriced == {} and all(
                a.unpriced is None for a in stage if a is not coordinator
            )
            assert "the DSO's cover prices are on the chain after" in caplog.text
        else:
            assert not any(priced(ledger, trade) for trade in trades)
            closed = {trade["interval"] for trade in trades}
            # the DSO's pricer never sends a closed interval (the contract would refuse it): those stay
            # unpriced for good, whoever traded in them
            assert seen["refused"] == [] and all(market.closed(ledger.state(ROLE), t) for t in closed)
            assert all(
                market.tariff(ledger.state(ROLE), key.public, t) is None
                for t in closed
                for key in keys_.values()
            )
        assert "no DSO cover prices" not in caplog.text
    finally:
        ledger.close()


def test_a_dso_that_never_comes_ends_the_wait_with_one_line_and_the_day_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = priced_ledger(tmp_path, scenario)
    stage = agents(ledger, keys_, scenario, tariff_wait_s=1.5)

    async def day() -> list[Any]:
        outcomes = await asyncio.wait_for(asyncio.gather(*(a.run() for a in stage)), 180)
        await forward(ledger, keys_, scenario)
        return outcomes

    with caplog.at_level(logging.INFO, logger="peergrid.edge.dayahead"):
        outcomes = run_on(ledger, day)
    assert all(o.completed for o in outcomes)
    lines = [r for r in caplog.records if "no DSO cover prices" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert (
        "for 3 of 3 members (12 member-intervals, the first interval 0): opening unpriced"
        in lines[0].getMessage()
    )
    coordinator = next(a for a in stage if a.is_coordinator)
    assert coordinator.unpriced == {key.public: (0, 1, 2, 3) for key in keys_.values()}
    ledger, _ = priced_ledger(tmp_path, scenario)
    try:
        trades = forward_trades(ledger, scenario)
        assert trades and not any(priced(ledger, trade) for trade in trades)
    finally:
        ledger.close()


def test_a_dso_that_priced_some_members_is_waited_for_the_rest_and_only_the_window(tmp_path: Path) -> None:
    """The wait is for every member and only for the intervals the MGMC trades (`priced`): one member priced
    and an interval outside the window unpriced still end the wait at once; a missing member does not."""
    scenario = free_day(3, 4)
    ledger, keys_ = priced_ledger(tmp_path, scenario)
    tariff = cover_tariff(scenario)
    names = sorted(keys_)

    async def play() -> dict[str, Any]:
        for mg in names[:2]:
            body = tariff.body(mg, keys_[mg].public, range(0, 3))  # interval 3 left unpriced
            await submit_final(ledger, DSO, "market.tariff", body, 10.0, lambda: None)
        stage = agents(ledger, keys_, scenario, 0.3, priced=range(0, 3))
        view = stage[0].view
        third = keys_[names[2]].public
        return {
            "missing": await view.await_tariffs(range(0, 3), 0.3),
            "window": view.unpriced(range(0, 4)),
            "two": view.unpriced(range(0, 3)) == {third: (0, 1, 2)},
        }

    got = run_on(ledger, play)
    third = keys_[names[2]].public
    assert got["missing"] == {third: (0, 1, 2)} and got["two"]
    assert got["window"] == {keys_[names[0]].public: (3,), keys_[names[1]].public: (3,), third: (0, 1, 2, 3)}


class FakeChain:
    """Just enough of a replica for the agent's wait arithmetic: a genesis and an empty state."""

    def __init__(self, settle_by_both: int) -> None:
        genesis = SimpleNamespace(params=SimpleNamespace(settle_by_both=settle_by_both))
        self.replicas = {ROLE: SimpleNamespace(app=SimpleNamespace(genesis=genesis))}

    def state(self, role: str) -> Any:
        return {}


def waiting(settle_by_both: int, wait_s: float, close_in: float | None, coordinator: bool = True) -> float:
    scenario = free_day(3, 4)
    keys_ = {mg.name: trading_key(mg.name) for mg in scenario.microgrids}
    deadline = None if close_in is None else Deadline(close_s=1000.0 + close_in, clear_ms=2_000_000)
    stage = agents(
        FakeChain(settle_by_both), keys_, scenario, wait_s, deadline=deadline, clock=lambda: 1000.0
    )  # type: ignore[arg-type]
    agent = next(a for a in stage if a.is_coordinator is coordinator)
    return agent._tariff_wait()


def test_the_wait_is_bounded_by_its_setting_and_a_share_of_the_time_to_the_close() -> None:
    assert waiting(1, 20.0, None) == 20.0
    assert waiting(1, 20.0, 100.0) == 20.0
    assert waiting(1, 20.0, 16.0) == pytest.approx(TARIFF_SHARE * 16.0)  # the rest is the session's
    assert waiting(1, 20.0, -5.0) == 0.0  # past the close (a refusal up front says so): no wait
    assert waiting(0, 20.0, None) == 0.0  # not settle_by_both: the DSO cannot price there
    assert waiting(1, 0.0, None) == 0.0  # switched off
    assert waiting(1, 20.0, None, coordinator=False) == 20.0  # a member waits as long more for the opening


def test_without_settle_by_both_nothing_is_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = free_day(3, 4)
    ledger, keys_ = priced_ledger(tmp_path, scenario, Params())
    stage = agents(ledger, keys_, scenario, tariff_wait_s=60.0)

    async def play() -> list[Any]:
        return await asyncio.wait_for(asyncio.gather(*(a.run() for a in stage)), 60)

    with caplog.at_level(logging.INFO, logger="peergrid.edge.dayahead"):
        outcomes = run_on(ledger, play)
    assert all(o.completed for o in outcomes) and all(a.unpriced is None for a in stage)
    assert "cover prices" not in caplog.text


def market_doc(**extra: Any) -> dict[str, Any]:
    return {"scenario": "day.json", "anonym_key_file": "anonym.key", "t0": 0.0, "interval_s": 10.0, **extra}


def test_the_tariff_wait_setting_defaults_and_refuses_bad_values() -> None:
    assert MarketSettings.model_validate(market_doc()).dayahead_tariff_wait_s == 20.0
    assert MarketSettings.model_validate(market_doc(dayahead_tariff_wait_s=0)).dayahead_tariff_wait_s == 0.0
    for bad in (-1.0, math.inf, math.nan, "soon"):
        with pytest.raises(ValidationError, match="dayahead_tariff_wait_s"):
            MarketSettings.model_validate(market_doc(dayahead_tariff_wait_s=bad))


def test_a_stopping_daemon_ends_the_coordinators_wait(tmp_path: Path) -> None:
    """The daemon's stop check (`before_submit`) is asked at every block of the wait: a stopping MGMC whose
    cancellation was lost does not sit out its wait for a DSO that never comes, and opens nothing."""
    scenario = free_day(3, 4)
    ledger, keys_ = priced_ledger(tmp_path, scenario)
    stopping = asyncio.Event()

    def stopped() -> None:
        if stopping.is_set():
            raise asyncio.CancelledError("the daemon is stopping")

    coordinator = next(
        a for a in agents(ledger, keys_, scenario, 600.0, before_submit=stopped) if a.is_coordinator
    )

    async def play() -> str:
        asyncio.get_running_loop().call_later(0.5, stopping.set)
        try:
            await asyncio.wait_for(coordinator.run(), 60)  # far below the 600-s wait
        except asyncio.CancelledError as stop:
            return str(stop)
        return "ran on"

    assert run_on(ledger, play) == "the daemon is stopping"
    assert coordinator.view.record() is None

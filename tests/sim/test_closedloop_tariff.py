"""The lab prices the cover: with `--settle-by-both` the lab writes each MG's retail and feed-in from the scenario
(the prices its MGMC schedules with) into the DSO's tariff file and names it in the DSO node's config; the DSO
node posts them as `market.tariff`, so the lab's trades carry the imbalance compensation. The system test reads
the MGMC chain: every MG priced for every interval the lab ran (the first only where the DSO node, which
prices from its start, reached the MG before that interval closed: under heavy load it may not), statements
with `short` exactly on priced trades, every trade settled and one delivered short moving the compensation the
contract computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peergrid_controller.market import micro_per_wh
from peergrid_controller.scenario import load_scenario as load_market_scenario
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.tariff import load_tariff_file
from peergrid_ledger.contracts.market_state import compensation
from peergrid_sim.closedloop import LabChains, LoopTiming, SettleByBoth, dso_node_config
from peergrid_sim.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
FIRST = 36


def config(tmp_path: Path, chains: LabChains) -> dict[str, Any]:
    timing = LoopTiming(t0=1000.0, interval_s=6.0, first_interval=FIRST, intervals=3)
    return dso_node_config(chains, "ieee33", ("127.0.0.1", 1883), tmp_path / "dso", load_scenario(SCENARIO),
                           tmp_path / "ep.json", timing, tmp_path / "records")  # fmt: skip


def test_the_dso_gets_the_scenarios_tariffs_on_a_lab_that_settles_by_both(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO, SettleByBoth.for_lab(6.0, FIRST, 1000.0))
    settings = IntervalNodeSettings.model_validate(config(tmp_path, chains))
    assert settings.tariff_file is not None and settings.interval_minutes == 15.0
    tariff = load_tariff_file(
        settings.tariff_file, settings.mgs, settings.interval_minutes
    )  # as the node does
    market = load_market_scenario(SCENARIO)
    assert set(tariff.prices) == set(chains.mgs) == {mg.name for mg in market.microgrids}
    for mg in market.microgrids:  # the very prices the MGMC schedules with, on the chain's tick
        retail, feed_in = tariff.prices[mg.name]
        assert list(retail) == [micro_per_wh(p) for p in mg.tariff.retail]
        assert list(feed_in) == [micro_per_wh(p) for p in mg.tariff.feed_in]
    assert tariff.prices["mg1"][0][FIRST] == 220 and tariff.prices["mg1"][1][FIRST] == 50  # 09:00: 0.22, 0.05


def test_without_settle_by_both_the_dso_prices_nothing(tmp_path: Path) -> None:
    chains = LabChains.create(tmp_path / "keys", "ieee33", SCENARIO)
    assert "tariff_file" not in config(tmp_path, chains)  # the contract would refuse market.tariff there


def _chain(workdir: Path) -> tuple[dict[bytes, Any], dict[str, Any]]:
    """The MGMC chain's market state as one MGMC's replica holds it at the end, and the height at which
    each account's first `market.tariff` and each interval's first `trade` landed."""
    from peergrid_ledger.codec import decode
    from peergrid_ledger.store import BlockStore

    path = sorted((workdir / "nodes").glob("mgmc-*/mgmc.db"))[0]
    store = BlockStore.open(path)
    try:
        state = {key: decode(raw) for key, raw in store.state_items() if key.startswith(b"mkt/")}
        first: dict[str, Any] = {"tariff": {}, "trade": {}}
        for height in range(1, store.head_height() + 1):
            for tx in store.block(height).txs:
                if tx.kind == "market.tariff":
                    first["tariff"].setdefault(tx.body["account"], height)
                elif tx.kind == "trade":
                    first["trade"].setdefault(tx.body["interval"], height)
        return state, first
    finally:
        store.close()


@pytest.mark.system
@pytest.mark.xdist_group("system")
def test_the_lab_prices_every_mg_and_settles_priced_trades_with_compensation(
    settle_by_both_lab: Any,
) -> None:  # conftest.LabRun
    # real processes (broker, devices, six MGMC daemons, the DSO), the settle-by-both lab's run that the
    # settle-both test reads too (tests/sim/conftest.py; three intervals): the DSO prices each MG from its start
    workdir, intervals = settle_by_both_lab.workdir, settle_by_both_lab.intervals
    assert settle_by_both_lab.first_interval == FIRST and intervals >= 2  # a first and a later interval
    chains = LabChains.create(workdir / "keys", "ieee33", SCENARIO)
    state, first = _chain(workdir)
    from peergrid_ledger.contracts.market_state import tariff_key

    ran = range(FIRST, FIRST + intervals)
    prices = {mg: [state.get(tariff_key(chains.anonyms[mg].public, t)) for t in ran] for mg in chains.mgs}
    # from the second interval on, every MG is priced: the DSO node is up by then
    assert all(p[1:] == [[220, 50]] * (intervals - 1) for p in prices.values()), prices
    # the first is priced for every MG whose tariff landed before it closed: the DSO prices from its start
    # (about 5 s before the first interval at load 3-4, 10 s after the lab's start), one MG per block, and
    # an MG it reached only after the closing is missing there (the contract refuses a closed interval)
    late = {mg for mg, p in prices.items() if p[0] is None}
    assert all(first["tariff"][chains.anonyms[mg].public] >= first["trade"][FIRST] for mg in late), first
    assert all(p[0] == [220, 50] for mg, p in prices.items() if mg not in late), prices
    assert state.get(tariff_key(chains.anonyms["mg1"].public, FIRST + intervals)) is None  # not past the run
    trades = [t for k, t in state.items() if k.startswith(b"mkt/trade/") and "superseded" not in t]
    assert trades, "the lab agreed no trade"
    settled = [t for t in trades if t["settlement"] is not None]
    priced = [t for t in settled if "compensation" in t["settlement"]]
    summary = {
        "trades": len(trades),
        "settled": len(settled),
        "priced": len(priced),
        "stated_short": sum(1 for t in trades for s in t.get("statements", {}).values() if "short" in s),
        "delivered_short": sum(1 for t in priced if t["settlement"]["delivered"] < t["quantity"]),
        "compensation_paid": sum(t["settlement"]["compensation"]["amount"] for t in priced),
        "disputed": sum(1 for t in trades if t.get("disputed")),
        "first_interval_priced_mgs": len(chains.mgs) - len(late),
    }
    print(f"\nlab, {intervals} intervals, settle_by_both, priced: {summary}")
    assert len(settled) == len(trades), summary  # every trade settled
    unpriced = [t for t in trades if "compensation" not in t["settlement"]]
    assert all(t["interval"] == FIRST for t in unpriced), summary  # only where a party was priced late
    assert len(priced) >= len([t for t in trades if t["interval"] > FIRST]), summary
    # each party's statement names its own shortfall on a priced trade (only there)
    assert all(("short" in s) == (t in priced) for t in trades for s in t["statements"].values()), summary
    short = [t for t in priced if t["settlement"]["delivered"] < t["quantity"]]
    assert short, f"no trade delivered short: the compensation is not shown ({summary})"
    for t in priced:  # the compensation is the contract's, from the DSO's prices of the trade's interval
        c = t["settlement"]["compensation"]
        retail = state[tariff_key(t["buyer"], t["interval"])][0]
        feed_in = state[tariff_key(t["seller"], t["interval"])][1]
        payer, amount = compensation(t["price"], c["seller_short"], c["buyer_short"], retail, feed_in)
        assert (c["payer"], c["amount"]) == (payer, amount), t
    assert any(t["settlement"]["compensation"]["amount"] > 0 for t in short), summary  # money moved for it

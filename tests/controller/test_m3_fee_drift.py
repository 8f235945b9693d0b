"""ρ follows a fee's drift on the MGMC chain (`dayexchange.Book.follow_fee`, M3): the chain takes every ρ.

On a fee day the trades worth nothing at fee 0 are worth less than nothing, and every MG unwinds them by fee/ρ
per iteration with the price held. ρ halves (down to `fee_rho_min`, ρ/8) while every MG trades less and the
moves are at least the imbalance, comes back to the config's once the imbalance dominates, and no MG says
settled below the config's (`Book.lowered`). Checked here on `ChainVenue`'s exchange, whose contract takes a step's ρ only
within [ceil(ρ/2), 2ρ] and prices every step itself:
- test_ctl_fee_scenario's midday day at one tick per side (221 iterations at ρ 0.005 before): ρ goes down to
  ρ/8 (iterations 11-37) and back to the config's, no verdict is posted settled after a step below the
  config's, the value stop ends it at 45, and the chain's session is the memory venue's allocation;
- the lab's day (ieee33, windows 36-37 for all six, as tests/edge/test_m1_lab_window_day.py) at 10^6 nano/kWh
  per side (135 iterations before): 39 iterations to the kWh stop, the sellers selling what they sell at fee
  0 less their own use (mg1 35,989 / 39,217 Wh, mg5 44,800 / 47,276: the same with ρ halving only where the
  book was within the kWh stop, M2's rule, in 31) and the price a tick below the fee-0 day's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.dayahead import allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.market import Verdict
from peergrid_controller.model import Scenario
from peergrid_controller.scenario import load_scenario
from peergrid_controller.simulate import window
from peergrid_ledger.contracts import exchange as contract

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
TICK = 10**6  # nano per kWh: one micro-unit per Wh
RHO = 5_000_000  # the config's ρ, nano per kWh²


class Watched:
    """The chain's exchange, watched: the ρ each step went on with, and the iterations posted settled."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.rho: dict[int, int] = {}  # iteration stepped -> the ρ of the iteration after it
        self.said_settled: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.exchange, name)

    def position(self, name: str, iteration: int, positions_wh: Sequence[int], **extra: Any) -> Verdict:
        if extra.get("settled"):
            self.said_settled.add(iteration)
        return self.exchange.position(name, iteration, positions_wh, **extra)  # type: ignore[no-any-return]

    def step(self, iteration: int, rho: int) -> Any:
        self.rho[iteration] = rho
        return self.exchange.step(iteration, rho)


def on_chain(scenario: Scenario, cfg: DayAheadConfig) -> tuple[ChainVenue, Watched]:
    venue = ChainVenue(scenario)
    watched = Watched(venue.exchange)
    allocation = allocate(scenario, cfg, recorder=watched)  # type: ignore[arg-type]
    if allocation.stop == "value":  # less the verdict round, abandoned by the close: one solve per MG more
        n = len(scenario.microgrids)
        allocation = replace(allocation, iterations=allocation.iterations - 1, solves=allocation.solves - n)
    assert allocation == allocate(scenario, cfg)  # the chain changed nothing
    return venue, watched


def test_the_midday_days_rho_goes_to_an_eighth_and_no_verdict_is_settled_below_the_configs() -> None:
    scenario = window(load_scenario(IEEE33), 36, 44)
    cfg = DayAheadConfig(exchange_fee=TICK)
    venue, watched = on_chain(scenario, cfg)
    path = [watched.rho[k] for k in sorted(watched.rho)]
    assert len(path) == 46 and min(path) == RHO // 8 and path[-1] == RHO
    assert path.index(RHO // 8) == 11 and path.index(RHO, 11) == 45
    # the verdict round (46) and two posts before the drift: none after a step below the config's ρ
    assert watched.said_settled == {5, 6, 46}
    assert all(watched.rho[k - 1] == RHO for k in watched.said_settled)
    record = contract.session(venue.chain.view, venue.exchange.session)
    assert record is not None and record["closed"]
    assert {round(p / TICK) for p in record["prices"]} == {219}  # every interval closes a tick below retail


def test_the_labs_fee_day_takes_39_iterations() -> None:
    scenario = load_scenario(IEEE33)
    windows = tuple((mg.name, 36, 37) for mg in scenario.microgrids)
    venue, watched = on_chain(scenario, DayAheadConfig(exchange_fee=TICK, windows=windows))
    assert len(watched.rho) == 40 and min(watched.rho.values()) == RHO // 8
    record = contract.session(venue.chain.view, venue.exchange.session)
    assert record is not None and tuple(record["prices"][36:38]) == (218_999_795, 219_005_107)
    for name, sold in (("mg1", (35_989, 39_217)), ("mg5", (44_800, 47_276))):
        stepped = contract.stepped(venue.chain.view, venue.exchange.session, venue.keys[name].public)
        assert stepped is not None and tuple(stepped["positions"][36:38]) == sold, name

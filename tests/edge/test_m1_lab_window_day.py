"""The lab's day-ahead session with its MGMCs' windows is the simulation's with the same windows (M1).

Since M1 each lab MGMC answers the session (ieee33, 96 quarter-hours from interval 0) as a day that trades only
its window, the intervals it trades and states with its forward accept: 36-37 for all six in the lab of
tests/conftest.py (`dayahead_lab`, `--intervals 2`). The lab run that ended 00:11 UTC on 2026-12-07 (with
/work/notes/M1_day_stages.patch, which passes the window to its session) closed after 8 iterations on the kWh
stop; `allocate` on `ChainVenue`'s exchange with the same windows and the kWh stops gives its closing prices to
the nano and every stepped position to the Wh, over all 96 intervals: nothing traded outside 36-37, and the
prices there left at the opening ones. The same day answered whole (`allocate` without windows, the kWh
stops; every MGMC answered the whole day before M1) took 11 iterations, every MG with positions in all 96 intervals, closing
36-37 at 220,019,167 nano/kWh both, mg5 selling 46.0/46.6 kWh there (its battery kept for sales outside) and mg2
18.5/17.7; with its window mg5 sells 66.0/68.9 and mg2 buys 5.1/6.0. That lab owed no claim (every gain 0,
surplus 28,056,232 micro-units: tests/sim/test_closedloop_dayahead.py passed on it).
"""

from __future__ import annotations

from pathlib import Path

from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.dayahead import allocate, starting_prices
from peergrid_controller.dayexchange import NANO, DayAheadConfig
from peergrid_controller.scenario import load_scenario
from peergrid_ledger.contracts import exchange as contract

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
# the lab's closing prices in 36 and 37 (nano per kWh) and each MGMC's stepped positions there (Wh)
LAB_PRICES = (220_015_834, 219_975_834)
LAB_POSITIONS = {
    "mg1": (55_107, 58_790),
    "mg2": (-5_074, -6_015),
    "mg3": (-4_035, -6_640),
    "mg4": (-115_158, -117_410),
    "mg5": (65_973, 68_888),
    "mg6": (3_187, 2_388),
}


def test_the_labs_session_with_its_windows_is_the_simulations_with_the_same_windows() -> None:
    scenario = load_scenario(IEEE33)
    config = DayAheadConfig(value_per_kwh=0.0, windows=tuple((mg.name, 36, 37) for mg in scenario.microgrids))
    venue = ChainVenue(scenario)
    allocation = allocate(scenario, config, recorder=venue.exchange)
    assert allocation.iterations == 8 and allocation.stop == "kwh"  # the lab's
    record = contract.session(venue.chain.view, venue.exchange.session)
    assert record is not None
    prices = list(record["prices"])
    assert tuple(prices[36:38]) == LAB_PRICES
    opening = [round(p * NANO) for p in starting_prices(scenario)]
    assert prices[:36] + prices[38:] == opening[:36] + opening[38:]  # nobody answered anything there
    for mg in scenario.microgrids:
        stepped = contract.stepped(venue.chain.view, venue.exchange.session, venue.keys[mg.name].public)
        assert stepped is not None
        positions = list(stepped["positions"])
        assert tuple(positions[36:38]) == LAB_POSITIONS[mg.name], mg.name
        assert positions[:36] + positions[38:] == [0] * 94, mg.name

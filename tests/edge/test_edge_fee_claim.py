"""An MGMC's make-whole claim holds the positions it answered outside its trading window (L12).

The lab's day-ahead with an exchange fee of 10^6 nano/kWh ended with mg5 claiming 8.02 unfunded, where the
simulation of the same day owes nothing. The lab's session is the simulation's to the Wh (mg5 sells 19.8 and
22.276 kWh at 0.219 in 36-37 in both), so the session did not leave mg5 that gain: its claim's counterfactual
did. mg5 answered the whole day: at 36-37 it fills its battery for its sales at 0.299 in 68-72 and sells the
rest. Its claim deviated in its window [36, 37] against a day that trades nothing outside it, where that
battery energy is worth the feed-in 0.05, so selling it at 0.218 showed as a gain it was denied. Now both
days keep its positions outside the window (its stepped post, public): mg5's gain is 0.0000034, claimed 0.
Hand day (1-hour intervals, retail 0.30, feed-in 0.05, window chain intervals 1-2): a PV + battery MG with
14 kW of PV in interval 1 only, a 10-kWh lossless battery, no load; closing prices 0.20 and 0.28 in
interval 3; its positions sell 4 kWh in interval 1 and 10 kWh (its battery) in interval 3. Its 4 kWh clear.
Before: deviating in 1-2 alone it sells all 14 kWh at 0.20, against 10 kWh fed in: 10 x 0.15 = 1.5 claimed.
Now its day sells the 10 kWh at 0.28 in interval 3 in both: nothing owed; cleared 2 of its 4 kWh (rationed
inside its window) it is still owed 2 x 0.15. Since L13 the claim is the lesser of this held day's gain and its
real day's (nothing traded outside its window); where the held day has no schedule, the largest share of its
positions outside that has one (L14; the real day's where none has): every figure here is the held day's
(tests/edge/test_l13_claim_min.py has the posts outside that bind nothing, review30). Since M1 an MGMC that
states its window answers nothing outside it (mg5's positions outside 36-37 are 0), so on the lab's day its held
day is its real day; the lab's figures below are that day before M1, which still check the held day's rule on a
battery filled for sales outside its window (tests/edge/test_m1_lab_window_day.py has the lab's session since).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from uplift_chain import Parties, covered_chain, ok

from peergrid_controller.deviation import deviation_gains
from peergrid_controller.forward import Commitment
from peergrid_controller.market import Trade
from peergrid_controller.model import Battery, ContractRules, Load, Microgrid, PvArray, Scenario, Tariff
from peergrid_controller.scenario import load_scenario
from peergrid_edge.dayahead_uplift import ClaimFigures, claim_for, claim_from
from peergrid_edge.forward_clean import accept_body
from peergrid_edge.forward_first import with_window
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_state
from peergrid_ledger.keys import Keypair

FEE = 1_000_000  # nano per kWh per side: the lab's (one micro-unit per Wh, 0.001 per kWh)
WINDOW = range(1, 3)
PRICES = (0.20, 0.20, 0.20, 0.28)
POSITIONS = (0, 4_000, 0, 10_000)  # Wh: its answer for the whole session
NAME = "day"


def store(n: int = 4) -> Microgrid:
    pv = tuple(14.0 if t == 1 else 0.0 for t in range(n))
    battery = Battery(
        "b", 10.0, 10.0, 10.0, 1.0, 1.0, soc_min=0.0, soc_max=1.0, soc_initial=0.0, wear_cost=0.0
    )
    return Microgrid(
        "store", Tariff((0.30,) * n, (0.05,) * n), pv=(PvArray("pv", pv),), batteries=(battery,),
        loads=(Load("none", (0.0,) * n, (0.0,) * n),), rules=ContractRules(max_quantity_kwh=20.0),
    )  # fmt: skip


def figures(sold_kwh: float, fee: int, positions: tuple[int, ...] = POSITIONS) -> ClaimFigures:
    trades = tuple((Trade(t, "store", "peer", sold_kwh, 0.20),) if t == 1 else () for t in range(4))
    return ClaimFigures("S", 0, PRICES, (), trades, WINDOW, None, 10**12, fee, positions)


@pytest.mark.parametrize(("fee", "net"), [(0, 0.20), (FEE, 0.199)], ids=["fee0", "fee1e6"])
def test_a_battery_filled_for_a_sale_outside_the_window_is_no_gain(fee: int, net: float) -> None:
    before = claim_from(store(), 1.0, figures(4.0, fee, positions=()))  # nothing held: the old claim
    assert before.deviation_gain == pytest.approx(10 * (net - 0.05), abs=1e-6)
    claim = claim_from(store(), 1.0, figures(4.0, fee))
    assert abs(claim.deviation_gain) < 1e-6 and claim.gain == 0
    # the day it has is the one it really has: its 10 kWh fed in (no trade outside its window), its fee paid
    assert claim.day_cost == before.day_cost == pytest.approx(-0.5 - 4 * 0.20 + fee * 4 / 10**9, abs=1e-9)
    assert claim.surplus == (0 if fee else 600_000)  # conventional -0.7 less -1.3; with a fee: none claimed


@pytest.mark.parametrize(("fee", "net"), [(0, 0.20), (FEE, 0.199)], ids=["fee0", "fee1e6"])
def test_rationing_inside_the_window_is_still_owed(fee: int, net: float) -> None:
    claim = claim_from(store(), 1.0, figures(2.0, fee))  # 2 of its 4 kWh cleared: 2 kWh fed in, not sold
    assert claim.deviation_gain == pytest.approx(2 * (net - 0.05), abs=1e-6)
    assert claim.gain == pytest.approx(round(2 * (net - 0.05) * 10**6), abs=1)


@pytest.mark.parametrize("fee", [0, FEE], ids=["fee0", "fee1e6"])
def test_a_held_position_is_held_exactly_on_both_sides(fee: int) -> None:
    """A PV MG (10 kW in each interval, no battery: its intervals do not couple) holds a purchase of 3 kWh in
    interval 0 it has no use for and a sale of its 10 kWh in interval 3: held, its claim is the L8 window's
    (6 kWh unsold in 1, 10 in 2, at the price less the fee); a purchase it could drop would add 3 x (0.20 +
    fee - 0.05) (with the fee the two sides are columns of their own: both fixed)."""
    n, phi = 4, fee / 10**9
    pv = Microgrid("store", Tariff((0.30,) * n, (0.05,) * n), pv=(PvArray("pv", (10.0,) * n),),
                   loads=(Load("none", (0.0,) * n, (0.0,) * n),), rules=ContractRules(max_quantity_kwh=20.0))  # fmt: skip
    claim = claim_from(pv, 1.0, figures(4.0, fee, positions=(-3_000, 4_000, 0, 10_000)))
    assert claim.deviation_gain == pytest.approx(16 * (0.20 - phi - 0.05), abs=1e-6)
    nothing = claim_from(pv, 1.0, figures(4.0, fee, positions=()))  # uncoupled: the same as held nothing
    assert claim.gain == nothing.gain and claim.deviation_gain == pytest.approx(
        nothing.deviation_gain, abs=1e-9
    )


def test_held_positions_are_one_books_of_the_whole_session() -> None:
    mg = store()
    alone = Scenario("store", 1.0, (mg,))
    commitment = Commitment(PRICES, ((),) * 4, (), {}, {}, {"store": 0.0}, 0)
    with pytest.raises(ValueError, match="one book of 4 intervals"):
        deviation_gains(alone, commitment, window={1, 2}, held=(0.0, 4.0, 0.0))
    clean = dataclasses.replace(commitment, clean_prices=PRICES)
    with pytest.raises(ValueError, match="clean: True"):
        deviation_gains(alone, clean, window={1, 2}, held=(0.0, 4.0, 0.0, 10.0))


def whole_numbers(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split())


# the lab's day (/tmp/labfee2, session 17: `peergrid-testbed --dayahead --exchange-fee 1000000`; before M1, every
# MGMC answering the whole day): mg5's closing prices (nano per kWh) and its stepped positions (Wh), the
# simulation's at fee 10^6 to the Wh then
LAB_PRICES = whole_numbers("""
139835833 139889165 139812513 140071670 139892509 139851669 140171666 139829163 139908333 139883345
139896662 140045832 140030003 139824999 139927502 139980835 139899178 139946656 139760831 140004172
139966658 140083327 140134999 140084994 139965007 139996673 138979169 139019964 219006664 219016666
219011661 218996664 218976670 219024996 219010839 218988333 219009166 218990837 219022515 218999165
219000001 219002499 218997491 218999167 219003349 219015834 219009164 219019163 218983337 219004169
218980830 219021670 218994163 218991663 218983328 219021668 218980831 219011669 218989992 219023334
218986664 219011703 219005830 218989170 218986649 218991664 218985000 219461667 298990833 298991674
298990005 298991629 298990829 298990847 298990009 298989999 298990832 298990839 298992505 298994166
298990005 298991662 298993341 298992502 139880820 139782501 139794165 140185831 139968333 140130835
140098333 140073332 139928331 139779999 139729163 139704164
""")
LAB_POSITIONS = whole_numbers("""
0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
0 0 0 0 0 0 0 0 0 0 -68 -69 -84 872 2959 5046
7648 10767 13885 17003 19800 22276 24751 27227 29702 32177 34653 37128 39604 42079 44555 47030
49305 51379 51284 49019 46754 44490 42225 39960 37695 35430 33165 30900 28635 26371 24106 21841
18987 15543 12100 8656 27580 23779 16113 5861 6161 159 145 143 117 -34 -38 -36
-34 -40 -35 -40 0 0 0 0 0 0 0 0 0 0 0 0
""")
# its forward sales in 36 and 37 (kWh at 0.219): to three buyers at 0.103/0.105 and one at the rest
LAB_SALES = {36: (0.103, 0.103, 19.491, 0.103), 37: (0.105, 0.105, 21.961, 0.105)}
IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"


def test_the_labs_mg5_with_a_fee_claims_nothing() -> None:
    mg5 = {m.name: m for m in load_scenario(IEEE33).microgrids}["mg5"]
    prices = tuple(exchange_state.micro_per_wh(p) / 1000 for p in LAB_PRICES)
    trades = tuple(tuple(Trade(t, "mg5", f"b{i}", q, 0.219) for i, q in enumerate(LAB_SALES.get(t, ())))
                   for t in range(96))  # fmt: skip
    lab = ClaimFigures("S", 0, prices, (), trades, range(36, 38), None, 48_750_000, FEE, LAB_POSITIONS)
    assert claim_from(mg5, 0.25, dataclasses.replace(lab, positions=())).gain == 8_018_403  # the lab's claim
    claim = claim_from(mg5, 0.25, lab)
    assert claim.gain == 0 and abs(claim.deviation_gain) < 1e-4, claim
    assert claim.day_cost == pytest.approx(38.871015803950165, abs=1e-6)  # the lab's record: its real day


def key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"edge-fee-claim/" + name.encode()).digest())


AUTHORITY, DSO, SOLO, PEER = key("authority"), key("dso"), key("solo"), key("peer")


def cleared(accepted_wh: int, positions: tuple[int, ...] = POSITIONS) -> LocalChain:
    """The hand day on a real chain: SOLO posts `positions` (PEER the opposite), the step prices them, the
    close; SOLO accepts `accepted_wh` in interval 1 stating its window 1-2, PEER the same, the clear."""
    chain = covered_chain("edge-fee-claim", Parties(AUTHORITY, DSO, SOLO, PEER), 20_000, 4)
    opening = {"session": NAME, "first_interval": 0, "members": [SOLO.public, PEER.public],
               "prices": [int(p * 10**9) for p in PRICES], "rho": 5_000_000}  # fmt: skip
    ok(chain.sign_and_submit(DSO, "exchange.open", opening))
    for k, sign in ((SOLO, 1), (PEER, -1)):
        row = [sign * q for q in positions]
        ok(chain.sign_and_submit(k, "exchange.position", {"session": NAME, "iteration": 0, "positions": row}))
    ok(chain.sign_and_submit(DSO, "exchange.step", {"session": NAME, "iteration": 0, "rho": 5_000_000}))
    ok(chain.sign_and_submit(DSO, "exchange.close", {"session": NAME, "iteration": 1}))
    chain.seal()
    record = exchange_state.session(chain.state, NAME)
    assert record is not None and tuple(record["prices"]) == tuple(int(p * 10**9) for p in PRICES)
    sale = [accepted_wh if t == 1 else 0 for t in range(4)]
    ok(chain.sign_and_submit(SOLO, "exchange.accept", with_window(accept_body(NAME, sale, True, False), WINDOW,
                                                                    record)))  # fmt: skip
    ok(chain.sign_and_submit(PEER, "exchange.accept", accept_body(NAME, [-q for q in sale], False, False)))
    ok(chain.sign_and_submit(DSO, "exchange.clear", {"session": NAME}))
    chain.seal()
    return chain


def test_the_claim_reads_its_positions_off_the_chain() -> None:
    chain = cleared(4_000)
    assert exchange_state.trading_window(chain.state, NAME, SOLO.public) == WINDOW
    claim = claim_for(store(), 1.0, chain.state, NAME, SOLO.public)
    assert claim.gain == 0 and abs(claim.deviation_gain) < 1e-6, claim  # before: 1,500,000
    assert claim.surplus == 600_000 and claim.day_cost == pytest.approx(-1.3, abs=1e-9)
    rationed = claim_for(store(), 1.0, cleared(2_000).state, NAME, SOLO.public)
    assert rationed.gain == 300_000  # 2 kWh at 0.20 instead of fed in at 0.05

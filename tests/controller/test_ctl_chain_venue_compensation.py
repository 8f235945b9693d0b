"""The chain computes the imbalance compensation (chain_venue `compensate`, the market contract's settlement).

On a seeded faulted day-ahead day (`peergrid-market simulate ... --random-faults 4 --fault-seed 1 --json`) the
venue's chain, told each trade's shortfalls (delivery.py's `shortfalls`), moves the compensation in the
trades' settlements; the simulation's `pay` of it is checked against the chain instead of posted, and the JSON
is the one the off-chain `pay` gave, to the micro-unit (pinned below from the run before, at 4c3efed).
simulate_dayahead.py tells the venue the shortfalls itself (venues.metering_venue); `Told` only keeps each
day's venue and delivery, and builds the venue with or without `compensate`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from unittest import mock

import pytest
from helpers_ctl import AllocationTape
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_ctl_dayahead_forward import GENSET_DAY, run_day

from peergrid_controller import simulate as simulate_module
from peergrid_controller import simulate_dayahead
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cli import main
from peergrid_controller.delivery import Delivery, DeliveryFault
from peergrid_controller.settling import COMPENSATION_REF
from peergrid_controller.uplift import MICRO, Payment
from peergrid_controller.venues import VENUES
from peergrid_ledger import query
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.contracts.payments import payment

DAY = [
    "simulate",
    "--synthetic",
    "8",
    "--seed",
    "2",
    "--intervals",
    "48",
    "--no-central",
    "--market",
    "dayahead",
    "--random-faults",
    "4",
    "--fault-seed",
    "1",
    "--venue",
    "chain",
    "--json",
]
# the day's compensation per MG as the off-chain computation posted it with `pay` (commit 4c3efed)
PINNED = {
    "mg001": -7.270801,
    "mg002": 6.7819,
    "mg003": 3.647778,
    "mg004": 3.909007,
    "mg005": 10.138436,
    "mg006": 8.964866,
    "mg007": 4.584006,
    "mg008": -30.755192,
}


TAPE = AllocationTape()


class Told:
    """A compensating chain venue per scenario (kept), and the day's delivery that told it the shortfalls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
        self.compensate = True  # False: the venue before, the simulation's figure posted with `pay`
        self.venues: list[ChainVenue] = []
        self.deliveries: list[Delivery] = []
        monkeypatch.setitem(VENUES, "chain", self.venue)
        self.options = options
        real = simulate_dayahead.deliver

        def told(*args: Any) -> Delivery:
            self.deliveries.append(real(*args))
            return self.deliveries[-1]

        monkeypatch.setattr(simulate_dayahead, "deliver", told)
        # every CLI run here is the one seeded day on a venue with other options: solved once (AllocationTape)
        monkeypatch.setattr(simulate_module, "allocate", TAPE)

    def venue(self, scenario: Any) -> ChainVenue:
        self.venues.append(ChainVenue(scenario, compensate=self.compensate, **self.options))
        return self.venues[-1]


def run(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main([*DAY, *extra]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def compensation(doc: dict[str, Any]) -> dict[str, float]:
    figures: dict[str, float] = doc["total"]["dayahead"]["delivery"]["compensation"]
    return figures


def settled_on_chain(venue: ChainVenue) -> dict[str, int]:
    """Per MG: micro-units received (+) or paid (−) in the settlements' compensation, read from the chain."""
    out = {name: 0 for name in venue.keys}
    for interval in range(48):
        for _tid, record in query.trades(venue.chain.view, interval):
            moved = record["settlement"]["compensation"]
            seller, buyer = venue.names[record["seller"]], venue.names[record["buyer"]]
            payer, payee = (seller, buyer) if moved["payer"] == "seller" else (buyer, seller)
            out[payer] -= moved["amount"]
            out[payee] += moved["amount"]
    return out


def test_the_chain_moves_the_same_compensation_to_the_micro_unit_and_nothing_is_posted_with_pay(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    told = Told(monkeypatch)
    told.compensate = False
    off_chain = run(capsys)
    assert compensation(off_chain) == PINNED
    told.compensate = True
    on_chain = run(capsys)
    assert compensation(on_chain) == PINNED
    venue, delivery = told.venues[-1], told.deliveries[-1]
    assert venue.compensation() == delivery.compensation and delivery.compensation
    by_mg = settled_on_chain(venue)
    assert {name: a / MICRO for name, a in by_mg.items() if a} == PINNED
    # not posted again: no payment under the compensation's reference, and the balances are exactly the
    # settlements (energy and compensation; no uplift on this day)
    assert on_chain["total"]["dayahead"]["uplift_total"] == 0.0
    keys = [kp.public for kp in venue.keys.values()]
    assert all(payment(venue.chain.view, a, b, COMPENSATION_REF) is None for a in keys for b in keys)
    energy = {name: 0 for name in venue.keys}
    for interval in range(48):
        for _tid, record in query.trades(venue.chain.view, interval):
            energy[venue.names[record["seller"]]] += record["settlement"]["amount"]
            energy[venue.names[record["buyer"]]] -= record["settlement"]["amount"]
    for name, kp in venue.keys.items():
        assert query.balance(venue.chain.view, kp.public) == energy[name] + by_mg[name], name
    # the same day otherwise: only the chain's transactions differ (the DSO's tariffs, 8; no `pay`s)
    pays = len(delivery.compensation)
    assert (
        on_chain["total"]["chain"]["transactions"] == off_chain["total"]["chain"]["transactions"] + 8 - pays
    )
    off_chain["total"]["chain"] = on_chain["total"]["chain"]
    assert on_chain == off_chain


def test_meters_that_disagree_are_settled_by_the_dso_naming_both_sides_with_the_same_figures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    told = Told(monkeypatch, meter_error_wh={"mg008": -3})
    doc = run(capsys)
    assert compensation(doc) == PINNED
    venue = told.venues[0]
    assert venue.settled.get("dso", 0) > 0  # mg008's trades were disputed and the DSO settled them
    assert venue.compensation() == told.deliveries[0].compensation


def test_a_silent_mgs_counterparties_settle_on_their_lone_statements_with_the_same_figures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    told = Told(monkeypatch, silent=("mg002",))  # mg002 has no fault of its own on this day
    assert compensation(run(capsys)) == PINNED
    assert told.venues[0].settled.get("lapsed", 0) > 0
    assert told.venues[0].compensation() == told.deliveries[0].compensation


def test_a_figure_that_differs_from_the_chains_is_refused_naming_both(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Told(monkeypatch)
    real = simulate_dayahead.pay_compensation

    def one_more(venue: Any, payments: Any, ref: str = COMPENSATION_REF) -> None:
        first = payments[0]
        real(venue, (Payment(first.payer, first.payee, first.amount + 1), *payments[1:]), ref)

    monkeypatch.setattr(simulate_dayahead, "pay_compensation", one_more)
    assert main(DAY) != 0  # the CLI's one line for a SettlementError
    err = capsys.readouterr().err
    assert re.search(
        r"refused: .*moved (\d+) micro-units of compensation from mg\d+ to mg\d+, not (\d+)", err
    )


def test_a_compensation_the_simulation_does_not_have_fails_the_day_loudly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Told(monkeypatch)
    monkeypatch.setattr(simulate_dayahead, "pay_compensation", lambda venue, payments: None)
    assert main(DAY) == 3  # the venue's CompensationError: one line, not a traceback
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "the MGMC chain's compensation differs: the settlements moved" in err
    assert "that no payment of the simulation's compensation confirmed" in err


def test_a_compensating_venue_needs_both_statements() -> None:
    from peergrid_controller.synth import synthetic_scenario

    with pytest.raises(ValueError, match="settle_by_both"):
        ChainVenue(synthetic_scenario(2, 4, seed=0), settle_by_both=False, compensate=True)


def test_every_mg_is_priced_on_the_chain_as_its_tariff_says() -> None:
    from peergrid_controller.synth import synthetic_scenario

    scenario = synthetic_scenario(3, 8, seed=0)
    venue = ChainVenue(scenario, compensate=True)
    venue.flush()
    for mg in scenario.microgrids:
        for t in range(8):
            got = contract.tariff(venue.chain.view, venue.keys[mg.name].public, t)
            assert got == (round(mg.tariff.retail[t] * 1000), round(mg.tariff.feed_in[t] * 1000))


# --- any fault pattern on the 8-MG genset day (test_ctl_dayahead_forward): the chain's figures are delivery.py's


@settings(max_examples=10, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from([mg.name for mg in GENSET_DAY.microgrids]), st.integers(0, 11)),
        st.sampled_from([0.1, 0.5, 1.0]) | st.floats(0.001, 1.0),
        min_size=1,
        max_size=6,
    )
)
@example({("mg001", 3): 1.0, ("mg003", 3): 0.5})  # a seller short in full and a buyer short in part
def test_any_fault_pattern_the_chain_moves_delivery_pys_compensation_once_and_conserves_money(
    pattern: dict[tuple[str, int], float],
) -> None:
    faults = tuple(DeliveryFault(mg, f, (t,)) for (mg, t), f in sorted(pattern.items()))
    deliveries: list[Delivery] = []
    real = simulate_dayahead.deliver

    def told(*args: Any) -> Delivery:  # simulate_dayahead tells the venue its shortfalls
        deliveries.append(real(*args))
        return deliveries[-1]

    # simulate's day on a compensating chain venue, played from the day's allocation made once
    # (test_ctl_dayahead_forward.run_day: the faults act only after it)
    with mock.patch.object(simulate_dayahead, "deliver", told):
        result, venue = run_day(faults, compensate=True)
    (delivery,) = deliveries
    assert venue.compensation() == delivery.compensation
    if pattern == {("mg001", 3): 1.0, ("mg003", 3): 0.5}:
        assert delivery.compensation  # the example moves money: the equality above is not between nothings
    d = result.dayahead
    assert d is not None and sum(d.compensation.values()) == pytest.approx(0.0, abs=1e-9)
    balances = {name: query.balance(venue.chain.view, kp.public) for name, kp in venue.keys.items()}
    assert sum(balances.values()) == 0
    uplift = {n: round((d.uplift_credit.get(n, 0.0) - d.uplift_charge.get(n, 0.0)) * MICRO) for n in balances}
    seen = 0
    for r in result.intervals:
        for tr in r.trades:  # each agreed trade settled once, its compensation never negative
            tid = venue.trade_id(tr)
            record = contract.trade(venue.chain.view, tid)
            assert record is not None and record["settlement"] is not None
            moved = record["settlement"]["compensation"]
            assert moved["amount"] >= 0
            sides = delivery.shortfalls.get((r.interval, tr.seller, tr.buyer), (0, 0))
            assert (moved["seller_short"], moved["buyer_short"]) == sides
            seen += 1
            balances[tr.seller] -= record["settlement"]["amount"]
            balances[tr.buyer] += record["settlement"]["amount"]
    assert seen == venue.exchange.cleared and sum(venue.settled.values()) == seen
    # what is left of each balance is its uplift and the compensation the JSON reports, to the micro-unit
    for name, left in balances.items():
        assert left == uplift[name] + round(d.compensation.get(name, 0.0) * MICRO), name

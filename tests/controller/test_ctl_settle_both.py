"""The simulation's chain settles on both parties' statements (genesis `settle_by_both`, the venue's default).

Each trade's buyer and seller state what their own meter read; a trade counts as settled only when the
chain says `settled`. Days on the rule and without it pay the same; a forged statement is refused and
never pays; meters that disagree leave the trade disputed and the DSO's metering settles it; a silent
party's counterparty settles after the chain's wait (the venue moves its logical clock to the deadline);
two silent parties are a refusal naming the trade. The genesis names the market interval clock and no
statement lands before its trade's interval ended (the venue moves its clock there first; review9 F1). The
lossy transport carries every statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.cli import result_json
from peergrid_controller.delivery import DeliveryFault
from peergrid_controller.market import Bid, Offer, Rejected, Trade
from peergrid_controller.model import ContractRules, Load, Microgrid, Scenario, Tariff
from peergrid_controller.netsim import LossyVenue
from peergrid_controller.settling import SettlementError
from peergrid_controller.simulate import SimulationConfig, SimulationResult, simulate
from peergrid_controller.synth import synthetic_scenario
from peergrid_ledger import query
from peergrid_ledger.genesis import Params
from peergrid_ledger.results import Accepted as ChainAccepted

# four MGs over a day in 8 three-hour steps (as test_ctl_netsim): cheap, with midday trading
DAY = synthetic_scenario(4, 8, seed=2, interval_hours=3.0)
INTRADAY = SimulationConfig(with_central=False, forecast_iterations=6)
DAYAHEAD = SimulationConfig(with_central=False, market="dayahead")


def tiny() -> Scenario:
    tariff = Tariff((0.25,), (0.05,))
    mgs = tuple(
        Microgrid(name, tariff, loads=(Load("l", (1.0,), (0.0,)),), rules=ContractRules())
        for name in ("s", "b", "c")
    )
    return Scenario("settle-both", 0.25, mgs)


def agreed(venue: ChainVenue, kwh: float = 4.0) -> Trade:
    """s sells b `kwh` at 0.1 per kWh in interval 0: the agreed trade."""
    assert not isinstance(venue.post_offer(Offer("s", 0, 0.1, kwh, True)), Rejected)
    assert not isinstance(venue.post_bid(Bid("b", 0, (("s", kwh),))), Rejected)
    venue.close_round()
    (trade,) = venue.finish(0)
    return trade


def standing(venue: ChainVenue, trade: Trade) -> dict[str, Any]:
    record = query.settlement(venue.chain.view, venue.trade_id(trade))
    assert record is not None
    return record


@dataclass
class Run:
    result: SimulationResult
    venue: ChainVenue


def day(config: SimulationConfig, scenario: Scenario = DAY, **options: Any) -> Run:
    venues: list[ChainVenue] = []

    def factory(s: Scenario) -> Venue:
        venues.append(ChainVenue(s, **options))
        return venues[-1]

    return Run(simulate(scenario, config, venue_factory=factory), venues[0])


HONEST: dict[str, Run] = {}


def honest_intraday() -> Run:
    """day(INTRADAY) on the default chain venue, simulated once for the module: four tests set their variant
    beside it (a deterministic day, only read)."""
    if not HONEST:
        HONEST["intraday"] = day(INTRADAY)
    return HONEST["intraday"]


def same(a: Run, b: Run) -> bool:
    """The same day as the CLI prints it (the central optimum is skipped: NaN, never equal to itself)."""
    return result_json(a.result) == result_json(b.result)


def payments(run: Run) -> tuple[dict[str, float], list[tuple[Trade, int]]]:
    """Every MG's balance on the chain, and every agreed trade with the amount its settlement paid."""
    venue = run.venue
    paid = []
    for interval in run.result.intervals:
        for trade in interval.trades:
            record = standing(venue, trade)
            assert record["state"] == "settled", (trade, record)
            paid.append((trade, record["settlement"]["amount"]))
    return {name: venue.balance(name) for name in venue.keys}, paid


def bases(run: Run) -> dict[str, int]:
    out: dict[str, int] = {}
    for interval in run.result.intervals:
        for trade in interval.trades:
            basis = standing(run.venue, trade)["settlement"].get("basis", "first")
            out[basis] = out.get(basis, 0) + 1
    return out


# ------------------------------------------------------------------------------------------------ genesis


def test_the_venue_settles_on_both_statements_by_default_and_without_the_rule_keeps_the_genesis_before() -> (
    None
):
    both = ChainVenue(synthetic_scenario(4, 96, seed=1))
    assert both.chain.genesis.params.settle_by_both == 1
    assert both.dso.public in {a.key for a in both.chain.genesis.accounts}
    first = ChainVenue(synthetic_scenario(4, 96, seed=1), settle_by_both=False)
    assert first.chain.genesis.params == Params(credit_limit=10**15, cap_on_fills=1)
    # the genesis hash measured before settle_by_both came to the venue (same scenario, same chain bytes)
    assert (
        first.chain.genesis.hash.hex() == "3aa1f26198cdfe3392f34fa7b5c1b5da12b5576582b6f50e96130050f04b8c83"
    )


def test_the_genesis_names_the_interval_clock_and_no_statement_lands_before_its_interval_ended() -> None:
    venue = ChainVenue(tiny())  # 0.25-h intervals
    params = venue.chain.genesis.params
    assert (params.settle_epoch_ms, params.settle_interval_ms) == (0, 900_000)
    assert ChainVenue(tiny(), settle_by_both=False).chain.genesis.params.settle_interval_ms == 0
    trade = agreed(venue)
    assert venue.chain.tip.time < 900_000  # the trade was agreed before its interval ended ...
    tid = venue.trade_id(trade)
    early = venue.chain.sign_and_submit(venue.keys["s"], "settle", {"trade": tid, "delivered": 4000})
    assert not isinstance(early, ChainAccepted) and early.reason.value == "rule-violation"
    assert not isinstance(venue.settle(trade, 4.0), Rejected)  # ... and its parties state after the end
    record = standing(venue, trade)
    assert record["settlement"]["basis"] == "agreed"
    assert min(s["time"] for s in record["statements"].values()) >= 900_000


def test_an_unknown_microgrid_in_the_metering_options_is_refused() -> None:
    with pytest.raises(ValueError, match="no microgrid named 'x'"):
        ChainVenue(tiny(), silent=("x",))
    with pytest.raises(ValueError, match="no microgrid named 'y'"):
        ChainVenue(tiny(), meter_error_wh={"y": 1})


# ------------------------------------------------------------------------------------------ one trade


def test_both_parties_state_and_the_trade_settles_on_the_energy_both_metered() -> None:
    venue = ChainVenue(tiny())
    trade = agreed(venue)
    before = venue.transactions
    assert not isinstance(venue.settle(trade, 3.5), Rejected)
    assert venue.transactions == before + 2  # the buyer's statement and the seller's
    record = standing(venue, trade)
    assert record["state"] == "settled"
    assert {p: s["delivered"] for p, s in record["statements"].items()} == {"buyer": 3500, "seller": 3500}
    assert record["settlement"]["basis"] == "agreed" and record["settlement"]["delivered"] == 3500
    venue.flush()
    assert (venue.balance("s"), venue.balance("b")) == (0.35, -0.35)
    again = venue.settle(trade, 3.5)
    assert isinstance(again, Rejected) and "already settled" in again.reason and trade.seller in again.reason


def test_a_forged_statement_is_refused_and_never_pays() -> None:
    venue = ChainVenue(tiny())
    trade = agreed(venue)
    tid = venue.trade_id(trade)
    # a non-party: c is a known, authorised MG on the chain, but not this trade's buyer or seller
    stranger = venue.chain.sign_and_submit(venue.keys["c"], "settle", {"trade": tid, "delivered": 4000})
    assert not isinstance(stranger, ChainAccepted) and stranger.reason.value == "forbidden"
    assert standing(venue, trade)["state"] == "open"
    # a party stating twice: its first statement stands, the second (another number) is refused
    assert not isinstance(venue.settlement.statement(trade, "buyer", 1000), Rejected)
    twice = venue.settlement.statement(trade, "buyer", 4000)
    assert (
        isinstance(twice, Rejected)
        and "duplicate" in twice.reason
        and "already stated 1000 Wh" in twice.reason
    )
    # the venue's settle now finds the buyer's statement made: a refusal naming the trade, nothing paid
    refused = venue.settle(trade, 4.0)
    assert isinstance(refused, Rejected)
    assert "interval 0, s to b" in refused.reason and "buyer's statement" in refused.reason
    assert standing(venue, trade)["state"] == "stated"
    venue.flush()
    assert venue.balance("b") == venue.balance("s") == 0.0
    never = venue.settle(Trade(1, "s", "b", 1.0, 0.1), 1.0)  # never agreed
    assert isinstance(never, Rejected) and "interval 1, s to b" in never.reason


def test_meters_that_disagree_dispute_the_trade_and_the_dsos_metering_settles_it() -> None:
    venue = ChainVenue(tiny(), meter_error_wh={"b": -300})  # the buyer's meter under-reads by 300 Wh
    trade = agreed(venue)
    assert not isinstance(venue.settle(trade, 4.0), Rejected)
    record = standing(venue, trade)
    assert {p: s["delivered"] for p, s in record["statements"].items()} == {"buyer": 3700, "seller": 4000}
    assert record["settlement"]["basis"] == "dso" and record["settlement"]["delivered"] == 4000
    venue.flush()
    assert (venue.balance("s"), venue.balance("b")) == (0.4, -0.4)
    # without the rule the same meter's word pays: the seller is paid for 300 Wh less than it delivered
    first = ChainVenue(tiny(), settle_by_both=False, meter_error_wh={"b": -300})
    assert not isinstance(first.settle(agreed(first), 4.0), Rejected)
    first.flush()
    assert (first.balance("s"), first.balance("b")) == (0.37, -0.37)


def test_within_the_tolerance_two_statements_agree_and_the_lower_is_paid() -> None:
    venue = ChainVenue(tiny(), settle_tolerance_wh=2, meter_error_wh={"s": 2, "b": 0})
    trade = agreed(venue)
    assert not isinstance(venue.settle(trade, 3.0), Rejected)
    settlement = standing(venue, trade)["settlement"]
    assert (settlement["basis"], settlement["delivered"]) == ("agreed", 3000)


def test_a_meter_reading_beyond_the_agreed_quantity_is_stated_as_the_agreed_quantity() -> None:
    venue = ChainVenue(tiny(), meter_error_wh={"s": 50})  # over-reads; the contract refuses > agreed
    trade = agreed(venue)
    assert not isinstance(venue.settle(trade, 4.0), Rejected)  # both state 4000: agreed
    assert standing(venue, trade)["settlement"]["basis"] == "agreed"


def test_a_silent_party_leaves_its_counterparty_to_settle_after_the_chains_wait() -> None:
    venue = ChainVenue(tiny(), silent=("b",))
    trade = agreed(venue)
    assert not isinstance(venue.settle(trade, 2.0), Rejected)
    record = standing(venue, trade)
    assert set(record["statements"]) == {"seller"}
    assert record["settlement"]["basis"] == "lapsed" and record["settlement"]["delivered"] == 2000
    wait = venue.chain.genesis.params.settle_wait_ms
    assert record["deadline"] == record["statements"]["seller"]["time"] + wait
    assert venue.chain.tip.time >= record["deadline"]  # the venue's logical clock moved to the deadline
    venue.flush()
    assert venue.balance("s") == 0.2


def test_two_silent_parties_are_a_refusal_naming_the_trade() -> None:
    venue = ChainVenue(tiny(), silent=("s", "b"))
    trade = agreed(venue)
    refused = venue.settle(trade, 4.0)
    assert isinstance(refused, Rejected)
    assert "neither party states" in refused.reason and "interval 0, s to b" in refused.reason
    assert standing(venue, trade)["state"] == "open"


@settings(max_examples=60, deadline=None)
@given(
    agreed_wh=st.integers(1, 20_000),
    share=st.fractions(0, 1),
    errors=st.tuples(st.integers(-40, 40), st.integers(-40, 40)),
    tolerance=st.integers(0, 8),
    silent=st.sampled_from([(), ("s",), ("b",)]),
)
def test_any_meters_and_any_one_silent_party_settle_once_for_what_the_rule_says(
    agreed_wh: int, share: Any, errors: tuple[int, int], tolerance: int, silent: tuple[str, ...]
) -> None:
    """The venue's settle against an independent model of the rule: each speaking party states its meter's
    reading (within 0 … agreed); one alone settles on it, two within the tolerance on the lower, two
    beyond it on the DSO's (the delivered energy). Paid once, money conserved."""
    delivered = int(agreed_wh * share)
    venue = ChainVenue(
        tiny(),
        settle_tolerance_wh=tolerance,
        silent=silent,
        meter_error_wh=dict(zip("sb", errors, strict=True)),
    )
    trade = agreed(venue, agreed_wh / 1000)
    assert not isinstance(venue.settle(trade, delivered / 1000), Rejected)
    readings = {
        name: max(0, min(agreed_wh, delivered + error))
        for name, error in zip("sb", errors, strict=True)
        if name not in silent
    }
    if len(readings) == 1:
        expected, basis = next(iter(readings.values())), "lapsed"
    elif abs(readings["s"] - readings["b"]) <= tolerance:
        expected, basis = min(readings.values()), "agreed"
    else:
        expected, basis = delivered, "dso"
    settlement = standing(venue, trade)["settlement"]
    assert (settlement["basis"], settlement["delivered"]) == (basis, expected)
    assert settlement["amount"] == 100 * expected  # 0.1 per kWh: 100 micro-units per Wh
    assert isinstance(venue.settle(trade, delivered / 1000), Rejected)  # once
    venue.flush()
    assert venue.balance("s") == -venue.balance("b") == expected / 10_000
    assert venue.balance("c") == 0.0


# --------------------------------------------------------------------------------------------- whole days


@pytest.mark.parametrize("config", [INTRADAY, DAYAHEAD], ids=["intraday", "dayahead"])
def test_the_same_day_with_and_without_the_rule_pays_the_same(config: SimulationConfig) -> None:
    both = honest_intraday() if config is INTRADAY else day(config)
    first = day(config, settle_by_both=False)
    assert same(both, first)
    assert payments(both) == payments(first)
    trades = sum(len(i.trades) for i in both.result.intervals)
    assert trades > 0 and bases(both) == {"agreed": trades} and bases(first) == {"first": trades}
    # one more statement per trade: the seller's
    assert both.venue.transactions == first.venue.transactions + trades


def test_a_day_ahead_day_with_a_delivery_fault_settles_what_was_delivered_on_both_statements() -> None:
    faulty = SimulationConfig(
        with_central=False, market="dayahead", delivery_faults=(DeliveryFault("mg001", 0.5),)
    )
    both, first = day(faulty), day(faulty, settle_by_both=False)
    assert same(both, first) and payments(both) == payments(first)
    short = [
        (t, d)
        for i in both.result.intervals
        for t, d in zip(i.trades, i.delivered or (), strict=True)
        if d.quantity_kwh < t.quantity_kwh
    ]
    assert short, "the fault cut some trades"
    for trade, delivered in short:  # one truth per trade: both meters read what was delivered
        record = standing(both.venue, trade)
        stated = {s["delivered"] for s in record["statements"].values()}
        assert stated == {round(delivered.quantity_kwh * 1000)} == {record["settlement"]["delivered"]}


def test_a_day_with_disagreeing_meters_is_settled_by_the_dso_as_delivered() -> None:
    honest = honest_intraday()
    skewed = day(INTRADAY, meter_error_wh={"mg002": -5})
    assert same(skewed, honest) and payments(skewed) == payments(honest)
    counted = bases(skewed)
    assert counted.get("dso", 0) > 0 and set(counted) <= {"dso", "agreed"}  # agreed: a 0-Wh reading's trade


def test_a_day_with_one_silent_party_settles_after_the_wait() -> None:
    honest = honest_intraday()
    quiet = day(INTRADAY, silent=("mg003",))
    assert same(quiet, honest) and payments(quiet) == payments(honest)
    involved = sum(1 for i in quiet.result.intervals for t in i.trades if "mg003" in (t.seller, t.buyer))
    assert involved > 0 and bases(quiet).get("lapsed") == involved


def test_a_day_with_both_parties_of_a_trade_silent_stops_with_the_trade_named() -> None:
    trades = [t for i in honest_intraday().result.intervals for t in i.trades]
    pair = (trades[0].seller, trades[0].buyer)
    with pytest.raises(SettlementError, match=f"{pair[0]} to {pair[1]}\\): neither party states"):
        day(INTRADAY, silent=pair)


# ---------------------------------------------------------------------------------------------- transport


def sent(venue: LossyVenue, trade: Trade, kwh: float) -> int:
    before = venue.stats.sent
    assert not isinstance(venue.settle(trade, kwh), Rejected)
    return venue.stats.sent - before


@pytest.mark.parametrize(
    ("options", "messages"),
    [
        ({}, 2),  # the buyer's statement and the seller's
        ({"settle_by_both": False}, 1),  # the buyer's settle
        ({"silent": ("s",)}, 2),  # the buyer's statement, and again after the deadline
        ({"meter_error_wh": {"s": -1}}, 3),  # both statements, then the DSO's settlement of the dispute
    ],
)
def test_the_lossy_transport_carries_every_message_of_a_settlement(
    options: dict[str, Any], messages: int
) -> None:
    inner = ChainVenue(tiny(), **options)
    assert sent(LossyVenue(inner, loss=0.0), agreed(inner), 4.0) == messages


def test_statements_lost_in_transport_are_resent_until_the_trade_settles() -> None:
    inner = ChainVenue(tiny())
    venue = LossyVenue(inner, seed=4, loss=0.6)
    trade = agreed(inner)
    assert sent(venue, trade, 4.0) > 2 and venue.stats.lost > 0
    assert standing(inner, trade)["settlement"]["basis"] == "agreed"
    assert isinstance(venue.settle(trade, 4.0), Rejected)  # once only, however many copies crossed

"""A clean premium on a feeder short at every price below retail: the interval's roles are called within the
DSO's prices, and the MGs that buy below retail are the buyers (bargaining.bargain).

With a premium the curves reach past retail (sellers may price up to retail + premium for the buyers who pay
it), and there every MG that can export would rather buy from the DSO and sell to a peer. The interval's
price call then landed a tick above retail, where every MG was a seller or sat out, and nothing traded: on
the bench's 20-MG owner-rules day (seed 1) 57 intervals with a central-optimum trade traded nothing with the
guard off, 61 in strict mode (M10, docs/market.md "Owner rules"). Hand-built curves of the two shapes
simulate() hands over there: the guard off (a buyer buys at retail itself) and strict (a buyer's step at
retail buys nothing: buying there is no better than the DSO and a tick above breaks its budget).
"""

from __future__ import annotations

from peergrid_controller.bargaining import BargainingConfig, MemoryVenue, Participant, bargain
from peergrid_controller.curve import ResponseCurve
from peergrid_controller.model import ContractRules
from peergrid_controller.stability import check

FEED_IN, RETAIL, PREMIUM = 0.05, 0.30, 0.02
TOP = RETAIL + PREMIUM


def _seller() -> Participant:
    """Sells 10 kWh from 0.10 up, 15 past retail (its own load then bought from the DSO)."""
    curve = ResponseCurve((FEED_IN, 0.10, 0.301), (0.0, 10.0, 15.0), TOP)
    return Participant("seller", curve, ContractRules(), clean=True)


def _buyer(name: str, at_retail: float, premium: float) -> Participant:
    """Buys 30 kWh below retail, `at_retail` at retail itself, and sells 0.5 kWh a tick above (arbitrage)."""
    curve = ResponseCurve((FEED_IN, RETAIL, 0.301), (-30.0, at_retail, 0.5), TOP)
    return Participant(name, curve, ContractRules(clean_premium=premium), clean=True)


def _play(people: list[Participant]) -> tuple[float, bool, bool]:
    """Volume traded, converged, stable."""
    cfg = BargainingConfig()
    outcome = bargain(people, 70, FEED_IN, RETAIL, MemoryVenue({p.name: p.rules for p in people}), cfg)
    volume = sum(t.quantity_kwh for t in outcome.trades)
    stability = check(people, outcome, cfg.price_tolerance * max(volume, 1.0), cfg.price_band)
    return volume, outcome.converged, stability.stable


def test_with_the_guard_off_a_short_feeder_with_a_premium_buyer_trades() -> None:
    """Before: the call found 0.301 (net +16), every MG a seller there, 0 kWh traded."""
    people = [_seller(), _buyer("premium-buyer", -30.0, PREMIUM), _buyer("plain-buyer", -30.0, 0.0)]
    volume, converged, stable = _play(people)
    assert volume > 9.9 and converged and stable  # the seller's 10 kWh (15 past retail, to the premium buyer)


def test_in_strict_mode_the_mgs_indifferent_at_retail_are_the_buyers() -> None:
    """Strict curves buy nothing at retail itself: before, the call at retail left them out of the buyers
    and nothing traded; as buyers they take the seller's offer once it comes below retail."""
    people = [_seller(), _buyer("premium-buyer", 0.0, PREMIUM), _buyer("plain-buyer", 0.0, 0.0)]
    volume, converged, stable = _play(people)
    assert volume > 9.9 and converged and stable

"""M6: a clean day's positions in whole Wh keep the exchange contract's |g + c| ≤ max_quantity (and the clean
book's side rules) exactly, so the chain venue takes allocate's own positions and plays the memory venue's day.
Before: each book was rounded apart and the chain refused three rules days (E10)."""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from peergrid_controller import simulate as simulate_module
from peergrid_controller.cleanbook import CleanDayModel, posted_wh
from peergrid_controller.dayahead import Allocation, allocate
from peergrid_controller.dayexchange import DayAheadConfig
from peergrid_controller.market import wh
from peergrid_controller.model import Scenario
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.venues import chain_venue, memory_venue
from peergrid_ledger.contracts import exchange_clean
from peergrid_ledger.results import RuleError

CLEAN = DayAheadConfig(clean_book=True)


def rules_day(n: int, seed: int) -> Scenario:
    """The owner-rules day without gensets of tests/edge/test_edge_dayahead_rules.py (E10 found the bug there)."""
    scenario = synthetic_scenario(n, 8, seed=seed, interval_hours=3.0, rules=True)
    return dataclasses.replace(
        scenario, microgrids=tuple(dataclasses.replace(mg, gensets=()) for mg in scenario.microgrids)
    )


# the days the chain refused with rounding apart: "net position 17918 + clean 2183 Wh in interval 0 beyond
# the maximum 20100" (4, seed 5), and the same past the maximum on (6, seed 5) and (6, seed 7)
REFUSED = [(4, 5), (6, 5), (6, 7)]


@pytest.mark.parametrize(("n", "seed"), REFUSED)
def test_the_days_the_chain_refused_run_on_the_chain_and_equal_the_memory_venue(n: int, seed: int) -> None:
    scenario = rules_day(n, seed)
    # the whole day on each venue, the forward accepts and the chain's clear included; each day's allocation
    # is the one simulate made, allocate(scenario, CLEAN, recorder=<the venue's exchange, the memory venue
    # has none>), kept as it returned
    config = SimulationConfig(market="dayahead", dayahead=CLEAN)
    made: list[Allocation] = []

    def kept(*args: Any, **kwargs: Any) -> Allocation:
        assert args == (scenario, CLEAN)
        made.append(allocate(*args, **kwargs))
        return made[-1]

    with patch.object(simulate_module, "allocate", kept):
        chain_day = simulate(scenario, config, venue_factory=chain_venue)
        memory_day = simulate(scenario, config, venue_factory=memory_venue)
    on_chain, in_memory = made
    assert chain_day.dayahead is not None and chain_day.dayahead.moves_on_chain
    assert memory_day.dayahead is not None and not memory_day.dayahead.moves_on_chain
    assert in_memory.clean_positions  # a clean day indeed
    # all the same but the chain's verdict round (one round of answers more, abandoned by the close)
    same = dataclasses.replace(on_chain, iterations=0, solves=0)
    assert same == dataclasses.replace(in_memory, iterations=0, solves=0)
    # every posted pair within each MG's maximum, as the contract checks it
    for mg in scenario.microgrids:
        general, clean = in_memory.positions[mg.name], in_memory.clean_positions[mg.name]
        limit = CleanDayModel(mg, scenario.interval_hours).max_wh
        assert all(abs(wh(g) + wh(c)) <= limit for g, c in zip(general, clean, strict=True))
    # and the whole day equals the memory venue's
    assert [i.trades for i in chain_day.intervals] == [i.trades for i in memory_day.intervals]


KINDS = ("seller", "buyer", "none")


@st.composite
def pairs(draw: st.DrawFn) -> tuple[str, float, float, int]:
    """(kind, g, c kWh, max Wh) keeping the clean book's rules in kWh: |g + c| ≤ max; a seller c ≥ 0 and
    c > 0 ⇒ g ≥ 0; a clean-only buyer g ≥ 0, c ≤ 0 and c < 0 ⇒ g = 0; anyone else c = 0. Half the draws
    sit on the max with both halves on a half Wh (where rounding apart overshoots)."""
    kind = draw(st.sampled_from(KINDS))
    top = draw(st.integers(0, 10**7))
    m = top / 1000
    if kind == "seller" and draw(st.booleans()):
        k = draw(st.integers(0, max(top - 1, 0)))
        return kind, (k + 0.5) / 1000, (top - k - 0.5) / 1000, top
    if kind == "seller":
        x = draw(st.floats(-m, m))
        c = x * draw(st.floats(0, 1)) if x > 0 else 0.0
        return kind, x - c, c, top
    if kind == "buyer":
        t = draw(st.floats(0, m))
        return (kind, 0.0, -t, top) if draw(st.booleans()) else (kind, t, 0.0, top)
    return kind, draw(st.floats(-m, m)), 0.0, top


@settings(max_examples=400, deadline=None)
@given(pairs())
@example(("seller", 17.9175, 20.1 - 17.9175, 20100))  # mg002's interval 0 of rules_day(4, seed 5)
def test_the_rounded_pair_passes_the_contracts_checks(case: tuple[str, float, float, int]) -> None:
    kind, g, c, top = case
    gw, cw = posted_wh(g, c, top)
    apart = (wh(g), wh(c))
    if abs(sum(apart)) <= top:
        assert (gw, cw) == apart  # rounded as every position is wherever that keeps the maximum
    else:
        assert abs(gw - apart[0]) <= 1 and abs(cw - apart[1]) <= 1  # never more than the Wh it overshot
    rules = {"max_quantity": top, "clean_only": kind == "buyer", "floor_price": 0, "cap_price": 0}
    rules["clean_premium"] = 0
    with patch.object(exchange_clean, "rules_for", lambda view, member, interval: rules):
        exchange_clean.check_positions(None, b"m", 0, [gw], [cw], seller=kind == "seller")  # type: ignore[arg-type]
        if cw:  # the contract checks a nonzero clean accept; the whole position accepted, at price 0
            exchange_clean.check_accept(None, b"m", 0, gw, cw, cw, 0, kind == "seller")  # type: ignore[arg-type]


def test_rounding_apart_is_what_the_contract_refuses() -> None:
    # the check above can fail: the separately rounded pair of E10 is refused by the contract itself
    rules = {"max_quantity": 20100, "clean_only": False, "floor_price": 0, "cap_price": 0, "clean_premium": 0}
    with (
        patch.object(exchange_clean, "rules_for", lambda view, member, interval: rules),
        pytest.raises(RuleError, match="beyond the maximum 20100"),
    ):
        exchange_clean.check_positions(None, b"m", 0, [wh(17.9175)], [wh(20.1 - 17.9175)], seller=True)  # type: ignore[arg-type]
    assert wh(17.9175) + wh(20.1 - 17.9175) == 20101
    assert posted_wh(17.9175, 20.1 - 17.9175, 20100) == (17917, 2183)

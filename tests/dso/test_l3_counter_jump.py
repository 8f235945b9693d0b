"""L3 at the DSO and the edge: a seller whose PCC meter's export counter jumps forward mid-window by more than its
connection carries between the two readings (its TotWh_SF raised 0 -> 1 while the count stays: the leaf reads ten
times the Wh) is unmetered on both sides, as a reset is: the DSO leaves the dispute unresolved naming the jump
and, past the deadline, settles it as a seller not metered (0 Wh delivered), never the jump as energy; the
MGMC states nothing. The bound is the MG's posted connection (`market.capacity` for its trading anonym, as
`counter_roll.posted_w` reads it on both replicas), else 10 MW, over the readings' time plus 10 s: the
roll-over's, by one rule (`metering.samples_of`, `counter_roll.counted_forward`). Before, forward steps were
never refused: the DSO read ~9 MWh exported and the MGMC stated the agreed 500 Wh."""

from __future__ import annotations

import pytest

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger.counter_roll import roll_bound_mwh

from .test_disputes import CLOCK, END_MS, START_MS, chain_time, ramp
from .test_m9_capacity_roll import MW_AT_60_S, capped_market, decided, edge_statement

Readings = list[tuple[float, float | None, float]]


def scale_raised(start_wh: float, wh: float = 480.0) -> Readings:
    """The seller's readings every 10 s around the window (`ramp`'s 480 Wh export), its count standing at
    `start_wh` when the window starts; from the middle of the window its TotWh_SF is 1 over the count it had
    then, so the leaf reads that count ten times over and counts on from there."""
    middle = (START_MS + END_MS) / 2000
    at_middle = start_wh + wh / 2
    out: Readings = []
    for at, exported, imported in ramp(wh, export=True):
        count = start_wh + exported - 1e6  # Wh, as the register counts them at TotWh_SF 0
        out.append((at, count if at < middle else 10 * at_middle + count - at_middle, imported))
    return out


def outcome(posted: int | None, seller: Readings) -> tuple[Vouched | Unresolved, int | None]:
    m = capped_market({"s": seller, "b": ramp(455.0, export=False)}, posted)
    return decided(m), edge_statement(m, seller)


@pytest.mark.parametrize("posted", [None, MW_AT_60_S])
def test_a_raised_scale_factor_is_unmetered_at_the_dso_and_the_edge(posted: int | None) -> None:
    """~1 MWh read as ~10 MWh: a 9 MWh step in 10 s, beyond 1 MW (5.6 kWh) and 10 MW (55.6 kWh) alike."""
    decision, stated = outcome(posted, scale_raised(1e6))
    assert isinstance(decision, Unresolved), decision  # before: Vouched, the seller's energy ~9 MWh
    assert "the seller's metering: the energy_wh counter jumps forward" in decision.why
    assert "between 1030000 and 1040000 ms" in decision.why
    assert stated is None  # before: 500, the agreed figure


def test_past_the_deadline_the_jump_settles_as_a_seller_not_metered() -> None:
    m = capped_market({"s": scale_raised(1e6), "b": ramp(455.0, export=False)}, MW_AT_60_S)
    m.pass_time(m.chain.tip.time + m.chain.genesis.params.settle_wait_ms)
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched)
    assert (decision.rule, decision.delivered, decision.seller) == ("seller not metered", 0, None)
    assert "jumps forward" in decision.unmetered["seller"]


@pytest.mark.parametrize("posted", [None, MW_AT_60_S])
def test_a_small_counters_jump_is_read_by_the_bound_the_chain_holds_on_both_sides(posted: int | None) -> None:
    """~2.2 kWh read as ~22 kWh (19.9 kWh in 10 s): within 10 MW's 55.6 kWh, where no capacity is posted, it
    reads as counted on both sides (the DSO and the edge alike); beyond the MG's posted 1 MW (5.6 kWh) it is
    refused on both."""
    step_mwh = round((10 * (2_000 + 240) - (2_000 + 240 - 480 / 6)) * 1000)
    assert roll_bound_mwh(10_000, 1_000_020) < step_mwh < roll_bound_mwh(10_000)
    decision, stated = outcome(posted, scale_raised(2_000))
    if posted is None:
        assert isinstance(decision, Vouched) and decision.seller is not None
        assert decision.seller.energy_wh > 19_000  # the phantom: a changed factor within 10 MW
        assert stated == decision.seller.share_wh == 500
    else:
        assert isinstance(decision, Unresolved) and "jumps forward" in decision.why
        assert stated is None


def test_an_honest_seller_is_settled_as_before() -> None:
    decision, stated = outcome(MW_AT_60_S, ramp(480.0, export=True))
    assert isinstance(decision, Vouched) and decision.seller is not None
    assert (decision.seller.share_wh, decision.delivered, stated) == (480, 455, 480)

"""R37-3 at the DSO and the edge: a seller's PCC meter whose acc32 export counter (model 203 TotWhExp, TotWh_SF 0)
rolls over inside the interval. The DSO settles the disputed trade from the energy the meter counted across the
roll-over, and the seller's MGMC states the same Wh from the same leaves (`pcc_readings.statement_wh`): one
reading of them, `peergrid_ledger.metering`. Before, both read "the energy_wh counter runs backwards": the DSO
left the trade unresolved and the MGMC could not state it. A reset meter is still no measurement, and a
meter-signed reading's counters (64204, uint64) are never read as rolling over."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import pytest

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_edge.commitments import reading_leaf
from peergrid_edge.pcc_readings import statement_wh
from peergrid_ledger.counter_roll import ACC32
from peergrid_ledger.meter_signing import sign_reading
from peergrid_ledger.metering import COUNTER, Unmetered, metered

from .test_disputes import CLOCK, END_MS, START_MS, Market, chain_time, market, ramp
from .test_disputes_readings import METER, dispute

TOP = ACC32 - 40  # the seller's export register 40 Wh below its top at the window's start


def rolling(wh: float = 480.0) -> list[tuple[float, float | None, float]]:
    """The seller's readings every 10 s around the window (at s, export register Wh, import Wh): `ramp`'s export
    counted from `TOP`, so the register rolls over 5 s into the window; at 0 it is SunSpec's "not accumulated",
    which the edge leaves out of the leaf (None)."""
    out: list[tuple[float, float | None, float]] = []
    for at, exported, imported in ramp(wh, export=True):
        register = (TOP + round(exported - 1e6)) % ACC32
        out.append((at, float(register) or None, imported))
    return out


def seller_leaves(m: Market) -> list[bytes]:
    node = m.nodes["s"].public
    return [leaf for (key, _), leaves in sorted(m.sealed.items()) if key == node for leaf in leaves]


def test_a_seller_whose_meter_rolls_over_in_the_interval_is_settled_and_states_the_same_wh() -> None:
    readings = {"s": rolling(), "b": ramp(455.0, export=False)}
    assert any(e is not None and e < 1_000 for _, e, _ in readings["s"])  # the register did roll over
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings=readings)
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched)
    assert decision.seller.energy_wh == Fraction(480)
    assert (decision.seller.share_wh, decision.buyer.share_wh, decision.delivered) == (480, 455, 455)
    window = (START_MS, END_MS)
    leaves = seller_leaves(m)
    assert statement_wh(leaves, window, "seller", 500, 500, CLOCK.max_gap_ms) == 480
    with pytest.raises(Unmetered, match="energy_wh counter runs backwards"):  # what both read before
        metered(leaves, window, COUNTER["seller"], CLOCK.max_gap_ms, rolls=False)


def test_a_meter_reset_to_zero_in_the_interval_is_still_no_measurement() -> None:
    """The seller's meter replaced mid-window, the new one counting from 0: refused at the DSO and the edge."""
    middle = (START_MS + END_MS) / 2000
    reset = [(at, e if at < middle else e - 1e6 + 1, i) for at, e, i in ramp(480.0, export=True)]
    m = market({("s", "b"): 500}, {("s", "b"): (300, 500)}, readings={"s": reset, "b": ramp(455.0, False)})
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Unresolved) and "energy_wh counter runs backwards" in decision.why
    assert "(reset or replaced)" in decision.why
    with pytest.raises(Unmetered, match="runs backwards"):
        statement_wh(seller_leaves(m), (START_MS, END_MS), "seller", 500, 500, CLOCK.max_gap_ms)


def signed_rolling(signed_rolls: bool) -> list[bytes]:
    """The seller's leaves with its meter's signed reading: the 203 register rolling over (`rolling`), the
    signed 64204 counter whole Wh that does not (uint64, counting on past 2^32), or, `signed_rolls`, one that
    goes back as the register does (no 64204 counter does: it is read as a reset)."""
    leaves = []
    for (at, register, imported), (_, exported, _) in zip(rolling(), ramp(480.0, export=True), strict=True):
        signed_wh = TOP + round(exported - 1e6)
        signed_wh = signed_wh % ACC32 if signed_rolls else signed_wh
        quantities = {"power_w": 0.0, "import_wh": imported, **({"energy_wh": register} if register else {})}
        signed = sign_reading(METER, "s-pcc", round(at * 1000), signed_wh, round(imported))
        leaves.append(reading_leaf("pcc", "meter", at, quantities, signed))
    return leaves


def resolved(seller: Sequence[bytes]) -> Vouched | Unresolved:
    m, tid, meters = dispute(list(seller))
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), signing=meters)
    assert isinstance(decision, Vouched | Unresolved)
    return decision


def test_a_signing_meter_is_read_at_its_signed_counters_which_never_roll_over() -> None:
    decision = resolved(signed_rolling(signed_rolls=False))
    assert isinstance(decision, Vouched) and decision.seller.energy_wh == Fraction(480)
    decision = resolved(signed_rolling(signed_rolls=True))
    assert isinstance(decision, Unresolved) and "energy_wh counter runs backwards" in decision.why

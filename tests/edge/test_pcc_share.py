"""The edge's statement (`pcc_readings.statement_wh`) stays pro rata to the agreed quantities: an MGMC sees only
its own PCC meter, never its counterparties' (their readings stay on their MGMCs; only roots are on the
chain), so it cannot share by what they prove (`metering.meter_shares`, review11 F2); the DSO does that when
the statements differ. What this must not cost: honest parties disputing in the common case. When every
trade is delivered in full (each MG's meter shows at least its agreed total, whatever more it exchanged with
the grid), each edge's statement is the DSO's share of its side and the two statements of every trade agree,
so the trades settle on the chain without the DSO. Where a counterparty fell short, the buyer's pro-rata
statement differs from the sellers' and the DSO decides by the meters (tests/dso/test_meter_share.py)."""

from __future__ import annotations

from fractions import Fraction

from dso.test_disputes import CLOCK, T, market, ramp, sealed_buckets
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_edge.pcc_readings import statement_wh
from peergrid_ledger import query
from peergrid_ledger.metering import meter_shares


def says(readings: list[tuple[float, float, float]], party: str, quantity: int, total: int) -> int:
    leaves = [leaf for bucket in sealed_buckets(readings).values() for leaf in bucket]
    return statement_wh(leaves, CLOCK.window(T), party, quantity, total, CLOCK.max_gap_ms)


@settings(max_examples=15, deadline=None)
@given(
    quantities=st.lists(st.integers(1, 900), min_size=1, max_size=3),
    extra_out=st.integers(0, 400),
    extra_in=st.lists(st.integers(0, 400), min_size=3, max_size=3),
)
def test_honest_parties_delivering_in_full_never_dispute(
    quantities: list[int], extra_out: int, extra_in: list[int]
) -> None:
    """A seller sells to 1-3 buyers, everything delivered; the seller exports its total and maybe more (to the
    grid), each buyer imports its quantity and maybe more (from the grid). Every statement is what the DSO
    would vouch for that side, and every trade settles on the two statements."""
    buyers = [f"b{i}" for i in range(len(quantities))]
    total = sum(quantities)
    readings = {"s": ramp(float(total + extra_out), export=True)}
    readings |= {
        b: ramp(float(q + extra_in[i]), export=False)
        for i, (b, q) in enumerate(zip(buyers, quantities, strict=True))
    }
    statements = {}
    for b, q in zip(buyers, quantities, strict=True):
        by_buyer, by_seller = says(readings[b], "buyer", q, q), says(readings["s"], "seller", q, total)
        proven_in_full = [(qj, Fraction(qj)) for qj in quantities]
        assert by_seller == meter_shares(Fraction(total + extra_out), proven_in_full)[buyers.index(b)] == q
        assert by_buyer == meter_shares(Fraction(q + extra_in[buyers.index(b)]), [(q, Fraction(q))])[0] == q
        statements[("s", b)] = (by_buyer, by_seller)
    sales = {("s", b): q for b, q in zip(buyers, quantities, strict=True)}
    m = market(sales, statements, readings=readings)
    for b in buyers:
        settled = query.settlement(m.chain.state, m.trade_id("s", b))
        assert settled is not None and settled["state"] == "settled"


def test_a_buyer_whose_seller_failed_states_pro_rata_and_so_disputes() -> None:
    """R11: b's meter shows 500 of its 1000 agreed; it cannot see that s delivered all 500 and c none, so it
    states 250 on each (its pro-rata share) and both trades are disputed: the DSO, which can read all three
    meters, settles them 500 and 0."""
    b_in = ramp(500.0, export=False)
    assert says(b_in, "buyer", 500, 1000) == 250
    readings = {"s": ramp(500.0, export=True), "c": ramp(0.0, export=True), "b": b_in}
    statements = {("s", "b"): (250, says(readings["s"], "seller", 500, 500)), ("c", "b"): (250, 0)}
    m = market({("s", "b"): 500, ("c", "b"): 500}, statements, readings=readings)
    assert {query.settlement(m.chain.state, m.trade_id(s, "b"))["state"] for s in ("s", "c")} == {"disputed"}  # type: ignore[index]

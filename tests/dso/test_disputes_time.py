"""The DSO's resolver against a party that decides the dispute with its own readings (review10 F1): readings
count only when their `der_commitment` was sealed in time (at most `seal_within_ms` after its commitment
interval ended, the chain's settle_wait_ms by default). On a real MGMC chain (`LocalChain`), block times on a
realistic clock (tests/dso/test_disputes.py `market`)."""

from __future__ import annotations

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger import query

from .test_disputes import CLOCK, Market, chain_time, market, ramp

WAIT_MS = 120_000  # the test genesis' settle_wait_ms: the sealing bound


def disputed(readings: dict[str, list[tuple[float, float, float]]], by_buyer: int, by_seller: int) -> Market:
    m = market({("s", "b"): 500}, {("s", "b"): (by_buyer, by_seller)}, readings=readings, wait_ms=WAIT_MS)
    assert query.settlement(m.chain.state, m.trade_id("s", "b"))["state"] == "disputed"  # type: ignore[index]
    return m


def test_readings_sealed_after_the_dispute_do_not_count() -> None:
    """review10 F1(b): the buyer states 0 and, once the trade is disputed, seals 'readings' of the window whose
    import counter never moves. Sealed long after their commitment interval ended, they count as never made."""
    m = disputed({"s": ramp(480.0, export=True)}, 0, 480)
    tid = m.trade_id("s", "b")
    # right after the dispute: its first commitment interval (16) ended 121 s before, more than the 120-s bound
    m.commit("b", ramp(0.0, export=False))
    assert m.chain.tip.time - 17 * CLOCK.commit_ms > WAIT_MS
    # without the time bound they would decide it: the DSO would settle 0 against the seller's metered 480
    fooled = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed)
    assert isinstance(fooled, Vouched) and fooled.delivered == 0
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Unresolved) and decision.why.startswith(
        "the buyer's metering: no meter readings"
    )
    assert "commitment interval 16 was sealed at" in decision.why and "it does not count" in decision.why


def test_the_sealing_bound_is_measured_from_each_commitment_intervals_end() -> None:
    """A commitment sealed exactly `seal_within_ms` after its interval ended counts; one ms later it does not."""
    m = disputed({"s": ramp(480.0, export=True)}, 300, 480)
    tid = m.trade_id("s", "b")
    m.commit("b", ramp(455.0, export=False))  # right after the statements: bucket 16 ended at 1 020 000 ms
    record = query.der_commitment(m.chain.state, m.nodes["b"].public, 16)
    assert record is not None
    located = m.chain.locate_tx(record["txid"])
    assert located is not None
    sealed_at = m.chain.header(located[0]).time
    after = sealed_at - 17 * CLOCK.commit_ms
    within = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m, after))
    assert isinstance(within, Vouched) and within.delivered == 455
    late = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m, after - 1))
    assert isinstance(late, Unresolved) and f"sealed at {sealed_at} ms, {after} ms after" in late.why

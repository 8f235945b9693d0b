"""The DSO's resolver against a party that decides the dispute with its own readings (review10 F1): readings
count only when their `der_commitment` was sealed in time (at most `seal_within_ms` after its commitment
interval ended, the chain's settle_wait_ms by default). On a real MGMC chain (`LocalChain`), block times on a
realistic clock (tests/dso/test_disputes.py `market`). And a dispute has a deadline (settle_wait_ms after the
second statement) after which a side that still cannot be metered loses the "smaller of the two" rule.
Property (hypothesis): the deadline rule equals an independent model for every metered/unmetered combination,
never pays the seller above its statement, and a withholding side never ends better than its counterparty's
own statement."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Unresolved, Vouched, resolve
from peergrid_ledger import query

from .test_disputes import CLOCK, Market, chain_time, market, ramp

WAIT_MS = 120_000  # the test genesis' settle_wait_ms: both the sealing bound and the dispute's deadline


def disputed(readings: dict[str, list[tuple[float, float, float]]], by_buyer: int, by_seller: int) -> Market:
    m = market({("s", "b"): 500}, {("s", "b"): (by_buyer, by_seller)}, readings=readings, wait_ms=WAIT_MS)
    assert query.settlement(m.chain.state, m.trade_id("s", "b"))["state"] == "disputed"  # type: ignore[index]
    return m


def deadline(m: Market) -> int:
    where = query.settlement(m.chain.state, m.trade_id("s", "b"))
    assert where is not None
    return max(int(s["time"]) for s in where["statements"].values()) + WAIT_MS


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


def test_withheld_readings_lose_the_dispute_at_its_deadline_not_before() -> None:
    """review10 F1(a): the buyer sealed its readings in time but never hands them over. Until the deadline the
    DSO waits (and says until when); from it, the seller's metered share settles the trade."""
    m = disputed({"s": ramp(480.0, export=True), "b": ramp(480.0, export=False)}, 0, 480)
    tid = m.trade_id("s", "b")
    buyer = m.nodes["b"].public
    m.sealed = {key: leaves for key, leaves in m.sealed.items() if key[0] != buyer}
    m.pass_time(deadline(m) - 1)
    waiting = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(waiting, Unresolved) and "readings are not at the DSO" in waiting.why
    assert f"from chain time {deadline(m)} ms the DSO settles without it" in waiting.why
    m.pass_time(deadline(m))
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and (decision.delivered, decision.rule) == (
        480,
        "seller metered only",
    )
    # the metered seller is never paid above its own statement: it said 450, its meter shows 480
    m = disputed({"s": ramp(480.0, export=True)}, 0, 450)
    m.pass_time(deadline(m))
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched) and decision.delivered == 450


def test_a_seller_that_cannot_be_metered_gets_the_buyers_word_as_far_as_its_meter_confirms() -> None:
    # a seller without a PCC meter (the DSO's config says so); one that has a meter and withholds its readings
    # settles at 0 instead (review12 F1: with the buyer's word it was paid for what the buyer took and owed
    # no compensation; test_disputes_withhold.py)
    m = disputed({"b": ramp(455.0, export=False)}, 300, 500)  # the seller's meter: nothing sealed
    m.pass_time(deadline(m))
    tid, meterless = m.trade_id("s", "b"), {m.anonyms["s"].public}
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), meterless)
    assert isinstance(decision, Vouched) and (decision.delivered, decision.rule) == (
        300,
        "buyer metered only",
    )
    withheld = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(withheld, Vouched) and (withheld.delivered, withheld.rule) == (0, "seller not metered")
    assert withheld.unmetered["seller"].startswith("no meter readings")


def test_when_neither_side_can_be_metered_the_lower_statement_settles() -> None:
    """Not 0: a buyer facing a seller without a meter would otherwise gain by withholding its own readings."""
    m = disputed({}, 120, 500)
    tid = m.trade_id("s", "b")
    before = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(before, Unresolved) and before.why.startswith("the seller's metering")
    m.pass_time(deadline(m))
    meterless = {m.anonyms["s"].public}  # the seller has no PCC meter; a metered one withholding settles at 0
    decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m), meterless)
    assert isinstance(decision, Vouched) and (decision.delivered, decision.rule) == (120, "neither metered")
    assert (
        decision.seller is None and decision.buyer is None and set(decision.unmetered) == {"seller", "buyer"}
    )


@settings(max_examples=25, deadline=None)
@given(
    seller_wh=st.integers(0, 700),
    buyer_wh=st.integers(0, 700),
    by_seller=st.integers(0, 500),
    by_buyer=st.integers(0, 500),
    give=st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
)
def test_the_deadline_rule_is_the_model_and_withholding_never_beats_the_counterpartys_word(
    seller_wh: int, buyer_wh: int, by_seller: int, by_buyer: int, give: tuple[bool, bool]
) -> None:
    if by_seller == by_buyer:
        by_buyer = (by_buyer + 1) % 501  # they must disagree for a dispute
    readings = {"s": ramp(float(seller_wh), export=True), "b": ramp(float(buyer_wh), export=False)}
    m = disputed(readings, by_buyer, by_seller)
    for mg, given_ in zip(("s", "b"), give, strict=True):
        if not given_:
            m.sealed = {k: v for k, v in m.sealed.items() if k[0] != m.nodes[mg].public}
    m.pass_time(deadline(m))
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert isinstance(decision, Vouched)
    s_share, b_share = min(500, seller_wh), min(500, buyer_wh)
    model = {
        (True, True): min(s_share, b_share),
        (True, False): min(s_share, by_seller),
        (False, True): 0,  # a seller with a meter that withholds its readings: delivered 0 (review12 F1)
        (False, False): 0,
    }[give]
    assert decision.delivered == model
    if give != (True, True):
        assert decision.delivered <= by_seller  # the seller is never paid above what it asked
    if give == (False, True):  # the seller withheld: it gets no more than the buyer itself admits
        assert decision.delivered <= by_buyer
    if give == (True, False):  # the buyer withheld: it pays what the seller asked, as far as its meter shows
        assert decision.delivered == min(s_share, by_seller)

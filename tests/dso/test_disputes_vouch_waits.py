"""The DSO's vouch waits for the readings its share reads (D4, D3's noticed race: /work/notes/d3/
vouch_buyer_present.py). On an agreed vouch (genesis `seller_vouched`) the seller's export is shared over its
disputed trades by what each buyer's meter proves, the vouch's own buyer among them; the buyer's own shortfall
on a priced vouch likewise by its sellers' meters. Before, the DSO took a buyer whose readings were not at the
DSO yet as having taken all it bought, at once: s sold 400 to b (vouch) and 200 to c (disputed), s exported
400, b and c imported 200 each: the vouch settled 200 with b's readings, 266 without (b paying for 66 Wh c
took) - the figure was the order in which readings arrived. Now the vouch waits for them until its deadline
(`takeup.VOUCH_RULE` of its window, as for an unmetered seller or buyer), naming whom it waits for; past it,
the silent counterparty is taken least in its favour. A vouch whose seller has no other disputed trade reads
no buyer's meter for the share (alone, the share is the seller's meter whatever the buyer's): it never waits.
On a real MGMC chain (`LocalChain`) through the resolver and the DSO node's settler."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peergrid_dso.disputes import Decision, Unresolved, Vouched, resolve
from peergrid_ledger import query
from peergrid_ledger.takeup import with_dso

from .test_disputes import CLOCK, Market, chain_time, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for

WAIT = 120_000
COVER = (300, 50)


def race(exports: dict[str, float], imports: dict[str, float], priced: bool = False) -> Market:
    """s sells 400 to b (both state 400: a vouch) and 200 to c (c says 150, s 200: disputed); with `s2`
    among the exports, b also buys 200 from s2 (b says 100, s2 200: disputed). Each MG's readings sealed in
    time (handed to the DSO in `m.sealed`)."""
    sales = {("s", "b"): 400, ("s", "c"): 200}
    statements = {("s", "b"): (400, 400), ("s", "c"): (150, 200)}
    if "s2" in exports:
        sales[("s2", "b")], statements[("s2", "b")] = 200, (100, 200)
    readings = {mg: ramp(wh, export=True) for mg, wh in exports.items()}
    readings.update({mg: ramp(wh, export=False) for mg, wh in imports.items()})
    return market(sales, statements, readings=readings, wait_ms=WAIT, cover=COVER if priced else None,
                  params={"seller_vouched": 1})  # fmt: skip


def given_readings(m: Market, mgs: set[str]) -> dict[tuple[bytes, int], list[bytes]]:
    """The sealed readings of `mgs` only: what the DSO holds when only theirs arrived."""
    nodes = {m.nodes[mg].public for mg in mgs}
    return {key: leaves for key, leaves in m.sealed.items() if key[0] in nodes}


def deadline(m: Market, tid: bytes) -> int:
    up = with_dso(query.trade(m.chain.state, tid), m.chain.tip.time)  # type: ignore[arg-type]
    assert up is not None and up.kind == "vouching"
    return up.rules_from(WAIT)


def figures(d: Decision) -> tuple[int, tuple[int, int] | None]:
    assert isinstance(d, Vouched), d
    return d.delivered, d.shorts


def test_the_vouch_waits_for_its_buyers_readings_and_settles_the_same_whenever_they_come() -> None:
    """D3's case: with b's readings 200 at once; without them the DSO waits (naming b and why) until the
    deadline - then b's late readings give the same 200; past the deadline without them, b is taken as having
    taken all 400 it bought: 266 (the silent-counterparty rule)."""
    m = race({"s": 400.0}, {"b": 200.0, "c": 200.0})
    tid, until = m.trade_id("s", "b"), None
    every = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert figures(every) == (200, None) and every.rule == "seller metered short of the agreement"  # type: ignore[union-attr]
    early = given_readings(m, {"s", "c"})
    waiting = resolve(m.chain.state, tid, CLOCK, m.node_of(), early, chain_time(m))
    until = deadline(m, tid)
    assert isinstance(waiting, Unresolved) and waiting.until_ms == until
    b = m.anonyms["b"].public.hex()[:16]
    assert f"the seller's share by its counterparties' meters waits for {b}…" in waiting.why
    assert "are not at the DSO" in waiting.why  # the edge's `readings_missing` posts again on it
    m.pass_time(until - 1)
    assert isinstance(resolve(m.chain.state, tid, CLOCK, m.node_of(), early, chain_time(m)), Unresolved)
    late = resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert figures(late) == figures(every)
    m.pass_time(until)
    lapsed = resolve(m.chain.state, tid, CLOCK, m.node_of(), early, chain_time(m))
    assert figures(lapsed) == (266, None)
    assert lapsed.seller is not None and lapsed.seller.shared_by.endswith("least in their favour")  # type: ignore[union-attr]
    assert figures(resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))) == (200, None)


def test_the_vouch_waits_for_a_sibling_disputes_counterparty_too() -> None:
    """c's readings (the buyer of s's disputed sale) decide the vouch's share as much as b's: waited for."""
    m = race({"s": 400.0}, {"b": 200.0, "c": 200.0})
    tid = m.trade_id("s", "b")
    waiting = resolve(m.chain.state, tid, CLOCK, m.node_of(), given_readings(m, {"s", "b"}), chain_time(m))
    assert isinstance(waiting, Unresolved) and m.anonyms["c"].public.hex()[:16] in waiting.why


def test_a_vouch_alone_never_waits_for_its_buyers_meter() -> None:
    """s's only sale: its share is its meter's whatever b's shows (b posts none on an unpriced chain, 42b2fda):
    settled at once without b's readings, as before."""
    m = market({("s", "b"): 400}, {("s", "b"): (400, 400)}, readings={"s": ramp(300.0, export=True)},
               wait_ms=WAIT, params={"seller_vouched": 1})  # fmt: skip
    decision = resolve(m.chain.state, m.trade_id("s", "b"), CLOCK, m.node_of(), m.sealed, chain_time(m))
    assert figures(decision) == (300, None)


def test_the_buyers_own_shortfall_waits_for_its_other_sellers_readings() -> None:
    """Priced: b bought 400 from s (vouch; s exported 200) and 200 from s2 (disputed; s2 exported 200), b
    imported 400. b's import shared by its sellers' meters (s proves 133 of the vouch, its export pro rata
    over its 600 sold; s2 200): 200 on the vouch, so b is 200 short (the gap): no compensation. Without s2's
    readings the DSO waits; past the deadline s2 is taken as having delivered nothing of b's import: 285 on
    the vouch, b 115 short."""
    m = race({"s": 200.0, "s2": 200.0}, {"b": 400.0, "c": 0.0}, priced=True)
    tid = m.trade_id("s", "b")
    assert figures(resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m))) == (
        200,
        (200, 200),
    )
    without = given_readings(m, {"s", "b", "c"})
    waiting = resolve(m.chain.state, tid, CLOCK, m.node_of(), without, chain_time(m))
    assert (
        isinstance(waiting, Unresolved) and "the buyer's share by its counterparties' meters" in waiting.why
    )
    assert m.anonyms["s2"].public.hex()[:16] in waiting.why
    m.pass_time(deadline(m, tid))
    assert figures(resolve(m.chain.state, tid, CLOCK, m.node_of(), without, chain_time(m))) == (
        200,
        (200, 115),
    )


def test_the_dso_node_settles_the_vouch_when_the_late_readings_arrive() -> None:
    """Through the DSO node: s's and c's readings first, the vouch unresolved (no settle sent); b's arrive
    (kept: the pending vouch reads b) and the next pass settles 200, as with all of them at once."""
    m = race({"s": 400.0}, {"b": 200.0, "c": 200.0})
    tid = m.trade_id("s", "b")
    settler, adapter, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    hand_over(m, settler, "c")
    asyncio.run(settler.settle_one(tid))
    assert adapter.sent == [] and "waits for" in settler.decision(tid)["why"]  # type: ignore[index]
    hand_over(m, settler, "b")
    assert settler.pending[tid] == 0.0  # due again: its readings arrived
    asyncio.run(settler.settle_one(tid))
    assert [body for _, _, body, _ in adapter.sent] == [{"trade": tid, "delivered": 200}]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    exports=st.tuples(st.integers(0, 600), st.integers(0, 200)),
    imports=st.tuples(st.integers(0, 600), st.integers(0, 300)),
    priced=st.booleans(),
    order=st.permutations(["s", "s2", "b", "c"]),
)
def test_the_vouchs_figure_never_depends_on_the_order_readings_arrive_in(
    exports: tuple[int, int], imports: tuple[int, int], priced: bool, order: list[str]
) -> None:
    """Any meters, priced or not, readings arriving one MG at a time in any order before the deadline: each
    decision on the way is a wait (with its deadline) or the one the DSO makes with every reading, and once
    all arrived it makes it."""
    m = race({"s": float(exports[0]), "s2": float(exports[1])}, {"b": float(imports[0]), "c": float(imports[1])},
             priced)  # fmt: skip
    tid = m.trade_id("s", "b")
    whole = figures(resolve(m.chain.state, tid, CLOCK, m.node_of(), m.sealed, chain_time(m)))
    for arrived in range(len(order) + 1):
        held = given_readings(m, set(order[:arrived]))
        decision = resolve(m.chain.state, tid, CLOCK, m.node_of(), held, chain_time(m))
        if isinstance(decision, Unresolved):
            assert arrived < len(order) and decision.until_ms == deadline(m, tid)
        else:
            assert figures(decision) == whole, (order[:arrived], decision)

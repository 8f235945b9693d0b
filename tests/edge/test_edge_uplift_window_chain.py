"""The edge's make-whole claim and the chain's bound agree on the MGMC's trading window (#7: the bound over the
member's own window).

On a real chain (market, exchange, uplift contracts, settle_by_both: the DSO's cover prices retail 0.30 / feed-in 0.05 for
both MGs in every interval): a PV MG (10 kW, no load, `max_quantity` 10 kWh a chain interval) sells 1 kWh at
the closing price 0.20 in one interval of a session, its buyer a peer. Its forward accept states its window
(`forward_first.with_window`, as `ForwardAgent` posts it); its claim (`claim_for`) deviates over the window
the chain holds, the one `uplift.gain_bound` sums over. Two shapes: a hand-checkable 4-hour day (window
chain intervals 1-2) and the lab's (96 quarter-hours, the MGMC trading 36-37). Before the window was on the
chain, the bound summed over the whole session, so the whole session's deviation gain (what an MGMC over-
claims when it counts intervals it never trades) was taken; now it is refused and the honest claim paid.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from uplift_chain import FEED_IN, RETAIL, Parties, covered_chain, ok

from peergrid_controller.model import ContractRules, Load, Microgrid, PvArray, Tariff
from peergrid_edge.dayahead_uplift import claim_for
from peergrid_edge.forward_clean import accept_body
from peergrid_edge.forward_first import stated_window, with_window
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_state, uplift
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Rejected

NAME = "day"
PRICE_NANO = 200_000_000  # 0.20 per kWh: 200 micro-units per Wh on the tick
SPREAD = max(RETAIL - 200, 200 - FEED_IN)  # 150 micro-units per Wh
# the PV MG's max_quantity rule (Wh a chain interval), its own and on the chain: its PV's 10 kWh an hour at most,
# so the rule never caps its deviation
MAX_WH = 10_000
SOLD_WH = 1_000


def key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"edge-uplift-window/" + name.encode()).digest())


AUTHORITY, DSO, SOLO, PEER = key("authority"), key("dso"), key("solo"), key("peer")


@dataclass(frozen=True)
class Shape:
    intervals: int
    hours: float  # interval length
    window: range  # the chain intervals the MGMC trades
    sold_in: int  # the chain interval of its forward sale


HAND = Shape(4, 1.0, range(1, 3), 1)
LAB = Shape(96, 0.25, range(36, 38), 36)


def pv_mg(shape: Shape) -> Microgrid:
    n = shape.intervals
    return Microgrid(
        "solo", Tariff((0.30,) * n, (0.05,) * n), pv=(PvArray("pv", (10.0,) * n),),
        loads=(Load("none", (0.0,) * n, (0.0,) * n),), rules=ContractRules(max_quantity_kwh=MAX_WH / 1000),
    )  # fmt: skip


def cleared_day(shape: Shape, state_window: bool, chain_wh: int = MAX_WH) -> LocalChain:
    """The session opened, posted, stepped, closed, accepted (SOLO stating its window when `state_window`, as
    the edge's first accept does) and cleared: SOLO sells SOLD_WH to PEER in `shape.sold_in`; `chain_wh` each
    one's max_quantity rule on the chain."""
    chain = covered_chain(
        "edge-uplift-window", Parties(AUTHORITY, DSO, SOLO, PEER), chain_wh, shape.intervals
    )
    n, t = shape.intervals, shape.sold_in
    opening = {"session": NAME, "first_interval": 0, "members": [SOLO.public, PEER.public],
               "prices": [PRICE_NANO] * n, "rho": 5_000_000}  # fmt: skip
    ok(chain.sign_and_submit(DSO, "exchange.open", opening))
    sale = [SOLD_WH if i == t else 0 for i in range(n)]
    for k, row in ((SOLO, sale), (PEER, [-q for q in sale])):
        ok(chain.sign_and_submit(k, "exchange.position", {"session": NAME, "iteration": 0, "positions": row}))
    ok(chain.sign_and_submit(DSO, "exchange.step", {"session": NAME, "iteration": 0, "rho": 5_000_000}))
    ok(chain.sign_and_submit(DSO, "exchange.close", {"session": NAME, "iteration": 1}))
    chain.seal()
    record = exchange_state.session(chain.state, NAME)
    assert record is not None
    body = accept_body(NAME, sale, True, False)
    ok(
        chain.sign_and_submit(
            SOLO, "exchange.accept", with_window(body, shape.window, record) if state_window else body
        )
    )
    ok(chain.sign_and_submit(PEER, "exchange.accept", accept_body(NAME, [-q for q in sale], False, False)))
    ok(chain.sign_and_submit(DSO, "exchange.clear", {"session": NAME}))
    chain.seal()
    return chain


def post_claim(chain: LocalChain, who: Keypair, gain: int, surplus: int = 0) -> Accepted | Rejected:
    result = chain.sign_and_submit(who, "uplift.claim", {"session": NAME, "gain": gain, "surplus": surplus})
    chain.seal()
    return result


def record_of(chain: LocalChain) -> dict[str, Any]:
    record = exchange_state.session(chain.state, NAME)
    assert record is not None
    return record


@pytest.mark.parametrize("shape", [HAND, LAB], ids=["hand", "lab"])
def test_the_honest_claim_over_the_stated_window_is_paid_and_the_whole_sessions_refused(shape: Shape) -> None:
    mg, dt = pv_mg(shape), shape.hours
    per_interval = 10.0 * dt * 0.15  # all its PV sold at 0.20 instead of fed in at 0.05
    # before: no window on the chain, the bound is the session's, and the whole session's gain is taken
    before = cleared_day(shape, state_window=False)
    bound_before = uplift.gain_bound(before.state, record_of(before), SOLO.public)
    assert bound_before == MAX_WH * SPREAD * shape.intervals
    over = claim_for(mg, dt, before.state, NAME, SOLO.public)  # deviating in every interval of the session
    sold_kwh = SOLD_WH / 1000
    assert over.deviation_gain == pytest.approx(
        (10.0 * dt - sold_kwh) * 0.15 + (shape.intervals - 1) * per_interval
    )
    ok(post_claim(before, SOLO, over.gain))
    # now: the edge's first accept states its window, the chain keeps it and bounds the gain over it alone
    chain = cleared_day(shape, state_window=True)
    record = record_of(chain)
    assert stated_window(shape.window, record) == [shape.window[0], shape.window[-1]]
    assert exchange_state.trading_window(chain.state, NAME, SOLO.public) == shape.window
    bound = uplift.gain_bound(chain.state, record, SOLO.public, shape.window)
    assert bound == MAX_WH * SPREAD * len(shape.window) < over.gain
    # the claim reads the chain's window, whatever the caller passes (here the whole session): they agree
    honest = claim_for(mg, dt, chain.state, NAME, SOLO.public, window=range(0, shape.intervals))
    assert honest == claim_for(mg, dt, chain.state, NAME, SOLO.public, window=shape.window)
    want = (10.0 * dt - sold_kwh) * 0.15 + (len(shape.window) - 1) * per_interval
    assert honest.deviation_gain == pytest.approx(want, abs=1e-6) and 0 < honest.gain <= bound
    refused = post_claim(chain, SOLO, over.gain)  # the whole session's gain: over the window's bound
    assert isinstance(refused, Rejected) and f"above {bound}" in refused.detail
    assert f"trading window {shape.window[0]}..{shape.window[-1]}" in refused.detail
    assert uplift.claim(chain.state, NAME, SOLO.public) is None
    assert paid(chain, shape, honest.gain, honest.surplus) == honest.gain


def paid(chain: LocalChain, shape: Shape, gain: int, surplus: int) -> int:
    """SOLO claims `gain` and `surplus`, PEER funds it, both settle the sale and the uplift is settled: what
    SOLO received."""
    ok(post_claim(chain, SOLO, gain, surplus))
    ok(post_claim(chain, PEER, 0, 10**8))  # the payer's claimed surplus funds it
    after = 10_000  # block time (ms) past the interval's end on the chain's 1-ms interval clock
    for tid, agreed in query.trades(chain.state, shape.sold_in):  # both state all of it delivered
        delivered = {"trade": tid, "delivered": agreed["quantity"]}
        ok(chain.sign_and_submit(SOLO, "settle", {**delivered, "short": 0}, time_ms=after))
        ok(chain.sign_and_submit(PEER, "settle", delivered, time_ms=after))
    chain.seal(after)
    paid_before = query.balance(chain.state, SOLO.public)
    ok(chain.sign_and_submit(PEER, "uplift.settle", {"session": NAME}))
    chain.seal()
    done = uplift.outcome(chain.state, NAME)
    assert done is not None and done["credits"] == [[SOLO.public, gain]]
    return query.balance(chain.state, SOLO.public) - paid_before


def test_an_honest_gain_over_the_chains_bound_is_claimed_at_the_bound_and_paid_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review18 C-2: the chain refuses a gain above its bound whole (and the MG was paid nothing); its rule here
    is 2 kWh an interval while its PV could deviate with 10 (a connection smaller than its DERs), so its honest
    gain 2.85 is above the bound 2000 Wh x 150 x 2 intervals = 0.6: it claims 0.6, logged, and is paid it."""
    shape = HAND
    chain = cleared_day(shape, state_window=True, chain_wh=2_000)
    bound = uplift.gain_bound(chain.state, record_of(chain), SOLO.public, shape.window)
    assert bound == 2_000 * SPREAD * len(shape.window) == 600_000
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.uplift"):
        claim = claim_for(pv_mg(shape), shape.hours, chain.state, NAME, SOLO.public)
    assert claim.deviation_gain == pytest.approx(9 * 0.15 + 10 * 0.15) and claim.gain == claim.bound == bound
    assert "a gain of 2850000 micro-units claimed at 600000, the chain's bound" in caplog.text
    assert paid(chain, shape, claim.gain, claim.surplus) == bound

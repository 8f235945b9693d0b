"""E4 (U4's F7): on a sealed chain a trade stands on one party's commitment between its parties' two
commitments; the edge posts its PCC readings for a lone word only once the DSO meters it (`takeup`'s
`LONE_FROM` of the wait), not for that transient. Before, every MGMC that watched the interval started posting at
the first commitment, met the DSO after the second (the trade the parties' again: nothing pending) and logged
"dispute readings ... refused (409): no pending dispute" for each trade (U4's settle-by-both lab: 4, 7 and 3
at once, 44 of 44 lone words that transient, every trade settled).

On a real sealed MGMC chain (`LocalChain`, tests/dso's market); the rule is `pcc_readings.readings_needed` at
the chain's time, what the agent's watch (`agent_settlement.counterparty_readings`) posts for.
"""

from __future__ import annotations

from dso.test_disputes import END_MS, T, market, ramp
from dso.test_disputes_node import settler_for

from peergrid_edge.pcc_readings import readings_needed
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.takeup import with_dso

WAIT_MS = 120_000


def commit(m, mg: str, tid: bytes) -> None:  # type: ignore[no-untyped-def]
    seal = seal_of(m.chain.genesis.chain, tid, m.anonyms[mg].public, 400, 0, bytes([len(mg)]) * 32)
    m.do(m.anonyms[mg], "settle", {"trade": tid, "seal": seal}, max(m.now, END_MS))


def seller_committed():  # type: ignore[no-untyped-def]
    """A sealed market of one trade, seller s to buyer b (400 Wh metered each way), the seller's commitment
    made: (the market, the trade's id)."""
    readings = {"s": ramp(400.0, export=True), "b": ramp(400.0, export=False)}
    m = market({("s", "b"): 400}, {}, readings=readings, wait_ms=WAIT_MS, cover=(300, 50),
               params={"sealed_statements": 1})  # fmt: skip
    tid = m.trade_id("s", "b")
    commit(m, "s", tid)
    return m, tid


def test_one_commitment_is_posted_for_only_once_the_dso_meters_it() -> None:
    m, tid = seller_committed()
    now = m.chain.tip.time
    taken = with_dso(query.trade(m.chain.state, tid), now)  # type: ignore[arg-type]
    assert taken is not None and taken.kind == "lone" and taken.meters_from_ms > now
    trades = query.trades(m.chain.state, T)
    # the buyer may still commit: nobody posts yet (before: both posted at once)
    assert [readings_needed(trades, m.anonyms[mg].public, now) for mg in ("s", "b")] == [[], []]
    # the DSO meters the lone word from here: both post (the seller's export, the buyer's import)
    at = taken.meters_from_ms
    assert [readings_needed(trades, m.anonyms[mg].public, at) for mg in ("s", "b")] == [[tid], [tid]]
    # at an unknown time the rule is as before: posted at once
    assert readings_needed(trades, m.anonyms["s"].public, None) == [tid]


def test_the_second_commitment_in_time_leaves_nothing_to_post_and_the_dso_wants_nothing() -> None:
    """The normal sealed flow: the buyer commits a block later. Nothing to post at either time, and the DSO
    node holds nothing pending for it (the post U4 saw refused with 409 is never made)."""
    m, tid = seller_committed()
    first = m.chain.tip.time
    commit(m, "b", tid)
    trades = query.trades(m.chain.state, T)
    for now in (first, m.chain.tip.time):
        assert [readings_needed(trades, m.anonyms[mg].public, now) for mg in ("s", "b")] == [[], []]
    settler, _, _ = settler_for(m)
    settler.look_everywhere()
    settler._take_candidates()
    assert settler.pending == {}

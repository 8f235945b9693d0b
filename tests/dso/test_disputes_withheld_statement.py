"""A revealed statement whose counterparty committed and kept its reveal back, and nobody repeats it (D4, D3's
"not covered": /work/notes/d4/takeup_gap.py). On a sealed chain such a trade settles on the stater's repeat
after the reveal deadline (the withholder at its worst; with `seller_vouched` held for the DSO's meter,
`market_vouch`). A stater that never repeats (down after its reveal) left it "stated" for ever: the DSO never
took it up (`takeup.waits_for_dso`: two parties spoke, one revealed), nobody was paid, and a sibling took it at
that statement for good. Measured before (priced 300/50, price 200): s sold 400 to b (b withheld) and 200 to c
(disputed), s exported 400, b and c imported 200 each: c's trade settled 0 delivered, s paid c 20,000
compensation for the 200 Wh c took from it, b paid nothing for its 200. Now the DSO takes it up at the reveal
deadline (`takeup` "withheld") and settles it as the stater's repeat would: with seller_vouched as the hold
(the seller's meter decides, the buyer's shortfall by its own), else the contract's penalty; so the figures
are the same whoever moves first. On a real sealed MGMC chain through the DSO node's settler."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from peergrid_dso.dispute_node import DisputeSettler
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of
from peergrid_ledger.takeup import waits_for_dso

from .test_disputes import CLOCK, END_MS, Market, market, ramp
from .test_disputes_node import MarketAdapter, final_blocks, hand_over

WAIT = 120_000
COVER = (300, 50)


def _salt(m: Market, mg: str, tid: bytes) -> bytes:
    return hashlib.sha256(b"salt/" + m.anonyms[mg].public + tid).digest()


def _commit(m: Market, mg: str, tid: bytes, said: int, short: int, at: int | None = None) -> None:
    key = m.anonyms[mg]
    seal = seal_of(m.chain.genesis.chain, tid, key.public, said, short, _salt(m, mg, tid))
    m.do(key, "settle", {"trade": tid, "seal": seal}, at)


def _reveal(m: Market, mg: str, tid: bytes, said: int, short: int) -> None:
    m.do(
        m.anonyms[mg], "settle", {"trade": tid, "delivered": said, "short": short, "salt": _salt(m, mg, tid)}
    )


def kept_back(silent: str, repeat: bool, vouched: bool = True) -> tuple[Market, bytes, bytes, dict[str, int]]:
    """s sells 400 to b and 200 to c, priced. On s->b both commit; the `silent` party never reveals, the other
    reveals (s: 400 short 0; b: 300 short 0) and repeats it at the reveal deadline only if `repeat`. On s->c
    both reveal (c 150 short 50, s 200 short 0): disputed. Meters: s exported 400 (300 where b is the stater),
    b and c imported 200 each (b 300 where it states). (market, the s->b trade, the s->c trade, each MG's balance before any settle)."""
    s_out, b_in = (400.0, 200.0) if silent == "buyer" else (300.0, 300.0)
    readings = {"s": ramp(s_out, export=True), "b": ramp(b_in, export=False), "c": ramp(200.0, export=False)}
    params = {"sealed_statements": 1, **({"seller_vouched": 1} if vouched else {})}
    m = market({("s", "b"): 400, ("s", "c"): 200}, {}, readings=readings, wait_ms=WAIT, cover=COVER,
               params=params)  # fmt: skip
    tid, sib = m.trade_id("s", "b"), m.trade_id("s", "c")
    start = {mg: query.balance(m.chain.state, k.public) for mg, k in m.anonyms.items()}
    stater, said = ("s", 400) if silent == "buyer" else ("b", 300)
    _commit(m, "b", tid, said, 0, max(m.now, END_MS))
    _commit(m, "s", tid, said, 0)
    _reveal(m, stater, tid, said, 0)
    _commit(m, "c", sib, 150, 50)
    _commit(m, "s", sib, 200, 0)
    _reveal(m, "c", sib, 150, 50)
    _reveal(m, "s", sib, 200, 0)
    if repeat:
        m.pass_time(int(query.settlement(m.chain.state, tid)["deadline"]))  # type: ignore[index]
        m.do(m.anonyms[stater], "settle", {"trade": tid, "delivered": said, "short": 0})
    return m, tid, sib, start


def dso_settles(
    m: Market, trades: list[bytes], start: dict[str, int]
) -> tuple[dict[bytes, Any], dict[str, int]]:
    """The DSO node over three chain waits in quarter-wait steps, every MG's readings offered whenever a
    pending trade reads them: each trade's settlement, and each MG's net balance change since `start`
    (before any settle: a repeat's payment counts too)."""
    settler = DisputeSettler(MarketAdapter(m), m.dso, CLOCK, m.node_of(), retry_s=30.0)
    since, t0 = final_blocks(m, settler), m.now
    for step in range(12):
        m.pass_time(t0 + step * WAIT // 4)
        since = final_blocks(m, settler, since)
        for mg in m.anonyms:
            if any(m.nodes[mg].public == node for reads in settler.reads.values() for node, _ in reads):
                hand_over(m, settler, mg)
        for tid in list(settler.pending):
            settler.pending[tid] = 0.0
        asyncio.run(settler.settle_due())
        since = final_blocks(m, settler, since)
    done = {tid: query.settlement(m.chain.state, tid) for tid in trades}
    return done, {mg: query.balance(m.chain.state, k.public) - start[mg] for mg, k in m.anonyms.items()}


def _paid(settlement: dict[str, Any] | None) -> dict[str, Any]:
    assert settlement is not None and settlement["state"] == "settled", settlement
    return {
        k: settlement["settlement"].get(k) for k in ("delivered", "seller_short", "buyer_short", "amount")
    }


def test_a_withheld_buyer_nobody_repeats_is_metered_by_the_dso() -> None:
    """The measured case: both trades settle 200 by the meters (b took 200 of s's 400, c the other 200), each
    buyer pays 40,000, s is paid 80,000 for its 400; the DSO took the trade up at the reveal deadline."""
    m, tid, sib, start = kept_back("buyer", repeat=False)
    due = int(query.settlement(m.chain.state, tid)["deadline"])  # type: ignore[index]
    assert waits_for_dso(query.trade(m.chain.state, tid), due - 1) is None  # type: ignore[arg-type]
    assert waits_for_dso(query.trade(m.chain.state, tid), due) == "withheld"  # type: ignore[arg-type]
    done, net = dso_settles(m, [tid, sib], start)
    assert _paid(done[tid])["delivered"] == 200 and done[tid]["settlement"]["basis"] == "dso"  # type: ignore[index]
    assert _paid(done[sib])["delivered"] == 200
    assert net == {"b": -40_000, "c": -40_000, "s": 80_000}


@pytest.mark.parametrize("silent", ["buyer", "seller"])
def test_the_dso_settles_as_the_staters_repeat_would(silent: str) -> None:
    """Whoever moves first - the stater's repeat (a withheld hold the DSO vouches) or nobody (the DSO takes
    the statement up) - each trade settles at the same figures and every MG nets the same. A withheld
    seller (b states 300; s exported 300, b imported 300, c 200): metered as a dispute in which the seller
    said nothing, s's 300 shared over b's 300 and c's 200 by their meters: 180 on it."""
    m, tid, sib, start = kept_back(silent, repeat=False)
    r, rtid, rsib, rstart = kept_back(silent, repeat=True)
    assert "vouch" in query.trade(r.chain.state, rtid)  # type: ignore[operator]
    done, net = dso_settles(m, [tid, sib], start)
    by_repeat, net_repeat = dso_settles(r, [rtid, rsib], rstart)
    assert (_paid(done[tid]), _paid(done[sib])) == (_paid(by_repeat[rtid]), _paid(by_repeat[rsib]))
    assert net == net_repeat
    if silent == "seller":
        assert _paid(done[tid])["delivered"] == 180


@pytest.mark.parametrize("silent", ["buyer", "seller"])
def test_without_seller_vouched_the_dso_settles_the_penalty_the_repeat_pays(silent: str) -> None:
    """Without seller_vouched the repeat pays the withholder's worst case (`market_sealed.withheld`): a silent
    buyer took all 400, a silent seller delivered nothing and owns the whole 400 short. The DSO settles the
    trade the same, so taking it up changes no incentive of that chain. Its sibling counts it at what the
    meters give it, whoever moved first (review22 F2, `dispute_shares.at_penalty`; 2191dc0 took it at the
    penalty: c's trade 0): through the DSO node, which reads the withholder's meter for the sibling after
    the stater's repeat too (`disputes.read_nodes`), c's trade settles 200 (b took 200 of s's 400) where b
    withheld, 120 where s did (s's 300 shared over b's 300 and c's 200), and every MG nets the same."""
    m, tid, sib, start = kept_back(silent, repeat=False, vouched=False)
    r, rtid, rsib, rstart = kept_back(silent, repeat=True, vouched=False)
    done, net = dso_settles(m, [tid, sib], start)
    by_repeat, net_repeat = dso_settles(r, [rtid, rsib], rstart)
    assert _paid(done[tid])["delivered"] == (400 if silent == "buyer" else 0)
    assert done[tid]["settlement"]["basis"] == "dso"  # type: ignore[index]
    assert _paid(done[tid]) == _paid(by_repeat[rtid])
    assert _paid(done[sib]) == _paid(by_repeat[rsib]) and _paid(done[sib])["delivered"] == (
        200 if silent == "buyer" else 120
    )
    assert net == net_repeat

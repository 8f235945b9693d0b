"""review15 M4 on one `sealed_statements` + `seller_vouched` chain with the DSO node (`DisputeSettler` over the
chain's blocks, the MGs' sealed readings handed over): a seller that committed and is down past the reveal
window is held at the trade's quantity, so the DSO pays from its meter alone, min(its share, the quantity),
and the buyer's word moves nothing. Before (355c987) it was held at the buyer's word: a buyer that always
commits "delivered 0, short 0" took a crashed seller's metered 400 Wh free and was paid compensation on it.
The seller's meter shows 400 exported, the buyer's 400 imported; price 200, retail 300, feed-in 50.
Fixtures: tests/dso (the DSO's chain market and settler).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection

import pytest
from dso.test_disputes import CLOCK, END_MS, PRICE, Market, market, ramp
from dso.test_disputes_node import MarketAdapter, final_blocks, hand_over

from peergrid_dso.dispute_node import DisputeSettler
from peergrid_ledger import query
from peergrid_ledger.contracts.market_sealed import seal_of

WAIT = 120_000  # ms: settle_wait_ms
RETAIL, FEED_IN = 300, 50
QUANTITY = 400


def _salt(m: Market, mg: str, tid: bytes) -> bytes:
    return hashlib.sha256(b"salt/" + m.anonyms[mg].public + tid).digest()


def settled_by_the_dso(
    buyer_says: int,
    seller_up: bool,
    seller_wh: float = 400.0,
    buyer_wh: float = 400.0,
    meterless: Collection[str] = (),
    buyer_short: int = 0,
    seller_says: tuple[int, int] = (QUANTITY, 0),
    silent: Collection[str] = (),
) -> tuple[str, list[dict[str, int]], dict[str, object], int, int]:
    """Both commit after the interval (the seller `seller_says`, the buyer `buyer_says` `buyer_short`); the buyer
    reveals; the seller reveals too (`seller_up`) or its Pi is down past the reveal deadline, where the buyer's
    edge repeats its lone statement. Then the DSO node settles what waits for it (rounds a half window
    apart), every MG's readings handed over but the meterless' and the `silent` ones'. (state before the DSO,
    what the DSO sent, the settlement, the seller's and the buyer's net)"""
    readings = {mg: ramp(wh, export=mg == "s") for mg, wh in (("s", seller_wh), ("b", buyer_wh))}
    m = market({("s", "b"): QUANTITY}, {}, readings=readings, wait_ms=WAIT, cover=(RETAIL, FEED_IN),
               params={"seller_vouched": 1, "sealed_statements": 1})  # fmt: skip
    tid, chain = m.trade_id("s", "b"), m.chain.genesis.chain
    s, b = m.anonyms["s"], m.anonyms["b"]
    before = {k: query.balance(m.chain.state, k.public) for k in (s, b)}
    bseal = seal_of(chain, tid, b.public, buyer_says, buyer_short, _salt(m, "b", tid))
    m.do(b, "settle", {"trade": tid, "seal": bseal}, END_MS)
    m.do(s, "settle", {"trade": tid, "seal": seal_of(chain, tid, s.public, *seller_says, _salt(m, "s", tid))})
    m.do(
        b, "settle", {"trade": tid, "delivered": buyer_says, "short": buyer_short, "salt": _salt(m, "b", tid)}
    )
    if seller_up:
        m.do(s, "settle", {"trade": tid, "delivered": seller_says[0], "short": seller_says[1],
                           "salt": _salt(m, "s", tid)})  # fmt: skip
    else:
        m.pass_time(int(query.settlement(m.chain.state, tid)["deadline"]))  # type: ignore[index]
        m.do(b, "settle", {"trade": tid, "delivered": buyer_says, "short": buyer_short})
    waiting = query.settlement(m.chain.state, tid)
    assert waiting is not None
    adapter = MarketAdapter(m)
    nodes = m.node_of()
    settler = DisputeSettler(adapter, m.dso, CLOCK, nodes, retry_s=30.0,
                             meterless=frozenset(m.anonyms[mg].public for mg in meterless))  # fmt: skip
    since = final_blocks(m, settler)
    for mg in ("s", "b"):
        if mg not in meterless and mg not in silent:
            hand_over(m, settler, mg)
    for _ in range(4):
        asyncio.run(settler.settle_due())
        if query.settlement(m.chain.state, tid)["state"] == "settled":  # type: ignore[index]
            break
        m.pass_time(m.now + WAIT // 2)
        since = final_blocks(m, settler, since)
    done = query.settlement(m.chain.state, tid)
    assert done is not None and done["state"] == "settled", done
    sent = [{k: v for k, v in body.items() if k != "trade"} for _, _, body, _ in adapter.sent]
    net = [query.balance(m.chain.state, k.public) - before[k] for k in (s, b)]
    return str(waiting["state"]), sent, done["settlement"], net[0], net[1]


@pytest.mark.parametrize("buyer_says", [400, 0])
def test_r15_m4_a_crashed_seller_is_paid_from_its_meter_whatever_the_buyer_says(buyer_says: int) -> None:
    """The review's first two rows: the buyer's 400 and its lie, 0, settle alike, as the seller's meter shows
    (the second used to pay the seller -40,000 and the buyer +40,000)."""
    waiting, sent, done, seller, buyer = settled_by_the_dso(buyer_says, seller_up=False)
    assert waiting == "vouching"
    assert sent == [{"delivered": QUANTITY, "seller_short": 0, "buyer_short": 0}]
    assert (done["basis"], done["delivered"]) == ("dso", QUANTITY)
    assert (seller, buyer) == (QUANTITY * PRICE, -QUANTITY * PRICE)  # +80,000 / -80,000


def test_r15_m4_a_lying_buyer_against_a_seller_that_reveals_is_metered_as_before() -> None:
    """The review's third row, unchanged: both reveal, they disagree, the DSO meters both sides."""
    waiting, sent, done, seller, buyer = settled_by_the_dso(0, seller_up=True)
    assert waiting == "disputed" and done["basis"] == "dso"
    assert sent == [{"delivered": QUANTITY, "seller_short": 0, "buyer_short": 0}]
    assert (seller, buyer) == (QUANTITY * PRICE, -QUANTITY * PRICE)


def test_r15_m4_a_crashed_seller_metered_short_owes_its_metered_gap_only() -> None:
    """The seller's meter shows 250 of 400: paid 250, compensating the buyer for its 150 Wh gap (retail less
    the price), not for the whole quantity; the buyer's word (0) takes nothing off."""
    _, sent, done, seller, buyer = settled_by_the_dso(0, seller_up=False, seller_wh=250.0)
    assert done["delivered"] == 250
    assert sent == [{"delivered": 250, "seller_short": 150, "buyer_short": 0}]
    assert seller == 250 * PRICE - 150 * (RETAIL - PRICE) and buyer == -seller


# K3's property (keeping a reveal back never nets more than revealing) with the DSO vouching: a withheld
# seller's hold carries `release`, and the DSO meters it as a dispute in which the seller said nothing (both
# meters, the buyer's readings posted by its edge), or pays a meterless one the `release` (dso-server
# disputes.resolve/_vouch).


@pytest.mark.parametrize(
    ("delivered", "buyer_says", "seller_reveals", "revealing"),
    [
        (0, (0, 0), (0, QUANTITY), -QUANTITY * (RETAIL - PRICE)),  # nothing delivered: as revealing
        # 300 of 400, its buyer says short 0: revealing "300, short 100" agrees and compensates the buyer's 100
        (300, (300, 0), (300, 100), 300 * PRICE - 100 * (RETAIL - PRICE)),
        (QUANTITY, (QUANTITY, 0), (QUANTITY, 0), QUANTITY * PRICE),  # all of it: no meter, no word, no pay
    ],
    ids=["nothing", "300-short-100", "all"],
)
def test_k3_a_meterless_seller_gains_nothing_by_keeping_its_reveal_back(
    delivered: int, buyer_says: tuple[int, int], seller_reveals: tuple[int, int], revealing: int
) -> None:
    """A seller without a PCC meter (the DSO's config): revealing what it delivered it nets `revealing`;
    keeping its reveal back it is paid its `release` (0, the whole quantity its shortfall, the buyer's own
    kept), never more (the held 400 paid one that delivered nothing +80,000)."""

    def run(up: bool) -> tuple[str, list[dict[str, int]], dict[str, object], int, int]:
        return settled_by_the_dso(buyer_says[0], up, seller_wh=0, buyer_wh=delivered, meterless={"s"},
                                  buyer_short=buyer_says[1], seller_says=seller_reveals)  # fmt: skip

    revealed, kept = run(True), run(False)
    assert revealed[3] == revealing
    assert kept[0] == "vouching"
    assert kept[1] == [{"delivered": 0, "seller_short": QUANTITY, "buyer_short": buyer_says[1]}]
    assert kept[3] == -QUANTITY * (RETAIL - PRICE) + buyer_says[1] * (RETAIL - PRICE) <= revealed[3]


def test_k3_a_seller_gains_nothing_by_keeping_its_reveal_back_when_its_buyer_took_less() -> None:
    """The buyer took 300 of the seller's 400 and says so (300, short 100): revealing, the seller is metered
    in a dispute, 300 and the buyer's 100 compensated at the price less the feed-in: 75,000. Keeping its
    reveal back it is metered the same way, both meters (it netted 80,000: the buyer's meter was not read)."""
    revealed = settled_by_the_dso(300, True, buyer_wh=300, buyer_short=100)
    kept = settled_by_the_dso(300, False, buyer_wh=300, buyer_short=100)
    assert revealed[3] == 300 * PRICE + 100 * (PRICE - FEED_IN)
    assert kept[0] == "vouching" and kept[1] == [{"delivered": 300, "seller_short": 0, "buyer_short": 100}]
    assert kept[3] == revealed[3]

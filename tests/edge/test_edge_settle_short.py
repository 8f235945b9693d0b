"""The edge states its own shortfall on a priced trade (review11 F1, the edge's half).

On a trade both of whose parties the DSO priced (`market.tariff`, sent here from the DSO key before the interval
closes), each MGMC's statement carries `short` = agreed − min(what it metered, agreed): the figure the DSO names
for a metered side. Two honest MGMCs short of the agreed quantity then agree (no dispute) and the settlement
moves the contract's compensation (`market_state.compensation`); a silent counterparty's lapse charges it only
the rest the stating side does not own (none: it owns its whole gap); the repeat after the deadline, and after
a restart, carries the same `short`; money is only moved, never made or lost. An unpriced trade's body stays
`{trade, delivered}`. Real single-authority chain (`test_settlement.Node`), the real market contract.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from edge_helpers import stand_in_daemon
from hypothesis import given
from hypothesis import strategies as st
from test_edge_settle_both import DSO, both_chain, run_chain, settle_within, trades_of
from test_settlement import KWH, PRICE, Node

from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import PendingSettle, Settlements, own_short, statement_body, unsettled_trades
from peergrid_edge.settlement import Settler
from peergrid_ledger import query
from peergrid_ledger.contracts.market_state import compensation, cover_prices
from peergrid_ledger.keys import Keypair

RETAIL, FEED_IN = 300, 50  # micro-units per Wh: the DSO's cover prices for every party (PRICE is 200)


async def price_both(node: Node, *parties: Keypair) -> None:
    """The DSO prices each party's cover for intervals 0 … 2 (before they close: the contract takes no later)."""
    for k in parties:
        body = {"account": k.public, "first_interval": 0, "retail": [RETAIL] * 3, "feed_in": [FEED_IN] * 3}
        assert (await node.submit(DSO, "market.tariff", body)).landed


def priced_settler(
    node: Node, who: Keypair, metering: dict[bytes, int | None], sent: list[dict[str, Any]],
    disputes: list[PendingSettle], records: list[dict[str, Any]] | None = None,
) -> Settler:  # fmt: skip
    """`party_settler`'s MGMC, told as the trader tells it whether the replica shows a trade priced."""

    async def submit(body: dict[str, Any]) -> Submission:
        sent.append(body)
        return await node.submit(who, "settle", body)

    return Settler(
        submit, lambda tid: query.settlement(node.ledger.state("mgmc"), tid), time.time, asyncio.sleep,
        lambda: False, (records if records is not None else []).append, Settlements(0.2, 1.0), by_both=True,
        metering=lambda p: metering.get(p.trade), on_dispute=disputes.append,
        priced=lambda tr: cover_prices(node.ledger.state("mgmc"), tr) is not None,
    )  # fmt: skip


def money(node: Node, *keys: Keypair) -> int:
    return sum(node.balance(k) for k in keys)


def test_two_honest_edges_short_of_the_agreed_quantity_agree_and_move_the_contracts_compensation(
    tmp_path: Path,
) -> None:
    """Seller metered 20 Wh short, buyer 22 (tolerance 2): both state their own `short`, the chain settles on
    agreement (before: nobody owned the gap, the trade was disputed) and the buyer, short more, pays the seller
    the excess 2 Wh at price − feed-in, as `compensation` computes."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent_s: list[dict[str, Any]] = []
    sent_b: list[dict[str, Any]] = []
    disputes: list[PendingSettle] = []
    records: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[dict[str, Any], bytes, int, dict[str, int]]:
        await price_both(node, seller, buyer)
        tid = await node.agree(1, seller, buyer)
        everyone = (seller, buyer, authority, DSO)
        before, start = money(node, *everyone), {"s": node.balance(seller), "b": node.balance(buyer)}
        s = priced_settler(node, seller, {tid: KWH - 20}, sent_s, disputes, records)
        b = priced_settler(node, buyer, {tid: KWH - 22}, sent_b, disputes, records)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.retry_due()
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await settle_within(b, 5)
        await settle_within(s, 5)
        moved = {"s": node.balance(seller) - start["s"], "b": node.balance(buyer) - start["b"]}
        return query.settlement(node.ledger.state("mgmc"), tid), tid, money(node, *everyone) - before, moved

    where, tid, made, moved = run_chain(
        tmp_path, both_chain(seller, buyer, authority, tolerance=2), authority, day
    )
    assert sent_s == [{"trade": tid, "delivered": KWH - 20, "short": 20}]
    assert sent_b == [{"trade": tid, "delivered": KWH - 22, "short": 22}]
    assert where["state"] == "settled" and where["settlement"]["basis"] == "agreed" and not disputes
    payer, owed = compensation(PRICE, 20, 22, RETAIL, FEED_IN)
    assert (payer, owed) == ("buyer", 2 * (PRICE - FEED_IN))
    assert where["settlement"]["compensation"] == {"payer": "buyer", "amount": owed, "seller_short": 20,
                                                   "buyer_short": 22}  # fmt: skip
    assert moved == {"s": PRICE * (KWH - 22) + owed, "b": -PRICE * (KWH - 22) - owed} and made == 0
    assert sorted(r["settlement"]["short"] for r in records) == [20, 22]


def test_both_short_by_the_same_settle_on_agreement_with_no_compensation(tmp_path: Path) -> None:
    """review11 F1(a): both meters show 480 of 500 ⇒ here KWH − 20 each; with tolerance 0 they agree exactly."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        await price_both(node, seller, buyer)
        tid = await node.agree(1, seller, buyer)
        s = priced_settler(node, seller, {tid: KWH - 20}, sent, [])
        b = priced_settler(node, buyer, {tid: KWH - 20}, sent, [])
        for settler, me in ((s, seller), (b, buyer)):
            await settler.settle(1, trades_of(node, 1), me.public, 0.0)
            await settler.retry_due()
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "agreed"
    assert where["settlement"]["compensation"]["amount"] == 0 and [m["short"] for m in sent] == [20, 20]


def lapse(tmp_path: Path, stater: str, metered: int) -> tuple[dict[str, Any], list[dict[str, Any]], int, int]:
    """One party states `metered` Wh on a priced trade, the other stays silent; after the wait its repeat
    settles it. Returns the settlement, what the stater sent, the silent party's balance change and the money
    made (0: none)."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    me, silent = (seller, buyer) if stater == "seller" else (buyer, seller)
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[dict[str, Any], list[dict[str, Any]], int, int]:
        await price_both(node, seller, buyer)
        tid = await node.agree(1, seller, buyer)
        everyone = (seller, buyer, authority, DSO)
        before, was = money(node, *everyone), node.balance(silent)
        s = priced_settler(node, me, {tid: metered}, sent, [])
        await s.settle(1, trades_of(node, 1), me.public, 0.0)
        await settle_within(s, 10)
        assert not s.book.pending
        made = money(node, *everyone) - before
        return query.settlement(node.ledger.state("mgmc"), tid), sent, node.balance(silent) - was, made

    return run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)  # type: ignore[no-any-return]


def test_a_seller_short_whose_buyer_is_silent_pays_the_compensation_itself(tmp_path: Path) -> None:
    """review11 F1(b): the seller delivered KWH − 100, its own fault, the buyer's MGMC is down. Before, the
    lapse presumed the buyer short by 100 and the buyer paid the seller 100 × (price − feed-in); now the
    seller's statement owns its gap, the silent buyer owns none of it and is paid 100 × (retail − price)."""
    where, sent, buyer_moved, made = lapse(tmp_path, "seller", KWH - 100)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "lapsed"
    body = {"trade": sent[0]["trade"], "delivered": KWH - 100, "short": 100}
    assert sent == [body, body]  # the same body, short included, again at the deadline
    assert where["settlement"]["compensation"] == {"payer": "seller", "amount": 100 * (RETAIL - PRICE),
                                                   "seller_short": 100, "buyer_short": 0}  # fmt: skip
    assert buyer_moved == -PRICE * (KWH - 100) + 100 * (RETAIL - PRICE) and made == 0


def test_a_buyer_that_took_less_whose_seller_is_silent_pays_for_its_own_shortfall_only(
    tmp_path: Path,
) -> None:
    where, sent, seller_moved, made = lapse(tmp_path, "buyer", KWH - 30)
    assert [m.get("short") for m in sent] == [30, 30] and where["settlement"]["basis"] == "lapsed"
    assert where["settlement"]["compensation"] == {"payer": "buyer", "amount": 30 * (PRICE - FEED_IN),
                                                   "seller_short": 0, "buyer_short": 30}  # fmt: skip
    assert seller_moved == PRICE * (KWH - 30) + 30 * (PRICE - FEED_IN) and made == 0


def test_a_priced_trade_delivered_in_full_states_short_0(tmp_path: Path) -> None:
    where, sent, _, made = lapse(tmp_path, "seller", KWH)
    assert [m["short"] for m in sent] == [0, 0] and made == 0
    assert where["settlement"]["compensation"] == {"payer": "seller", "amount": 0, "seller_short": 0,
                                                   "buyer_short": 0}  # fmt: skip


def test_an_unpriced_trade_keeps_the_old_body(tmp_path: Path) -> None:
    """The same settler, told pricing from the replica, on a chain whose DSO priced nobody: `{trade, delivered}`
    exactly (the chain would refuse `short`), and the settlement carries no compensation."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[dict[str, Any], bytes]:
        await price_both(node, seller)  # one party priced is not a priced trade
        tid = await node.agree(1, seller, buyer)
        s = priced_settler(node, seller, {tid: KWH - 100}, sent, [])
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await settle_within(s, 10)
        return query.settlement(node.ledger.state("mgmc"), tid), tid

    where, tid = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert sent == [{"trade": tid, "delivered": KWH - 100}] * 2
    assert where["state"] == "settled" and "compensation" not in where["settlement"]


def test_a_restart_repeats_the_short_stated_before_it(tmp_path: Path) -> None:
    """The seller stated KWH − 7 with short 7, then restarted; its meter now reads differently. The new run
    reads delivered and `short` back from its statement on chain and repeats both: settled on it (a repeat
    with another `short`, or none, would be refused as a changed statement)."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []

    async def day(node: Node) -> dict[str, Any]:
        await price_both(node, seller, buyer)
        tid = await node.agree(1, seller, buyer)
        first = priced_settler(node, seller, {tid: KWH - 7}, sent, [])
        await first.settle(1, trades_of(node, 1), seller.public, 0.0)
        await first.retry_due()
        again = priced_settler(node, seller, {tid: 1}, sent, [])
        again.pick_up(unsettled_trades(node.ledger.state("mgmc"), seller.public, range(0, 3), sales=True),
                      seller.public)  # fmt: skip
        await settle_within(again, 10)
        return query.settlement(node.ledger.state("mgmc"), tid)

    where = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert where["state"] == "settled" and where["settlement"]["basis"] == "lapsed"
    assert [(m["delivered"], m["short"]) for m in sent] == [(KWH - 7, 7), (KWH - 7, 7)]
    assert where["settlement"]["compensation"]["seller_short"] == 7


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000))
def test_a_stated_bound_never_owns_less_than_the_true_shortfall(
    quantity: int, true_wh: int, bound: int
) -> None:
    """Where the edge states a lower bound of what it delivered (a seller that started late: `provable_wh`),
    its `short` is at least the one its true metering gives: never in its own favour. The statement always
    accounts for the whole agreed quantity, so the chain's `delivered + short <= agreed` holds."""
    true_wh, bound = min(true_wh, quantity), min(bound, true_wh, quantity)
    assert own_short(quantity, bound) >= own_short(quantity, true_wh)
    assert own_short(quantity, bound) + bound == quantity
    pending = PendingSettle(
        1, b"t" * 32, bound, quantity=quantity, priced=True, short=own_short(quantity, bound)
    )
    assert statement_body(pending) == {"trade": b"t" * 32, "delivered": bound, "short": quantity - bound}
    assert statement_body(PendingSettle(1, b"t" * 32, bound, quantity=quantity)) == {
        "trade": b"t" * 32, "delivered": bound}  # fmt: skip


def test_nothing_stated_means_no_short() -> None:
    """A side that cannot state (`Unprovable`: the metering gives None) sends nothing at all, `short` neither."""
    sent: list[dict[str, Any]] = []

    async def submit(body: dict[str, Any]) -> Any:
        sent.append(body)
        raise AssertionError("nothing may be sent")

    open_ = {"state": "open", "statements": {}, "deadline": None, "settlement": None}
    settler = Settler(submit, lambda tid: open_, time.time, asyncio.sleep, lambda: False, lambda doc: None,
                      Settlements(0.05, 0.05), by_both=True, metering=lambda p: None, priced=lambda tr: True)  # fmt: skip
    trade = (b"t" * 32, {"buyer": b"b", "seller": b"s", "quantity": 9})

    async def day() -> None:
        await settler.settle(1, [trade], b"b", 0.0)
        await settler.work_until(time.time() + 0.2)

    asyncio.run(day())
    pending = settler.book.pending[b"t" * 32]
    assert not sent and pending.priced and pending.short is None and pending.delivered is None


def test_late_parties_state_neither_a_figure_nor_a_short(tmp_path: Path) -> None:
    """Both MGMCs started within the interval (`pcc_readings.provable_wh`): neither meters it as the DSO does,
    so neither states a figure or a `short` (E7: before, the seller stated its bound, 300 of KWH, short KWH −
    300, which the DSO settles "seller not metered"); no money moves."""
    from test_edge_settle_both import meter_leaves
    from test_edge_settle_late_meter import LATE, Store, late_metering

    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sold = [(a, 10_000 + (a - 62_000) * 0.075, 0.0) for a, _, _ in LATE]  # 300 Wh left from 62 s on
    bought = [(a, 0.0, 20_000 + (a - 62_000) * 0.1) for a, _, _ in LATE]
    sent: dict[str, list[dict[str, Any]]] = {"seller": [], "buyer": []}

    def party(node: Node, who: Keypair, name: str, readings: Any) -> Settler:
        metering = late_metering(lambda t: trades_of(node, t), who.public, Store(meter_leaves(readings)))

        async def submit(body: dict[str, Any]) -> Submission:
            sent[name].append(body)
            return await node.submit(who, "settle", body)

        return Settler(
            submit, lambda tid: query.settlement(node.ledger.state("mgmc"), tid), time.time, asyncio.sleep,
            lambda: False, lambda doc: None, Settlements(0.2, 0.5), by_both=True, metering=metering.statement,
            priced=lambda tr: cover_prices(node.ledger.state("mgmc"), tr) is not None,
        )  # fmt: skip

    async def day(node: Node) -> tuple[dict[str, Any], int]:
        await price_both(node, seller, buyer)
        tid = await node.agree(1, seller, buyer)
        everyone = (seller, buyer, authority, DSO)
        before = money(node, *everyone)
        s, b = party(node, seller, "seller", sold), party(node, buyer, "buyer", bought)
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await asyncio.gather(s.work_until(time.time() + 1.0), b.work_until(time.time() + 1.0))
        return query.settlement(node.ledger.state("mgmc"), tid), money(node, *everyone) - before

    where, made = run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day)
    assert sent == {"seller": [], "buyer": []} and where["state"] == "open" and made == 0


def test_the_trading_agent_tells_its_settler_which_trades_the_dso_priced(tmp_path: Path) -> None:
    """The agent's own Settler (trader.py wires `priced` from its replica): a trade in an interval the DSO priced
    for both parties is priced, one in an interval it did not is not."""

    from peergrid_edge.config import MarketSettings
    from peergrid_edge.trader import MarketAgent
    from peergrid_ledger.keys import write_keyfile

    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    write_keyfile(tmp_path / "anonym.key", seller)
    scenario = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"

    async def day(node: Node) -> list[bool]:
        await price_both(node, seller, buyer)  # intervals 0 ... 2
        await node.agree(1, seller, buyer)
        await node.agree(4, seller, buyer)
        settings = MarketSettings(scenario=scenario, anonym_key_file=tmp_path / "anonym.key", t0=time.time(),
                                  interval_s=3.0, first_interval=1, intervals=4, phase_timeout_s=0.2,
                                  record_file=tmp_path / "market.jsonl")  # fmt: skip
        daemon = stand_in_daemon(node.ledger)
        agent = MarketAgent(daemon, settings)  # type: ignore[arg-type]
        priced = agent.settler._priced
        assert priced is not None
        return [priced(trade) for t in (1, 4) for _, trade in trades_of(node, t)]

    assert run_chain(tmp_path, both_chain(seller, buyer, authority), authority, day) == [True, False]

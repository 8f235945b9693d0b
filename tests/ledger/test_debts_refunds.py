"""review14 K6: a debtor's money may not leave around `collect` (contracts/auction.py, payments.py, funds.py).

An auction's refunded escrow is a credit like a settlement's and pays the bidder's debts first; a debtor over
genesis `owed_limit` may not bid in an auction (a purchase, refused as the market refuses one); a payer that
owes pays its own debts first, all of them, before its payment goes (`funds.pay_own_debts`), else it is
refused naming the debt. Chains where nobody owes keep their bytes (the root pinned below was computed before
the change). The model of it all, seeded, is test_debts_model.py's.
"""

from __future__ import annotations

from typing import Any

from ledger_fixtures import T0, Keys, make_genesis, reason
from test_debts import OWES_400, PLENTY, A, B, C, bid, debt_chain, dso_settle, offer, owing, traded
from test_settle_both import ENDED_LONG_AGO, PRICE, events

from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain, Signer
from peergrid_ledger.contracts.funds import debts_key, record_debt
from peergrid_ledger.genesis import Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.machine import BlockContext, apply
from peergrid_ledger.results import Accepted, Reason, Rejected
from peergrid_ledger.state import Overlay

D = Keys.p4
WITH_AUCTIONS = ("auction", "market", "payments")


def close_auction(c: LocalChain, clock: Any, height: int) -> list[tuple[str, dict[str, Any]]]:
    """Seal empty blocks until the one at `height` (the auction's close): that block's events."""
    assert c.height < height
    while True:
        clock.now += 1
        _, outcome = c.seal(clock.now)
        if c.height == height:
            return list(outcome.events)


def test_an_outbid_debtors_refunded_escrow_pays_its_creditor_and_it_cannot_pay_it_elsewhere() -> None:
    """R14's k6_escrow_refund.py: B parks its 50,000 in a bid, buys 400 Wh at PRICE with nothing left
    (unpaid_as_debt: it owes the seller), is outbid; the refund goes to its creditor, and its `pay` elsewhere
    is refused. Before: the refund stayed with B (balance 50,000, owing 100,000) and B paid it to D."""
    c, clock = debt_chain({A: 0, B: 50_000, C: 0, D: 10**6}, contracts=WITH_AUCTIONS, unpaid_as_debt=1)
    close = c.height + 20
    assert clock.send(
        C, {"auction": "lot", "quantity": 1, "reserve": 1, "close_height": close}, "auction.open"
    ).ok
    assert clock.send(B, {"auction": "lot", "amount": 50_000}, "auction.bid").ok
    tid = traded(c, clock, A, B, 1, 400)
    assert clock.send(A, {"trade": tid, "delivered": 400}).ok
    settled = events(clock.send(B, {"trade": tid, "delivered": 400}))
    unpaid = 400 * PRICE
    assert settled[-1][0] == "settled" and settled[-1][1]["unpaid"] == unpaid  # its 50,000 is in escrow
    assert query.owed(c.state, B.public) == unpaid
    assert clock.send(D, {"auction": "lot", "amount": 60_000}, "auction.bid").ok
    assert close_auction(c, clock, close) == [
        ("auction-closed", {"auction": "lot", "amount": 60_000, "winner": D.public}),
        ("owed_paid", {"debtor": B.public, "creditor": A.public, "amount": 50_000, "trade": tid,
                       "owed": unpaid - 50_000}),
    ]  # fmt: skip
    assert [query.balance(c.state, k.public) for k in (A, B, C, D)] == [50_000, 0, 60_000, 10**6 - 60_000]
    assert query.debts(c.state, B.public) == [{"amount": unpaid - 50_000, "creditor": A.public, "trade": tid}]
    refused = clock.send(B, {"payee": D.public, "amount": 1, "ref": "elsewhere"}, "pay")
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS
    assert f"owes {unpaid - 50_000} micro-units on 1 settlement(s)" in str(refused)
    assert "and can pay only 0 of it" in str(refused)
    assert query.balance(c.state, D.public) == 10**6 - 60_000  # nothing moved


def test_a_close_collects_the_refunds_in_bid_order_then_the_proceeds() -> None:
    """B (owing A) and C bid in D's auction, D owes A too; C wins. B's refund pays A first, then D's proceeds."""
    c, clock = debt_chain({A: PLENTY, B: 30_000, C: PLENTY, D: 0}, contracts=WITH_AUCTIONS)
    close = c.height + 20
    assert clock.send(
        D, {"auction": "lot", "quantity": 1, "reserve": 1, "close_height": close}, "auction.open"
    ).ok
    assert clock.send(B, {"auction": "lot", "amount": 30_000}, "auction.bid").ok
    assert clock.send(C, {"auction": "lot", "amount": 50_000}, "auction.bid").ok
    owed_b = traded(c, clock, A, B, 1, 400)  # B takes none of it, holding nothing: owes A OWES_400
    assert events(dso_settle(clock, owed_b, 0, 0, 400))[0][1]["owed"] == OWES_400
    owed_d = traded(c, clock, A, D, 2, 100)  # D too: 100 x (PRICE - FEED_IN)
    d_owes = OWES_400 // 4
    assert events(dso_settle(clock, owed_d, 0, 0, 100))[0][1]["owed"] == d_owes
    assert close_auction(c, clock, close) == [
        ("auction-closed", {"auction": "lot", "amount": 50_000, "winner": C.public}),
        ("owed_paid", {"debtor": B.public, "creditor": A.public, "amount": 30_000, "trade": owed_b,
                       "owed": OWES_400 - 30_000}),
        ("owed_paid", {"debtor": D.public, "creditor": A.public, "amount": d_owes, "trade": owed_d, "owed": 0}),
    ]  # fmt: skip
    assert query.balance(c.state, D.public) == 50_000 - d_owes and query.owed(c.state, D.public) == 0
    assert query.balance(c.state, B.public) == 0


def test_a_debtor_may_not_bid_in_an_auction_with_the_markets_refusal() -> None:
    c, clock, owed_tid = owing({A: PLENTY, B: 0, C: PLENTY}, contracts=WITH_AUCTIONS)
    lot = {"auction": "lot", "quantity": 1, "reserve": 1, "close_height": c.height + 20}
    assert clock.send(C, lot, "auction.open").ok
    refused = clock.send(B, {"auction": "lot", "amount": 1}, "auction.bid")
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS
    assert offer(clock, A, 2, 500).ok
    market = bid(clock, B, A, 2, 100)
    assert isinstance(refused, Rejected) and isinstance(market, Rejected)
    assert refused.detail.startswith("a bid in auction 'lot': ")  # the same words as the market's bid
    assert refused.detail.replace("a bid in auction 'lot'", "a bid in interval 2") == market.detail
    assert f"owes {OWES_400} micro-units" in refused.detail and owed_tid.hex()[:16] in refused.detail
    record = query.auction(c.state, "lot")
    assert record is not None and record["bids"] == []
    assert clock.send(C, {"auction": "lot", "amount": 5}, "auction.bid").ok is False  # the seller: forbidden
    assert clock.send(A, {"auction": "lot", "amount": 5}, "auction.bid").ok  # A owes nothing


# ------------------------------------------------------------ the rules on a bare state (debts written in)


def bare(owed_limit: int = 0, credit: int = 0) -> LocalChain:
    """p1-p4 hold 1,000 each (ledger_fixtures); C opens auction 'lot' closing at height 50."""
    params = Params(credit_limit=credit, settle_by_both=1, owed_limit=owed_limit, **ENDED_LONG_AGO)
    c = LocalChain(make_genesis(params=params, contracts=("auction", "payments")), Keys.authority)
    lot = {"auction": "lot", "quantity": 1, "reserve": 1, "close_height": 50}
    assert c.sign_and_submit(C, "auction.open", lot, T0 + 1).ok
    c.seal(T0 + 1)
    return c


def with_debts(c: LocalChain, *owed: tuple[Keypair, Keypair, int, bytes]) -> Overlay:
    view = Overlay(c.state)
    for debtor, creditor, amount, trade in owed:
        record_debt(view, debtor.public, creditor.public, amount, trade)
    return view


def run(
    c: LocalChain, view: Overlay, signer: Keypair, kind: str, body: dict[str, Any]
) -> Accepted | Rejected:
    """One transaction applied to `view` (kept there when accepted) as in the chain's next block."""
    tx = Signer(signer, c.genesis.chain, ks.decode_int(view.get(ks.nonce(signer.public)))).sign(
        kind, body, T0 + 2
    )
    result = apply(view, tx, BlockContext(c.genesis, c.height + 1, T0 + 2))
    if isinstance(result, Accepted):
        view.merge(result.writes)
    return result


def held(view: Overlay, *keys: Keypair) -> list[int]:
    return [query.balance(view, k.public) for k in keys]


def paid(payer: Keypair, payee: Keypair, amount: int, ref: str = "r") -> tuple[str, dict[str, Any]]:
    return ("paid", {"payer": payer.public, "payee": payee.public, "amount": amount, "ref": ref})


def owed_paid(
    debtor: Keypair, creditor: Keypair, amount: int, trade: bytes, owed: int
) -> tuple[str, dict[str, Any]]:
    return ("owed_paid", {"debtor": debtor.public, "creditor": creditor.public, "amount": amount,
                          "trade": trade, "owed": owed})  # fmt: skip


def test_a_debtor_with_the_money_pays_its_debts_oldest_first_then_its_payment() -> None:
    c = bare()
    view = with_debts(c, (A, B, 300, b"t1"), (A, C, 200, b"t2"))
    result = run(c, view, A, "pay", {"payee": D.public, "amount": 400, "ref": "r"})
    assert isinstance(result, Accepted)
    assert list(result.events) == [
        paid(A, D, 400),
        owed_paid(A, B, 300, b"t1", 200),
        owed_paid(A, C, 200, b"t2", 0),
    ]
    assert held(view, A, B, C, D) == [100, 1300, 1200, 1400]
    assert view.get(debts_key(A.public)) is None  # all paid: no record left


def test_a_payment_to_its_newer_creditor_pays_the_older_first() -> None:
    c = bare()
    view = with_debts(c, (A, B, 300, b"t1"), (A, C, 200, b"t2"))
    result = run(c, view, A, "pay", {"payee": C.public, "amount": 100, "ref": "r"})
    assert isinstance(result, Accepted)
    assert list(result.events) == [
        paid(A, C, 100),
        owed_paid(A, B, 300, b"t1", 200),
        owed_paid(A, C, 200, b"t2", 0),
    ]
    assert held(view, A, B, C) == [400, 1300, 1300]


def test_a_debtor_that_cannot_pay_its_debts_and_the_amount_is_refused_and_nothing_moves() -> None:
    c = bare()
    view = with_debts(c, (A, B, 700, b"t1"), (A, C, 500, b"t2"))  # owes 1,200, holds 1,000
    refused = run(c, view, A, "pay", {"payee": D.public, "amount": 1, "ref": "uplift/day-3"})
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS and isinstance(refused, Rejected)
    assert refused.detail == (
        f"a payment of 1 to {D.public.hex()[:16]}… for 'uplift/day-3': {A.public.hex()[:16]}… owes 1200 "
        f"micro-units on 2 settlement(s) (oldest 700 to {B.public.hex()[:16]}… for trade {b't1'.hex()}…), "
        "and can pay only 1000 of it: a member that owes pays its debts before it pays anyone else (every "
        "payment to it pays them first)"
    )
    assert (
        run(c, view, A, "pay", {"payee": B.public, "amount": 1, "ref": "r"}).ok is False
    )  # its creditor too
    assert held(view, A, B, C, D) == [1000] * 4
    # paid off all but 1 of it, what is left is short by the amount: the payment's own refusal, nothing moves
    view = with_debts(c, (A, B, 700, b"t1"))
    refused = run(c, view, A, "pay", {"payee": D.public, "amount": 301, "ref": "r"})
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS and "payer cannot pay 301" in str(refused)
    assert held(view, A, B, D) == [1000] * 3 and query.owed(view, A.public) == 700
    assert run(c, view, A, "pay", {"payee": D.public, "amount": 300, "ref": "r"}).ok
    assert held(view, A, B, D) == [0, 1700, 1300]


def test_a_debtor_pays_its_debts_within_its_credit_and_a_payee_that_owes_pays_its_own_after() -> None:
    c = bare(credit=500)
    view = with_debts(
        c, (A, B, 1200, b"t1"), (D, C, 50, b"t2")
    )  # A owes more than it holds, not than its room
    result = run(c, view, A, "pay", {"payee": D.public, "amount": 300, "ref": "r"})
    assert isinstance(result, Accepted)
    assert list(result.events) == [
        paid(A, D, 300),
        owed_paid(A, B, 1200, b"t1", 0),
        owed_paid(D, C, 50, b"t2", 0),
    ]
    assert held(view, A, B, C, D) == [-500, 2200, 1050, 1250]


def test_an_auction_bid_within_owed_limit_is_taken_and_a_re_bid_carries_its_escrow_uncollected() -> None:
    for limit, taken in ((300, True), (299, False)):
        c = bare(owed_limit=limit)
        view = with_debts(c, (A, B, 300, b"t1"))
        first = run(c, view, A, "auction.bid", {"auction": "lot", "amount": 600})
        assert first.ok is taken, first
        if taken:  # the re-bid takes only the raise: its old escrow is no credit, so nothing is collected
            again = run(c, view, A, "auction.bid", {"auction": "lot", "amount": 1000})
            assert isinstance(again, Accepted) and again.events == ()
            assert held(view, A, B) == [0, 1000] and query.owed(view, A.public) == 300
        else:
            assert "more than the 299 a member may owe and still buy" in str(first)


# ------------------------------------------------------------------------- nobody owes: bytes as before

# the state root of `history()` computed with the contracts before review14 K6's change (git 3c0376c)
ROOT_BEFORE = "ef19bff2ead241748f55e34f9f222dc86fc8c46994c60f4107ff2dfa9ab9fba4"


def history() -> LocalChain:
    """Auctions with re-bids, a tie, a refund, one without bids and payments, nobody owing."""
    c = LocalChain(make_genesis(contracts=("auction", "market", "payments")), Keys.authority)
    txs: list[tuple[Keypair, str, dict[str, Any]]] = [
        (A, "auction.open", {"auction": "a", "quantity": 1, "reserve": 10, "close_height": 4}),
        (A, "auction.open", {"auction": "b", "quantity": 2, "reserve": 5, "close_height": 4}),
        (B, "auction.bid", {"auction": "a", "amount": 40}),
        (C, "auction.bid", {"auction": "a", "amount": 40}),
        (B, "auction.bid", {"auction": "a", "amount": 55}),
        (D, "auction.bid", {"auction": "a", "amount": 55}),
        (C, "pay", {"payee": A.public, "amount": 7, "ref": "uplift/day-1"}),
        (D, "auction.open", {"auction": "c", "quantity": 1, "reserve": 1, "close_height": 5}),
        (B, "pay", {"payee": D.public, "amount": 900, "ref": "x"}),
    ]
    for n, (signer, kind, body) in enumerate(txs):
        assert c.sign_and_submit(signer, kind, body, T0 + n).ok
        if n % 3 == 2:
            c.seal(T0 + n)
    while c.height < 6:
        c.seal(T0 + 20 + c.height)
    return c


def test_a_chain_where_nobody_owes_keeps_its_bytes() -> None:
    c = history()
    assert [query.balance(c.state, k.public) for k in (A, B, C, D)] == [1062, 45, 993, 1900]
    assert not [k for k, _ in c.state.items() if k.startswith(b"owed/")]
    assert c.state.root.hex() == ROOT_BEFORE

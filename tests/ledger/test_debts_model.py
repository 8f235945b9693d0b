"""The debts of a chain, against a model written apart from the contracts: settlements that record and collect
debts, payments (a paying debtor pays its own debts first), auction bids, refunds and proceeds (review14 K6),
opposite debts set off (N6).

Seeded by hypothesis: three parties trade (the energy refused or, with genesis unpaid_as_debt, owed where the
buyer cannot pay it), pay each other, open auctions and bid in them, blocks closing the auctions whenever they
fall due; among the random steps, N6's: two parties come to owe each other. After every step the chain is the
model (balances, debt lists, escrow, every event), money is conserved (balances plus what auctions hold in
escrow), no balance goes below the credit limit, debts are paid oldest first, no cycle of oldest debts is
left (set off), an account that owes holds no more than it held owing before plus what a collection brought
it after its own turn (`funds.collect`: once per credit; so a payer that comes to owe keeps nothing its payee
hands back) and no account that owed pays anyone while it still owes.
Collection on a bare state is test_debts_collect.py's; the scenarios are test_debts.py's and
test_debts_refunds.py's.
"""

from __future__ import annotations

import copy
from typing import Any

from debts_model import PARTIES, Events, Model
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from ledger_fixtures import reason
from test_debts import CREDIT, bid, debt_chain, dso_settle, offer
from test_settle_both import PRICE

from peergrid_ledger import query
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected

pair = st.permutations(range(3)).map(lambda p: (p[0], p[1]))
trade_step = st.tuples(
    st.just("trade"),
    pair,
    st.integers(1, 200),  # quantity
    st.one_of(st.integers(0, 200), st.just(200)),  # gap (what was not delivered, cut to the quantity)
    st.sampled_from(["seller", "buyer"]),  # whose shortfall is the gap
    st.integers(0, 200),  # the other side's shortfall (cut to the gap)
)
pay_step = st.tuples(st.just("pay"), pair, st.integers(1, 60_000))
open_step = st.tuples(
    st.just("open"), st.integers(0, 2), st.integers(1, 24)
)  # seller, blocks until it closes
auction_bid_step = st.tuples(  # bidder, which of the auctions opened so far, amount
    st.just("auction.bid"), st.integers(0, 2), st.integers(0, 7), st.integers(1, 60_000)
)


class Run:
    """The chain and the model side by side: every transaction in a block of its own, whose end (the auctions
    closing) the model repeats once the transaction's own effect is in it (`ended`): a transaction is judged
    on the state before its block's end, never after it (G3)."""

    def __init__(self, held: list[int], as_debt: bool = False) -> None:
        contracts = ("market", "payments", "auction")
        parties = dict(zip(PARTIES, held, strict=True))
        self.c, self.clock = debt_chain(parties, CREDIT, contracts, unpaid_as_debt=int(as_debt))
        self.as_debt = as_debt
        self.model = Model(held)
        self.start = sum(held)
        self.hooked: Events = []
        self.seen: Events = []  # every event of the current step, in order

    def send(self, signer: Keypair, body: dict[str, Any], kind: str = "settle") -> Accepted | Rejected:
        """One transaction sealed alone (as test_settle_both's Clock; test_debts' helpers send through it)."""
        self.clock.now += 1
        result = self.c.sign_and_submit(signer, kind, body, time_ms=self.clock.now)
        _, outcome = self.c.seal(self.clock.now)
        own = list(result.events) if isinstance(result, Accepted) else []
        assert list(outcome.events[: len(own)]) == own
        self.hooked = list(outcome.events[len(own) :])
        self.seen += outcome.events
        return result

    def ended(self) -> None:
        assert self.hooked == self.model.close_due(self.c.height)
        if any(name == "owed_paid" for name, _ in self.hooked):
            event("an auction's refund or proceeds paid a debt")

    def check(self, before: dict[bytes, tuple[int, list[list[Any]]]]) -> None:
        """The chain is the model, and the rules every step keeps (module docstring)."""
        model, state = self.model, self.c.state
        for k in PARTIES:
            key = k.public
            assert query.balance(state, key) == model.balance[key]
            assert query.debts(state, key) == [
                {"creditor": c, "amount": a, "trade": t} for c, a, t in model.debts[key]
            ]
            assert query.owed(state, key) == model.owes(key)
            assert model.balance[key] >= -CREDIT  # never below the credit limit
            # FIFO: what is left of the debts before is their tail (the first maybe cut), then new ones
            now, then = model.debts[key], before[key][1]
            kept = [d for d in now if any(d[2] == t[2] for t in then)]
            cut = len(then) - len(kept)
            assert [d[2] for d in kept] == [t[2] for t in then[cut:]]
            assert all(d[1] == t[1] for d, t in zip(kept[1:], then[cut + 1 :], strict=True))
            assert not kept or kept[0][1] <= then[cut][1]
            if model.debts[key]:  # it still owes: it holds no more than it held owing before, and what a
                # collection brought it after its own turn (a cycle's return, once per credit); so money
                # that came to it before it came to owe was paid to its creditor (N6: before, a payer short
                # of a compensation kept what its payee, owing it, handed straight back)
                held_before = max(0, before[key][0] + CREDIT) if before[key][1] else 0
                assert max(0, model.room(key)) <= held_before + model.kept[key]
            # no cycle of oldest debts is left (A's oldest to B, B's oldest to A, or round three): set off
            path = [key]
            while model.debts[path[-1]] and model.debts[path[-1]][0][0] not in path:
                path.append(model.debts[path[-1]][0][0])
            assert not model.debts[path[-1]] or model.debts[path[-1]][0][0] != key, "a cycle of oldest debts"
        for name, body in self.seen:  # a payer that owed paid its debts first, all of them
            if name == "paid" and before[body["payer"]][1]:
                assert not model.debts[body["payer"]]
        escrow = 0
        for auction_id, auction in model.auctions.items():
            record = query.auction(state, auction_id)
            assert record is not None and record["bids"] == auction["bids"]
            assert (record["result"] is not None) == auction["closed"]
            escrow += 0 if auction["closed"] else sum(a for _, a in auction["bids"])
        assert escrow == model.escrow()
        assert sum(model.balance.values()) + escrow == self.start  # conserved

    def step(self, n: int, step: tuple[Any, ...]) -> None:
        model = self.model
        if step[0] == "pay":
            _, (i, j), amount = step
            payer, payee = PARTIES[i].public, PARTIES[j].public
            owed = model.owes(payer)
            result = self.send(PARTIES[i], {"payee": payee, "amount": amount, "ref": f"r{n}"}, "pay")
            expected = model.pay(payer, payee, amount, f"r{n}")
            if expected is None:
                assert reason(result) is Reason.INSUFFICIENT_FUNDS
                event("a debtor's payment refused" if owed else "a payment refused")
            else:
                assert isinstance(result, Accepted) and list(result.events) == expected
                event("a debtor paid its debts, then the payee" if owed else "a payment")
            self.ended()
        elif step[0] == "open":
            _, i, blocks = step
            body = {
                "auction": f"a{n:02d}",
                "quantity": 1,
                "reserve": 1,
                "close_height": self.c.height + 1 + blocks,
            }
            assert self.send(PARTIES[i], body, "auction.open").ok
            model.auctions[body["auction"]] = {
                "seller": PARTIES[i].public, "close": body["close_height"], "bids": [], "closed": False
            }  # fmt: skip
            self.ended()
        elif step[0] == "auction.bid":
            _, i, which, amount = step
            if not model.auctions:
                return
            auction_id = sorted(model.auctions)[which % len(model.auctions)]
            bidder = PARTIES[i].public
            result = self.send(PARTIES[i], {"auction": auction_id, "amount": amount}, "auction.bid")
            refused = model.bid(bidder, auction_id, amount, self.c.height)
            if refused is None:
                assert result.ok, result
            else:
                assert reason(result) is refused, (refused, result)
                if refused is Reason.INSUFFICIENT_FUNDS and model.debts[bidder]:
                    assert "a bid in auction" in str(result) and "owes" in str(result)
                    event("a debtor's auction bid refused")
            self.ended()
        else:
            self.trade(n, step)

    def trade(self, interval: int, step: tuple[Any, ...]) -> None:
        _, (i, j), quantity, gap, fault, other = step
        seller, buyer = PARTIES[i], PARTIES[j]
        gap = min(gap, quantity)
        other = min(other, gap)
        assert offer(self, seller, interval, quantity).ok  # a debtor may always sell
        self.ended()
        asked = bid(self, buyer, seller, interval, quantity)
        # judged on the state its block began with: an auction closing at this block's end comes after it,
        # even where its refund or proceeds pay the buyer's debt (the next block's bid is then taken)
        owed = bool(self.model.debts[buyer.public])
        self.ended()
        if owed:
            assert reason(asked) is Reason.INSUFFICIENT_FUNDS and "owes" in str(asked)
            if not self.model.debts[buyer.public]:
                event("a debtor's bid refused in the block whose auction close paid its debt")
            return
        assert asked.ok and self.send(buyer, {"interval": interval}, "trade").ok
        self.ended()
        ((tid, _),) = query.trades(self.c.state, interval)
        shorts = (gap, other) if fault == "seller" else (other, gap)
        result = dso_settle(self, tid, quantity - gap, *shorts)
        energy = PRICE * (quantity - gap)
        settled = self.model.settle(seller.public, buyer.public, energy, shorts, tid, self.as_debt)
        if settled is None:
            assert reason(result) is Reason.INSUFFICIENT_FUNDS
        else:
            expected, unpaid, owed = settled
            assert isinstance(result, Accepted)
            got = list(result.events)
            assert got[0][0] == "settled" and got[0][1].get("owed", 0) == owed
            assert got[0][1].get("unpaid", 0) == unpaid
            assert got[1:] == expected
            if owed or unpaid:
                event("a debt recorded")
        self.ended()


@st.composite
def parked_escrow(draw: Any) -> list[tuple[Any, ...]]:
    """review14 K6's moves, among the random ones: x bids in y's new auction, buys of y and takes none of
    it (it may come to owe), and z outbids it before the close (its escrow refunded after its debt)."""
    y, x, z = draw(st.permutations(range(3)))
    quantity = draw(st.integers(1, 200))
    return [
        ("open", y, draw(st.integers(6, 12))),
        ("auction.bid", x, -1, draw(st.integers(1, 30_000))),  # -1: the latest auction
        ("trade", (y, x), quantity, quantity, "buyer", 0),
        ("auction.bid", z, -1, draw(st.integers(1, 60_000))),
    ]


@st.composite
def opposite_debts(draw: Any) -> list[tuple[Any, ...]]:
    """N6's moves, among the random ones: y sells x and x takes none of it (x owes y), z pays x something,
    then x sells y and y takes none (y owes x: the debts are opposite; before, what y paid x of it came
    straight back to y, which kept it while it owed)."""
    x, y, z = draw(st.permutations(range(3)))
    return [
        ("trade", (y, x), draw(st.integers(1, 200)), 200, "buyer", 0),
        ("pay", (z, x), draw(st.integers(1, 30_000))),
        ("trade", (x, y), draw(st.integers(1, 200)), 200, "buyer", 0),
    ]


one_step = st.one_of(trade_step, trade_step, pay_step, open_step, auction_bid_step, auction_bid_step)
steps = st.lists(
    st.one_of(one_step.map(lambda step: [step]), parked_escrow(), opposite_debts()), min_size=1, max_size=10
).map(lambda parts: [step for part in parts for step in part])


# G3's case (found by chance in session 16, pinned so every clean clone runs it): B's own auction closes at
# the end of the block of B's market bid, and A's winning bid pays B's debt to A; the bid, in that block, is
# still refused - the model judged it on the state after the close
BID_IN_THE_CLOSING_BLOCK = [
    ("open", 0, 6), ("auction.bid", 1, -1, 1), ("trade", (0, 1), 26, 26, "buyer", 0), ("auction.bid", 2, -1, 1),
    ("trade", (2, 0), 1, 200, "buyer", 0), ("pay", (1, 0), 1), ("trade", (0, 2), 27, 200, "buyer", 0),
    ("open", 1, 8), ("auction.bid", 2, -1, 1), ("trade", (1, 2), 1, 1, "buyer", 0), ("auction.bid", 0, -1, 200),
    ("open", 0, 6), ("auction.bid", 1, -1, 1), ("trade", (0, 1), 1, 1, "buyer", 0), ("auction.bid", 2, -1, 1),
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 60_000), min_size=3, max_size=3), steps, st.booleans())
@example(held=[0, 0, 0], steps=BID_IN_THE_CLOSING_BLOCK, as_debt=False)
def test_settlements_payments_and_auctions_keep_debts_fifo_collected_and_money_conserved(
    held: list[int], steps: list[tuple[Any, ...]], as_debt: bool
) -> None:
    run = Run(held, as_debt)
    for n, step in enumerate(steps, 1):
        before = {
            k.public: (run.model.balance[k.public], copy.deepcopy(run.model.debts[k.public])) for k in PARTIES
        }
        run.seen = []
        run.model.kept = dict.fromkeys(run.model.kept, 0)
        run.step(n, step)
        run.check(before)
        if any(e[0] == "owed_paid" for e in run.seen):
            event("a debt collected")
        if any(e[0] == "owed_set_off" for e in run.seen):
            event("opposite debts set off")
        if any(run.model.debts[k] and run.model.room(k) > 0 for k in run.model.debts):
            event("a debtor holding money (handed back by a creditor that owed it)")

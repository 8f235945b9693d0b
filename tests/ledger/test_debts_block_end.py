"""A debtor's transactions are judged on the state their block began with, before the block's end closes the
auctions due: an auction close whose proceeds pay the debt comes after every transaction of its block.

So a debtor whose own auction closes at the end of a block is refused its purchases and payments in that block,
and takes them from the next (contracts/auction.py: "At the end of the block at the closing height"; funds:
`refuse_debtor`, `pay_own_debts`). This is the one order a block can have: its transactions run in order,
then the end-of-block hook, whose effect no transaction of the same block can see. test_debts_model.py's
Hypothesis model once judged a market bid on the state after its block's close (G3's case, pinned there).
"""

from __future__ import annotations

from ledger_fixtures import Keys, reason
from test_debts import OWES_400, PLENTY, A, B, C, balance, bid, offer, owing

from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.machine import BlockContext, execute
from peergrid_ledger.results import Accepted, Reason, Rejected
from peergrid_ledger.tx import sign_tx


def test_a_debtor_is_refused_in_the_block_whose_auction_close_pays_its_debt_and_buys_from_the_next() -> None:
    c, clock, owed_tid = owing({A: PLENTY, B: 0, C: PLENTY}, contracts=("market", "payments", "auction"))
    close = c.height + 4
    lot = {"auction": "lot-1", "quantity": 10, "reserve": 5, "close_height": close}
    assert clock.send(B, lot, "auction.open").ok
    assert clock.send(C, {"auction": "lot-1", "amount": OWES_400 + 7}, "auction.bid").ok
    assert offer(clock, A, 3, 100).ok
    assert c.height == close - 1
    # the block at the closing height: B's bid and payment first, then the close, which pays B's debt
    demand = {"interval": 3, "round": 0, "demands": [{"seller": A.public, "quantity": 100}]}
    payment = {"payee": C.public, "amount": 1, "ref": "r"}
    clock.now += 1
    # as a block holding both executes them (a replica's check of a proposed block) ...
    after = ks.decode_int(c.state.get(ks.nonce(B.public))) + 1  # a refused transaction uses no nonce
    txs = [
        sign_tx(B, c.genesis.chain, kind, after, clock.now, body)
        for kind, body in (("bid", demand), ("pay", payment))
    ]
    block_at_close = BlockContext(c.genesis, close, clock.now, Keys.authority.public)
    executed = execute(c.state, txs, block_at_close, strict=False)
    assert [r.reason for r in executed.results if isinstance(r, Rejected)] == [Reason.INSUFFICIENT_FUNDS] * 2
    assert [name for name, _ in executed.events] == ["auction-closed", "owed_paid"]
    # ... and as a proposer takes them in (its pending state, where no block has ended yet)
    asked = c.sign_and_submit(B, "bid", demand, time_ms=clock.now)
    paid = c.sign_and_submit(B, "pay", payment, time_ms=clock.now)
    block, outcome = c.seal(clock.now)
    assert block.header.height == close
    assert reason(asked) is Reason.INSUFFICIENT_FUNDS and f"owes {OWES_400}" in str(asked)
    assert reason(paid) is Reason.INSUFFICIENT_FUNDS and f"owes {OWES_400}" in str(paid)
    assert list(outcome.events) == [
        ("auction-closed", {"auction": "lot-1", "amount": OWES_400 + 7, "winner": C.public}),
        ("owed_paid", {"debtor": B.public, "creditor": A.public, "amount": OWES_400, "trade": owed_tid, "owed": 0}),
    ]  # fmt: skip
    assert query.debts(c.state, B.public) == [] and balance(c, B) == 7
    # the next block sees the debt paid: both are taken
    assert bid(clock, B, A, 3, 100).ok
    again = clock.send(B, {"payee": C.public, "amount": 1, "ref": "r"}, "pay")
    assert isinstance(again, Accepted) and balance(c, B) == 6

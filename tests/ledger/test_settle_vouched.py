"""review13 F2, the contract's side: with genesis `seller_vouched` two agreeing statements do not pay; the
trade waits `settle_wait_ms` for the DSO's word on the seller's side (`market_vouch`): the DSO's settle in the
window is final, after it either party's repeated statement pays the agreed figures."""

from __future__ import annotations

import pytest
from ledger_fixtures import Keys, make_genesis, reason
from test_settle_both import BUYER, PRICE, SELLER, WAIT, Clock, balances, both_chain, events, trades_of
from test_settle_compensation import priced

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Reason


def _agreed(**params: int) -> tuple[LocalChain, Clock, bytes]:
    c = both_chain(seller_vouched=1, **params)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    return c, clock, tid


def test_agreeing_statements_wait_for_the_dso() -> None:
    c, clock, tid = _agreed()
    before = balances(c)
    assert clock.state(BUYER, tid, 400).ok
    held = clock.state(SELLER, tid, 400)  # the seller's predictable "all delivered"
    until = clock.now + WAIT
    assert events(held)[-1] == ("vouching", {"trade": tid, "delivered": 400, "until": until})
    status = query.settlement(c.state, tid)
    assert status is not None and status["state"] == "vouching" and status["settlement"] is None
    assert status["vouch"] == {"delivered": 400, "seller_short": 0, "buyer_short": 0, "until": until}
    assert balances(c) == before
    assert [tid_ for tid_, _t in query.vouching(c.state, 1)] == [tid] and query.vouching(c.state, 2) == []
    early = clock.state(SELLER, tid, 400)
    assert reason(early) is Reason.DUPLICATE and f"until {until}" in str(early)
    # the DSO metered the seller's side: 250 Wh delivered; its word is final
    settled = clock.send(Keys.dso, {"trade": tid, "delivered": 250})
    assert events(settled)[0][1]["basis"] == "dso"
    assert query.vouching(c.state, 1) == []
    assert balances(c)[SELLER.public] - before[SELLER.public] == PRICE * 250
    clock.now = until
    assert reason(clock.state(SELLER, tid, 400)) is Reason.ALREADY_SETTLED


def test_without_the_dsos_word_a_repeated_statement_pays_after_the_window() -> None:
    c, clock, tid = _agreed(tolerance=10)
    before = balances(c)
    assert clock.state(SELLER, tid, 400).ok
    assert clock.state(BUYER, tid, 395).ok  # within the tolerance: the lower is held
    until = clock.now + WAIT
    clock.now = until - 2
    assert reason(clock.state(BUYER, tid, 395)) is Reason.DUPLICATE  # block time until - 1
    assert reason(clock.state(BUYER, tid, 390)) is Reason.DUPLICATE  # after it, but not its statement
    paid = clock.state(BUYER, tid, 395)
    assert next(e for e in events(paid) if e[0] == "settled")[1] == {
        "trade": tid, "amount": PRICE * 395, "delivered": 395, "basis": "agreed"
    }  # fmt: skip
    assert balances(c)[BUYER.public] - before[BUYER.public] == -PRICE * 395


def test_a_priced_trade_keeps_its_stated_shortfalls_while_it_waits() -> None:
    c = both_chain(seller_vouched=1)
    clock = Clock(c)
    priced(c, clock)
    tid, _ = trades_of(c, clock)
    assert clock.send(SELLER, {"trade": tid, "delivered": 300, "short": 100}).ok
    assert clock.send(BUYER, {"trade": tid, "delivered": 300, "short": 0}).ok
    status = query.settlement(c.state, tid)
    assert (
        status is not None and status["vouch"]["seller_short"] == 100 and status["vouch"]["buyer_short"] == 0
    )
    clock.now = status["vouch"]["until"]
    paid = clock.send(SELLER, {"trade": tid, "delivered": 300, "short": 100})
    settled = next(e for e in events(paid) if e[0] == "settled")[1]
    assert settled["basis"] == "agreed" and settled["payer"] == "seller" and settled["compensation"] > 0


def test_without_the_param_agreeing_statements_pay_at_once() -> None:
    c = both_chain()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(BUYER, tid, 400).ok
    assert events(clock.state(SELLER, tid, 400))[-1][1]["basis"] == "agreed"
    status = query.settlement(c.state, tid)
    assert status is not None and status["state"] == "settled" and "vouch" not in status


def test_the_param_is_a_late_settle_flag() -> None:
    both = {"settle_by_both": 1, "settle_interval_ms": 900_000}
    assert "seller_vouched" not in make_genesis(params=Params(**both)).to_value()["params"]
    with pytest.raises(GenesisError, match="seller_vouched: only with settle_by_both"):
        Params(seller_vouched=1)
    set_ = make_genesis(params=Params(**both, seller_vouched=1))
    assert Genesis.decode(set_.encode()).params.seller_vouched == 1

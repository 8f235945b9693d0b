"""review14 K3, the contract's side: on a `seller_vouched` chain a buyer that committed and never revealed
(a Pi that rebooted past the reveal window) is not settled as a withholder at once. The seller's lone repeat
after the deadline holds the withholding terms (delivered = the quantity: the buyer taken as having taken all;
shortfalls (0, 0); vouch `basis` "withheld") for the DSO's window, so the DSO meters the seller and its word
pays; after `until` the seller's repeat pays the held figures, basis "withheld" (the penalty stands where the
DSO did not vouch). The mirror, a seller that committed and never revealed: the buyer's repeat holds the
trade as delivered in full for the DSO too (its meter of the seller alone decides; the buyer's word moves
nothing but its own shortfall, review15 M4) and pays the seller's worst case (0 delivered, all of it the
seller's short) only after `until`. Without `seller_vouched` nothing changed.
Real contract (LocalChain); the DSO node's side of the same trade is in test_settle_vouched_dso.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys, reason
from sealed_fixtures import commit, reveal, state
from test_settle_both import BUYER, PRICE, SELLER, WAIT, Clock, balances, both_chain, events, trades_of
from test_settle_compensation import priced

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.results import Reason

QUANTITY = 400  # Wh: SELLER to BUYER (trades_of)


def withheld_buyer(vouched: int = 1, price: bool = False) -> tuple[LocalChain, Clock, bytes]:
    """Both commit (seller 100 of 400, buyer 400), only the seller reveals; the clock stands at the reveal
    deadline. (chain, clock, trade)"""
    c = (
        both_chain(sealed_statements=1, seller_vouched=vouched)
        if vouched
        else both_chain(sealed_statements=1)
    )
    clock = Clock(c)
    if price:
        priced(c, clock)
    tid, _ = trades_of(c, clock)
    assert commit(clock, SELLER, tid, 100).ok
    assert commit(clock, BUYER, tid, QUANTITY).ok  # then the buyer's Pi goes down
    assert reveal(clock, SELLER, tid, 100).ok
    where = query.settlement(c.state, tid)
    assert where is not None and where["state"] == "stated"
    clock.now = int(where["deadline"]) - 1  # the next block lands at the deadline
    return c, clock, tid


def test_the_sellers_repeat_holds_the_withholding_terms_for_the_dso() -> None:
    c, clock, tid = withheld_buyer()
    before = balances(c)
    held = state(clock, SELLER, tid, 100)
    until = clock.now + WAIT
    assert events(held) == [("vouching", {"trade": tid, "delivered": QUANTITY, "until": until})]
    where = query.settlement(c.state, tid)
    assert where is not None and where["state"] == "vouching" and where["settlement"] is None
    assert where["vouch"] == {
        "delivered": QUANTITY, "seller_short": 0, "buyer_short": 0, "until": until, "basis": "withheld"
    }  # fmt: skip
    assert balances(c) == before
    assert [t for t, _ in query.vouching(c.state, 1)] == [tid]
    # the buyer is back: its reveal comes after the deadline, refused; the seller's repeat waits for the DSO
    assert reason(reveal(clock, BUYER, tid, QUANTITY)) is Reason.CLOSED
    assert reason(state(clock, SELLER, tid, 100)) is Reason.DUPLICATE
    # the DSO metered the seller: 100 Wh; its word is final
    settled = clock.send(Keys.dso, {"trade": tid, "delivered": 100})
    assert events(settled)[0][1] == {"trade": tid, "amount": PRICE * 100, "delivered": 100, "basis": "dso"}
    assert balances(c)[SELLER.public] - before[SELLER.public] == PRICE * 100
    clock.now = until
    assert reason(state(clock, SELLER, tid, 100)) is Reason.ALREADY_SETTLED


def test_without_the_dsos_word_the_penalty_pays_after_the_window() -> None:
    c, clock, tid = withheld_buyer()
    before = balances(c)
    assert state(clock, SELLER, tid, 100).ok
    until = clock.now + WAIT
    clock.now = until - 2
    assert reason(state(clock, SELLER, tid, 100)) is Reason.DUPLICATE  # block time until - 1
    assert reason(state(clock, SELLER, tid, 400)) is Reason.DUPLICATE  # after it, but not its statement
    paid = state(clock, SELLER, tid, 100)
    assert next(e for e in events(paid) if e[0] == "settled")[1] == {
        "trade": tid, "amount": PRICE * QUANTITY, "delivered": QUANTITY, "basis": "withheld"
    }  # fmt: skip
    assert balances(c)[SELLER.public] - before[SELLER.public] == PRICE * QUANTITY


def test_a_priced_withheld_buyer_is_metered_with_the_sellers_gap_as_its_shortfall() -> None:
    """The DSO names the seller's metered gap (300 of 400 short: its meter shows 100); the contract takes
    it, and the seller compensates the buyer for it."""
    c, clock, tid = withheld_buyer(price=True)
    assert state(clock, SELLER, tid, 100).ok
    assert query.settlement(c.state, tid)["state"] == "vouching"  # type: ignore[index]
    dso = clock.send(Keys.dso, {"trade": tid, "delivered": 100, "seller_short": 300, "buyer_short": 0})
    settled = events(dso)[0][1]
    assert (settled["delivered"], settled["basis"], settled["payer"]) == (100, "dso", "seller")
    assert settled["compensation"] > 0


def withheld_seller(vouched: int = 1, buyer: tuple[int, int] = (300, 0)) -> tuple[LocalChain, Clock, bytes]:
    """Both commit (the buyer `buyer` (delivered, short), the seller 400), only the buyer reveals; the clock
    stands at the reveal deadline (priced: the buyer's retail 300, the seller's feed-in 50). (chain, clock,
    trade)"""
    c = (
        both_chain(sealed_statements=1, seller_vouched=vouched)
        if vouched
        else both_chain(sealed_statements=1)
    )
    clock = Clock(c)
    priced(c, clock)
    tid, _ = trades_of(c, clock)
    assert commit(clock, BUYER, tid, *buyer).ok
    assert commit(clock, SELLER, tid, QUANTITY).ok  # then the seller's Pi goes down
    assert reveal(clock, BUYER, tid, *buyer).ok
    clock.now = int(query.settlement(c.state, tid)["deadline"]) - 1  # type: ignore[index]
    return c, clock, tid


def test_a_withheld_seller_is_held_at_the_quantity_for_the_dsos_meter() -> None:
    """The mirror: the buyer's repeat holds the trade as delivered in full (400, shortfalls (0, 0): the buyer's
    300 moves nothing, review15 M4) for the DSO, with the withholding penalty (0 delivered, all 400 the
    seller's short) as what the repeat after `until` pays; the DSO's meter of the seller within the window is
    final."""
    c, clock, tid = withheld_seller()
    before = balances(c)
    held = state(clock, BUYER, tid, 300, 0)
    until = clock.now + WAIT
    assert events(held) == [("vouching", {"trade": tid, "delivered": QUANTITY, "until": until})]
    vouch = query.settlement(c.state, tid)["vouch"]  # type: ignore[index]
    assert vouch == {
        "delivered": QUANTITY, "seller_short": 0, "buyer_short": 0, "until": until, "basis": "withheld",
        "release": {"delivered": 0, "seller_short": QUANTITY, "buyer_short": 0},
    }  # fmt: skip
    assert balances(c) == before
    # the seller is back: its reveal is after the buyer's deadline
    assert reason(reveal(clock, SELLER, tid, QUANTITY)) is Reason.CLOSED
    # the DSO metered the seller's export at 250 of the 400: 250, the seller 150 short
    settled = clock.send(Keys.dso, {"trade": tid, "delivered": 250, "seller_short": 150, "buyer_short": 0})
    assert (events(settled)[0][1]["delivered"], events(settled)[0][1]["basis"]) == (250, "dso")


@given(buyer=st.integers(0, QUANTITY).flatmap(lambda d: st.tuples(st.just(d), st.integers(0, QUANTITY - d))))
@settings(max_examples=15, deadline=None)
def test_the_buyers_statement_moves_the_held_figures_only_by_its_own_shortfall(
    buyer: tuple[int, int],
) -> None:
    """Whatever the buyer states, the held trade is the quantity delivered; the buyer's own shortfall (an
    admission against itself: it lowers what the seller's metered gap pays it) is kept, the rest of its word
    is not; the penalty after `until` is the seller's worst case with the buyer's own shortfall."""
    c, clock, tid = withheld_seller(buyer=buyer)
    assert events(state(clock, BUYER, tid, *buyer))[0][1]["delivered"] == QUANTITY
    vouch = query.settlement(c.state, tid)["vouch"]  # type: ignore[index]
    assert (vouch["delivered"], vouch["seller_short"], vouch["buyer_short"]) == (QUANTITY, 0, buyer[1])
    assert vouch["release"] == {"delivered": 0, "seller_short": QUANTITY, "buyer_short": buyer[1]}


def test_without_the_dsos_word_a_withheld_seller_is_taken_at_its_worst_after_the_window() -> None:
    c, clock, tid = withheld_seller()
    assert state(clock, BUYER, tid, 300, 0).ok
    clock.now += WAIT
    paid = events(state(clock, BUYER, tid, 300, 0))
    settled = next(e for e in paid if e[0] == "settled")[1]
    assert (settled["delivered"], settled["basis"], settled["payer"]) == (0, "withheld", "seller")
    done = query.settlement(c.state, tid)["settlement"]  # type: ignore[index]
    assert (done["compensation"]["seller_short"], done["compensation"]["buyer_short"]) == (QUANTITY, 0)


def test_without_seller_vouched_a_withheld_seller_is_taken_at_its_worst_at_once() -> None:
    c, clock, tid = withheld_seller(vouched=0)
    paid = events(state(clock, BUYER, tid, 300, 0))
    settled = next(e for e in paid if e[0] == "settled")[1]
    assert (settled["delivered"], settled["basis"]) == (0, "withheld")
    assert "vouch" not in query.trade(c.state, tid)  # type: ignore[operator]


def test_without_seller_vouched_a_withheld_buyer_pays_everything_at_once_as_before() -> None:
    c, clock, tid = withheld_buyer(vouched=0)
    before = balances(c)
    paid = state(clock, SELLER, tid, 100)
    assert next(e for e in events(paid) if e[0] == "settled")[1] == {
        "trade": tid, "amount": PRICE * QUANTITY, "delivered": QUANTITY, "basis": "withheld"
    }  # fmt: skip
    assert "vouch" not in query.trade(c.state, tid)  # type: ignore[operator]
    assert balances(c)[SELLER.public] - before[SELLER.public] == PRICE * QUANTITY


# ---------------------------------------------------------------------------------------------- any figures

figures = st.integers(0, QUANTITY).flatmap(lambda d: st.tuples(st.just(d), st.integers(0, QUANTITY - d)))


def _net(keeper: str, buyer: tuple[int, int], seller: tuple[int, int], keep_back: bool) -> int:
    """Both commit (priced, seller_vouched, the DSO silent unless a dispute needs it); the other party reveals;
    the keeper reveals its figures (a dispute then settled by the DSO at the keeper's figures, the other
    owning the rest of the gap) or keeps them back. Every lone or agreed statement is repeated after its
    deadline and its vouch's `until`, so whatever the chain holds pays. The keeper's net."""
    c = both_chain(sealed_statements=1, seller_vouched=1)
    clock = Clock(c)
    priced(c, clock)
    tid, _ = trades_of(c, clock)
    mine = {"buyer": buyer, "seller": seller}
    keys = {"buyer": BUYER, "seller": SELLER}
    other = "seller" if keeper == "buyer" else "buyer"
    before = balances(c)[keys[keeper].public]
    assert commit(clock, BUYER, tid, *buyer).ok and commit(clock, SELLER, tid, *seller).ok
    assert reveal(clock, keys[other], tid, *mine[other]).ok
    speaker = other
    if not keep_back:
        assert reveal(clock, keys[keeper], tid, *mine[keeper]).ok
        speaker = keeper
    if query.settlement(c.state, tid)["state"] == "disputed":  # type: ignore[index]
        delivered, own = mine[keeper]
        gap = QUANTITY - delivered
        theirs = gap if own < gap else min(mine[other][1], gap)
        sides = (own, theirs) if keeper == "seller" else (theirs, own)
        body = {"trade": tid, "delivered": delivered, "seller_short": sides[0], "buyer_short": sides[1]}
        assert clock.send(Keys.dso, body).ok
    for _ in range(2):  # past the deadline (a lone statement), then past the vouch's until
        where = query.settlement(c.state, tid)
        assert where is not None
        if where["state"] == "settled":
            break
        clock.now = max(clock.now, int(where["vouch"]["until"] if "vouch" in where else where["deadline"]))
        assert state(clock, keys[speaker], tid, *mine[speaker]).ok
    assert query.settlement(c.state, tid)["state"] == "settled"  # type: ignore[index]
    return balances(c)[keys[keeper].public] - before


@settings(max_examples=30, deadline=None)
@given(buyer=figures, seller=figures, keeper=st.sampled_from(["buyer", "seller"]))
def test_where_the_dso_does_not_vouch_keeping_a_reveal_back_never_nets_more(
    buyer: tuple[int, int], seller: tuple[int, int], keeper: str
) -> None:
    """K3's vouch keeps test_settle_sealed's rule where the DSO is silent: the repeat after `until` pays the
    withholding penalty, never better for the keeper than revealing."""
    assert _net(keeper, buyer, seller, True) <= _net(keeper, buyer, seller, False)

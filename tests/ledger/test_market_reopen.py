"""`market.reopen`: a closed interval reopened for re-bargaining after a DSO adjustment contract (design step 6).

The rules: only the DSO (a participant cannot reopen its own bargain: review M1's three abuses are refused
below), only the next iteration (last + 1), only while none of its trades is settled and not after the
reopening's deadline, at most genesis `max_reopens` times (0 by default: a chain enables it in genesis), no
new member after a reopening; superseded trades stay in state and never settle; a second closing gets new
trade ids; a replica replaying the blocks reaches the same state root.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import T0, Keys, make_genesis, reason

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.results import Accepted, Reason

REF = bytes(range(32))  # the DSO chain's adjustment contract txid, for audit
UNTIL = T0 + 10**9  # the reopening's deadline (block time, ms): far off unless a test says otherwise


def chain_with(max_reopens: int = 3) -> LocalChain:
    accounts = (
        Account(Keys.dso.public, ("dso",)),
        *(Account(k.public, ("anonym",), f"p{i}", balance=10**9) for i, k in enumerate(
            [Keys.p1, Keys.p2, Keys.p3, Keys.p4], 1)),
    )  # fmt: skip
    params = Params(credit_limit=0, max_reopens=max_reopens)
    return LocalChain(make_genesis(accounts=accounts, params=params), Keys.authority)


def reopen(iteration: int, interval: int = 1, ref: bytes = REF, until: int = UNTIL) -> dict[str, Any]:
    return {"interval": interval, "iteration": iteration, "ref": ref, "until": until}


def closed_interval(chain: LocalChain) -> None:
    """p1 sells 1000 Wh at 250, p3 buys 400 of it; p2 takes part with an empty bid; closed by p3."""
    offer = {"interval": 1, "round": 1, "price": 250, "quantity": 1000, "clean": True}
    assert chain.sign_and_submit(Keys.p1, "offer", offer).ok
    demands = [{"seller": Keys.p1.public, "quantity": 400}]
    assert chain.sign_and_submit(Keys.p3, "bid", {"interval": 1, "round": 0, "demands": demands}).ok
    assert chain.sign_and_submit(Keys.p2, "bid", {"interval": 1, "round": 0, "demands": []}).ok
    assert chain.sign_and_submit(Keys.p3, "trade", {"interval": 1}).ok


def test_a_reopened_interval_rebargains_and_only_the_latest_trades_settle() -> None:
    chain = chain_with()
    closed_interval(chain)
    [(first_id, _)] = query.trades(chain.view, 1)
    assert first_id == contract.trade_id(1, Keys.p1.public, Keys.p3.public)  # closing 0: the old id
    reopened = chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1))
    assert isinstance(reopened, Accepted)
    assert list(reopened.events) == [("reopened", {"interval": 1, "iteration": 1, "reopens": 1, "round": 1})]
    record = query.interval(chain.view, 1)
    assert record["closed"] is False and record["trades"] == []
    assert record["reopened"]["iteration"] == 1 and record["reopened"]["ref"] == REF
    assert record["superseded"] == [{"by": Keys.dso.public, "iteration": 1, "ref": REF, "trades": [first_id]}]
    old = query.trade(chain.view, first_id)
    assert old is not None and old["superseded"] == 0  # kept as history, marked
    # superseded trades never settle, before or after the new closing
    settle_old = {"trade": first_id, "delivered": 400}
    assert reason(chain.sign_and_submit(Keys.p3, "settle", settle_old)) is Reason.CLOSED
    # bargaining goes on: moves must be for rounds after the standing positions, as before
    move = {"interval": 1, "round": 1, "price": 240, "quantity": 1000}
    assert reason(chain.sign_and_submit(Keys.p1, "move", move)) is Reason.RULE_VIOLATION
    assert chain.sign_and_submit(Keys.p1, "move", {**move, "round": 2}).ok
    more = [{"seller": Keys.p1.public, "quantity": 700}]
    assert chain.sign_and_submit(Keys.p3, "move", {"interval": 1, "round": 2, "demands": more}).ok
    assert chain.sign_and_submit(Keys.p1, "trade", {"interval": 1}).ok
    [(second_id, second)] = query.trades(chain.view, 1)
    assert second_id == contract.trade_id(1, Keys.p1.public, Keys.p3.public, 1) != first_id
    assert (second["price"], second["quantity"]) == (240, 700) and "superseded" not in second
    assert reason(chain.sign_and_submit(Keys.p3, "settle", settle_old)) is Reason.CLOSED
    assert chain.sign_and_submit(Keys.p3, "settle", {"trade": second_id, "delivered": 700}).ok
    chain.seal()
    assert query.balance(chain.state, Keys.p1.public) == 10**9 + 240 * 700
    assert query.trade(chain.state, first_id)["settlement"] is None  # type: ignore[index]


def test_who_and_when_may_reopen() -> None:
    chain = chain_with(max_reopens=2)
    # an open interval has nothing to reopen
    assert chain.sign_and_submit(Keys.p1, "offer", {"interval": 1, "round": 1, "price": 250,
                                                   "quantity": 1000, "clean": True}).ok  # fmt: skip
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1))) is Reason.RULE_VIOLATION
    demands = [{"seller": Keys.p1.public, "quantity": 400}]
    assert chain.sign_and_submit(Keys.p3, "bid", {"interval": 1, "round": 0, "demands": demands}).ok
    assert chain.sign_and_submit(Keys.p3, "trade", {"interval": 1}).ok
    # only the DSO: neither a participant of the interval nor an outsider nor an authority
    for who in (Keys.p1, Keys.p3, Keys.p4, Keys.authority):
        assert reason(chain.sign_and_submit(who, "market.reopen", reopen(1))) is Reason.FORBIDDEN
    # malformed bodies (no deadline is malformed too)
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(0))) is Reason.MALFORMED
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1, ref=b"x"))) is Reason.MALFORMED
    body = reopen(1)
    del body["until"]
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", body)) is Reason.MALFORMED
    # the next iteration only: skipping ahead is refused
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(2))) is Reason.RULE_VIOLATION
    # past its own deadline (block time): refused, the interval stays closed
    late = reopen(1, until=chain.tip.time)
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", late, chain.tip.time + 1)) is Reason.CLOSED
    assert chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1)).ok
    assert chain.sign_and_submit(Keys.p3, "trade", {"interval": 1}).ok
    # the same or an earlier iteration again is refused
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1))) is Reason.DUPLICATE
    assert chain.sign_and_submit(Keys.dso, "market.reopen", reopen(2)).ok
    assert chain.sign_and_submit(Keys.p1, "trade", {"interval": 1}).ok
    # the genesis limit
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(3))) is Reason.RULE_VIOLATION
    assert len(query.interval(chain.view, 1)["superseded"]) == 2


def test_no_new_member_joins_a_reopened_interval() -> None:
    chain = chain_with()
    closed_interval(chain)
    assert chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1)).ok
    offer = {"interval": 1, "round": 5, "price": 100, "quantity": 1000, "clean": True}
    assert reason(chain.sign_and_submit(Keys.p4, "offer", offer)) is Reason.RULE_VIOLATION
    bid = {"interval": 1, "round": 5, "demands": [{"seller": Keys.p1.public, "quantity": 100}]}
    assert reason(chain.sign_and_submit(Keys.p4, "bid", bid)) is Reason.RULE_VIOLATION
    record = query.interval(chain.view, 1)
    assert Keys.p4.public not in record["sellers"] + record["buyers"]
    # the first closing's members bargain on
    more = [{"seller": Keys.p1.public, "quantity": 600}]
    assert chain.sign_and_submit(Keys.p3, "move", {"interval": 1, "round": 2, "demands": more}).ok
    # another interval is not affected
    assert chain.sign_and_submit(Keys.p4, "offer", {**offer, "interval": 2}).ok


def test_no_reopen_once_a_trade_is_settled() -> None:
    chain = chain_with()
    closed_interval(chain)
    [(tid, _)] = query.trades(chain.view, 1)
    assert chain.sign_and_submit(Keys.p3, "settle", {"trade": tid, "delivered": 400}).ok
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1))) is Reason.ALREADY_SETTLED
    assert query.interval(chain.view, 1)["closed"] is True


def test_reopening_disabled_by_genesis_and_by_default() -> None:
    chain = chain_with(max_reopens=0)
    closed_interval(chain)
    assert reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1))) is Reason.RULE_VIOLATION
    # a genesis that does not name the limit (every chain made before it existed) never reopens
    assert make_genesis().params.max_reopens == 0


def test_the_reopen_limit_keeps_older_genesis_bytes_and_is_checked() -> None:
    plain = make_genesis()
    assert "max_reopens" not in plain.to_value()["params"]  # the default is not encoded: old hashes stand
    assert Genesis.decode(plain.encode()).hash == plain.hash
    set_ = make_genesis(params=Params(max_reopens=5))
    assert set_.to_value()["params"]["max_reopens"] == 5
    assert Genesis.decode(set_.encode()).params.max_reopens == 5
    spelled = plain.to_value()
    spelled["params"] = {**spelled["params"], "max_reopens": 0}
    try:
        Genesis.from_value(spelled)
    except GenesisError as exc:
        assert "max_reopens" in str(exc)
    else:
        raise AssertionError("an explicitly encoded default must be refused (two encodings, two hashes)")
    doc = plain.to_json()
    doc["params"]["max_reopens"] = 0  # people may spell it out in JSON
    assert Genesis.from_json(doc).hash == plain.hash


steps = st.lists(
    st.tuples(
        st.sampled_from(["reopen", "trade", "move-offer", "move-bid", "settle"]),
        st.sampled_from([0, 1, 2, 3, 4]),  # who (0: the DSO; p4 never takes part)
        st.integers(0, 5),  # iteration
        st.integers(0, 1200),  # quantity
    ),
    max_size=30,
)


@given(steps)
@settings(max_examples=60, deadline=None)
def test_random_reopen_sequences_keep_their_invariants(seq: list[tuple[str, int, int, int]]) -> None:
    chain = chain_with(max_reopens=3)
    closed_interval(chain)
    who = {0: Keys.dso, 1: Keys.p1, 2: Keys.p2, 3: Keys.p3, 4: Keys.p4}
    rnd = 1
    settled_any = False
    for kind, n, iteration, quantity in seq:
        before_ivl = query.interval(chain.view, 1)
        last = before_ivl.get("reopened", {"iteration": 0, "reopens": 0})
        if kind == "reopen":
            result = chain.sign_and_submit(who[n], "market.reopen", reopen(iteration))
            allowed = (
                n == 0 and before_ivl["closed"] and not settled_any and iteration == last["iteration"] + 1
                and last["reopens"] < 3
            )  # fmt: skip
            assert result.ok == allowed, (result, before_ivl)
            if result.ok:  # iteration strictly increasing, every earlier closing kept
                after = query.interval(chain.view, 1)
                assert after["reopened"]["iteration"] == iteration
                assert len(after["superseded"]) == last["reopens"] + 1
                assert after["superseded"][-1]["trades"] == before_ivl["trades"]
            continue
        if kind == "trade":
            chain.sign_and_submit(who[n], "trade", {"interval": 1})
            continue
        if kind == "move-offer":
            rnd += 1
            body = {"interval": 1, "round": rnd, "price": 250, "quantity": quantity}
            chain.sign_and_submit(Keys.p1, "move", body)
            continue
        if kind == "move-bid":
            rnd += 1
            demands = [{"seller": Keys.p1.public, "quantity": quantity}] if quantity else []
            chain.sign_and_submit(Keys.p3, "move", {"interval": 1, "round": rnd, "demands": demands})
            continue
        # settle: any trade ever agreed; only the latest closing's unsettled ones may settle
        ids = [tid for h in before_ivl.get("superseded", []) for tid in h["trades"]] + before_ivl["trades"]
        if not ids:
            continue
        tid = ids[quantity % len(ids)]
        record = query.trade(chain.view, tid)
        assert record is not None
        result = chain.sign_and_submit(Keys.p3, "settle", {"trade": tid, "delivered": 1})
        latest = tid in before_ivl["trades"] and before_ivl["closed"]
        assert result.ok == (latest and record["settlement"] is None), result
        settled_any = settled_any or result.ok
    chain.seal()
    final = query.interval(chain.state, 1)
    for history in final.get("superseded", []):
        for tid in history["trades"]:
            old = query.trade(chain.state, tid)
            assert old is not None and "superseded" in old and old["settlement"] is None
    # a replica replaying the block reaches the same state root (deterministic)
    replica = chain_with(max_reopens=3)
    for tx in chain.block(1).txs:
        assert replica.submit(tx).ok
    replica.seal(chain.block(1).header.time)
    assert replica.state.root == chain.state.root


def test_a_replayed_reopen_is_refused_and_changes_nothing() -> None:
    chain = chain_with()
    closed_interval(chain)
    assert chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1)).ok
    chain.seal()
    [tx] = [tx for tx in chain.block(1).txs if tx.kind == "market.reopen"]
    root = chain.state.root
    assert reason(chain.submit(tx)) is Reason.REPLAYED_NONCE  # the very same transaction again
    chain.seal()
    assert chain.state.root == root
    assert query.interval(chain.state, 1)["reopened"]["reopens"] == 1


# ---- review M1: what a participant could do when any of them could reopen (each now refused) -------------


def test_a_seller_cannot_reopen_to_raise_an_agreed_price() -> None:
    """p1 sold 400 Wh to p3 at 250; alone it would reopen, move to 900 and close: the buyer pays 3.6x."""
    chain = chain_with()
    closed_interval(chain)
    [(tid, before)] = query.trades(chain.view, 1)
    assert reason(chain.sign_and_submit(Keys.p1, "market.reopen", reopen(1))) is Reason.FORBIDDEN
    move = {"interval": 1, "round": 2, "price": 900, "quantity": 1000}
    assert reason(chain.sign_and_submit(Keys.p1, "move", move)) is Reason.CLOSED
    assert query.trades(chain.view, 1) == [(tid, before)] and before["price"] == 250


def test_a_buyer_cannot_reopen_to_welch_on_a_delivered_trade() -> None:
    """p3 bought 400 Wh; it would reopen, withdraw its demand and close, leaving the seller unpaid."""
    chain = chain_with()
    closed_interval(chain)
    [(first, _)] = query.trades(chain.view, 1)
    assert reason(chain.sign_and_submit(Keys.p3, "market.reopen", reopen(1))) is Reason.FORBIDDEN
    withdraw = {"interval": 1, "round": 1, "demands": []}
    assert reason(chain.sign_and_submit(Keys.p3, "move", withdraw)) is Reason.CLOSED
    assert chain.sign_and_submit(
        Keys.p1, "settle", {"trade": first, "delivered": 400}
    ).ok  # the seller is paid


def test_nobody_can_lock_the_dso_out_with_a_far_iteration() -> None:
    """p2 (no trade at stake) would reopen with iteration 10**6 so that the DSO's iteration 1 is a duplicate
    and every MGMC takes the interval as re-bargained. Refused: only the DSO reopens, one iteration at a time."""
    chain = chain_with()
    closed_interval(chain)
    assert reason(chain.sign_and_submit(Keys.p2, "market.reopen", reopen(1_000_000))) is Reason.FORBIDDEN
    assert (
        reason(chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1_000_000))) is Reason.RULE_VIOLATION
    )
    assert contract.reopening(chain.view, 1) is None
    assert chain.sign_and_submit(Keys.dso, "market.reopen", reopen(1)).ok
    last = contract.reopening(chain.view, 1)
    assert last is not None and last["iteration"] == 1 and last["by"] == Keys.dso.public

"""Genesis `settle_by_both`: a trade settles on what both parties metered, not on the buyer's word alone.

Without the parameter (every genesis written before it) the first `settle` of a party, the DSO or an
authority pays, and an old chain replays to the state root pinned below. With it each party states its
`delivered` once; two statements within `settle_tolerance_wh` pay the lower, two beyond it dispute the trade
(nothing moves; only the DSO settles it, no other authority: review9 F2); the DSO may settle any trade first;
a party whose counterparty stays silent until `settle_wait_ms` after the first statement settles on its own by
sending it again. A genesis with the rule needs the interval clock (`settle_epoch_ms`, `settle_interval_ms`):
nobody's settle lands before the trade's interval ended (review9 F1); and it names a DSO (F6). Every
refusal names the trade and who sent it. The properties over any order are in test_settle_properties.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ledger_fixtures import T0, Keys, make_genesis, reason

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, GenesisError, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Accepted, Reason, Rejected

PRICE = 250  # micro-units per Wh
WAIT = 60_000  # ms: the tests' settle_wait_ms
BALANCE = 10**7
SELLER, BUYER, BUYER2, OTHER = Keys.p1, Keys.p3, Keys.p4, Keys.p2


def accounts(balance: int = BALANCE) -> tuple[Account, ...]:
    """The DSO and p1 … p4, each with `balance` but OTHER (p2), who always has BALANCE."""
    return (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", balance=BALANCE if k is OTHER else balance)
            for i, k in enumerate([Keys.p1, Keys.p2, Keys.p3, Keys.p4], 1)
        ),
    )


# the interval clock a settle_by_both genesis needs, unless a test names its own: quarter-hours from the
# Unix epoch, so the intervals traded here (a few) ended decades before the blocks (T0): a statement's timing
# is then the wait's alone; the clock's own rule is tested with `clocked_chain`
ENDED_LONG_AGO = {"settle_interval_ms": 900_000}


def both_chain(
    tolerance: int = 0,
    balance: int = BALANCE,
    credit: int = 0,
    contracts: tuple[str, ...] = ("market",),
    **more: int,
) -> LocalChain:
    clock = {**ENDED_LONG_AGO, **more}
    params = Params(
        credit_limit=credit, settle_by_both=1, settle_tolerance_wh=tolerance, settle_wait_ms=WAIT, **clock
    )
    genesis = make_genesis(accounts=accounts(balance), params=params, contracts=contracts)
    return LocalChain(genesis, Keys.authority)


class Clock:
    """Block time for the test: every transaction sealed alone, at a time the test chooses."""

    def __init__(self, chain: LocalChain, now: int = T0 + 10_000) -> None:
        self.chain, self.now = chain, now

    def send(self, signer: Keypair, body: dict[str, Any], kind: str = "settle") -> Accepted | Rejected:
        self.now += 1
        result = self.chain.sign_and_submit(signer, kind, body, time_ms=self.now)
        self.chain.seal(self.now)
        return result

    def state(self, signer: Keypair, tid: bytes, delivered: int) -> Accepted | Rejected:
        return self.send(signer, {"trade": tid, "delivered": delivered})


def trades_of(c: LocalChain, clock: Clock, interval: int = 1) -> tuple[bytes, bytes]:
    """SELLER offers 1000 Wh at PRICE; BUYER asks 400 and BUYER2 300; the interval closes: (tid, tid2)."""
    offer = {"interval": interval, "round": 0, "price": PRICE, "quantity": 1000, "clean": True}
    assert clock.send(SELLER, offer, "offer").ok
    for buyer, quantity in ((BUYER, 400), (BUYER2, 300)):
        bid = {"interval": interval, "round": 0, "demands": [{"seller": SELLER.public, "quantity": quantity}]}
        assert clock.send(buyer, bid, "bid").ok
    assert clock.send(BUYER, {"interval": interval}, "trade").ok
    by_buyer = {t["buyer"]: tid for tid, t in query.trades(c.state, interval)}
    return by_buyer[BUYER.public], by_buyer[BUYER2.public]


def balances(c: LocalChain) -> dict[bytes, int]:
    return {k.public: query.balance(c.state, k.public) for k in (SELLER, BUYER, BUYER2, OTHER)}


def events(result: Accepted | Rejected) -> list[tuple[str, dict[str, Any]]]:
    assert isinstance(result, Accepted), result
    return list(result.events)


# ---------------------------------------------------------------------------------------------- old chains


def old_chain_history() -> tuple[LocalChain, list[bool]]:
    """Three intervals traded and settled on the rule before the parameter, by buyers, sellers, the DSO and
    an authority, with refusals among them (the history whose state root is pinned)."""
    c = LocalChain(make_genesis(accounts=accounts(), params=Params(credit_limit=10**6)), Keys.authority)
    results = []
    for interval in (1, 2, 3):
        at = T0 + interval * 1000
        offer = {"interval": interval, "round": 0, "price": 250, "quantity": 1000, "clean": True}
        results.append(c.sign_and_submit(Keys.p1, "offer", offer, at).ok)
        results.append(c.sign_and_submit(Keys.p2, "offer", {**offer, "price": 200}, at).ok)
        for buyer in (Keys.p3, Keys.p4):
            demands = [
                {"seller": Keys.p1.public, "quantity": 400},
                {"seller": Keys.p2.public, "quantity": 300},
            ]
            results.append(
                c.sign_and_submit(buyer, "bid", {"interval": interval, "round": 0, "demands": demands}, at).ok
            )
        results.append(c.sign_and_submit(Keys.p3, "trade", {"interval": interval}, at).ok)
        c.seal(at + 500)
    senders = [Keys.p3, Keys.p1, Keys.dso, Keys.authority, Keys.p4, Keys.p2]
    n = 0
    for interval in (1, 2, 3):
        for tid, tr in query.trades(c.state, interval):
            who = senders[n % len(senders)]
            n += 1
            body = {"trade": tid, "delivered": tr["quantity"] - n}
            results.append(c.sign_and_submit(who, "settle", body, T0 + 10_000).ok)
    c.seal(T0 + 11_000)
    return c, results


# measured on the code before settle_by_both existed (main at cb0c673), with /tmp's copy of this history
OLD_ROOT = "6e80303c34a155d90d9e913ed378d04cd2bcf648adeab9cba3d3be679ca04c88"
OLD_RESULTS = [True] * 16 + [False, True, True, False] + [True] * 5 + [False, False]


def test_an_old_chain_replays_to_the_state_root_it_had_before_the_parameter() -> None:
    c, results = old_chain_history()
    assert results == OLD_RESULTS
    assert c.height == 4 and c.state.root.hex() == OLD_ROOT
    old_records = [tr for i in (1, 2, 3) for _, tr in query.trades(c.state, i)]
    for tr in old_records:  # the old records: no statements, no basis
        assert "statements" not in tr and "deadline" not in tr
        assert tr["settlement"] is None or set(tr["settlement"]) == {"amount", "delivered", "txid"}


def test_the_default_is_not_encoded_so_old_genesis_bytes_stand() -> None:
    old = make_genesis()
    for name in ("settle_by_both", "settle_tolerance_wh", "settle_wait_ms"):
        assert name not in old.to_value()["params"] and name.encode() not in old.encode()
    new = make_genesis(params=Params(settle_by_both=1, settle_tolerance_wh=2, **ENDED_LONG_AGO))
    assert new.hash != old.hash
    assert Genesis.decode(new.encode()).params == new.params
    assert Genesis.decode(old.encode()).params.settle_by_both == 0
    assert Genesis.from_json(json.loads(json.dumps(new.to_json()))).hash == new.hash


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"settle_by_both": 2}, "params.settle_by_both: expected 0 or 1"),
        ({"settle_tolerance_wh": 2}, "params.settle_tolerance_wh: only with settle_by_both 1"),
        ({"settle_wait_ms": 5}, "params.settle_wait_ms: only with settle_by_both 1"),
        ({"settle_by_both": 1, "settle_wait_ms": 0}, "params.settle_wait_ms: expected 1 to"),
        ({"settle_by_both": 1, "settle_wait_ms": 10**13}, "params.settle_wait_ms: expected 1 to"),
    ],
)
def test_bad_settlement_params_are_refused_with_one_line(params: dict[str, int], words: str) -> None:
    with pytest.raises(GenesisError, match=words.replace(".", r"\.")):
        Params.from_value(params)


def test_a_genesis_that_encodes_the_default_is_refused() -> None:
    with pytest.raises(GenesisError, match="settle_by_both: 0 is the default"):
        Params.from_value({"settle_by_both": 0})
    with pytest.raises(GenesisError, match="settle_tolerance_wh: 0 is the default"):
        Params.from_value({"settle_by_both": 1, "settle_tolerance_wh": 0})


# ---------------------------------------------------------------------------------------------- the rule


def test_two_equal_statements_pay_once_and_one_alone_moves_nothing() -> None:
    c = both_chain()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    before = balances(c)
    first = clock.state(SELLER, tid, 390)
    assert events(first) == [("stated", {"trade": tid, "party": "seller", "delivered": 390})]
    assert balances(c) == before  # one statement alone moves nothing
    status = query.settlement(c.state, tid)
    assert status is not None and status["state"] == "stated" and status["settlement"] is None
    assert status["deadline"] == clock.now + WAIT
    assert status["statements"]["seller"]["delivered"] == 390
    second = clock.state(BUYER, tid, 390)
    assert events(second) == [
        ("stated", {"trade": tid, "party": "buyer", "delivered": 390}),
        ("settled", {"trade": tid, "amount": PRICE * 390, "delivered": 390, "basis": "agreed"}),
    ]
    after = balances(c)
    assert after[SELLER.public] - before[SELLER.public] == PRICE * 390
    assert before[BUYER.public] - after[BUYER.public] == PRICE * 390
    status = query.settlement(c.state, tid)
    assert status is not None and status["state"] == "settled"
    assert status["settlement"]["basis"] == "agreed" and status["settlement"]["txid"] == second.txid
    for signer in (SELLER, BUYER, Keys.dso, Keys.authority):
        refused = clock.state(signer, tid, 390)
        assert reason(refused) is Reason.ALREADY_SETTLED and tid.hex()[:16] in str(refused)
    assert balances(c) == after


def test_statements_within_the_tolerance_pay_the_lower() -> None:
    c = both_chain(tolerance=3)
    clock = Clock(c)
    tid, tid2 = trades_of(c, clock)
    before = balances(c)
    assert clock.state(BUYER, tid, 397).ok
    settled = clock.state(SELLER, tid, 400)  # the seller's meter reads more: the buyer's 397 is paid
    assert events(settled)[-1] == (
        "settled",
        {"trade": tid, "amount": PRICE * 397, "delivered": 397, "basis": "agreed"},
    )
    assert clock.state(SELLER, tid2, 296).ok
    assert events(clock.state(BUYER2, tid2, 299))[-1][1]["delivered"] == 296  # the seller's, lower here
    after = balances(c)
    assert after[SELLER.public] - before[SELLER.public] == PRICE * (397 + 296)
    assert sum(after.values()) == sum(before.values())


def test_a_dispute_moves_nothing_and_only_the_dso_ends_it() -> None:
    c = both_chain(tolerance=3)
    clock = Clock(c)
    tid, tid2 = trades_of(c, clock)
    before = balances(c)
    assert clock.state(BUYER, tid, 100).ok  # the buyer under-states what it received
    disputed = clock.state(SELLER, tid, 400)
    assert events(disputed) == [
        ("stated", {"trade": tid, "party": "seller", "delivered": 400}),
        ("disputed", {"trade": tid, "buyer": 100, "seller": 400}),
    ]
    assert balances(c) == before
    status = query.settlement(c.state, tid)
    assert status is not None and status["state"] == "disputed"
    # no party moves it: a second statement, its own or after any deadline, is refused naming the dispute
    clock.now += WAIT * 2
    for signer, delivered in ((BUYER, 100), (SELLER, 400), (BUYER, 250)):
        refused = clock.state(signer, tid, delivered)
        assert reason(refused) is Reason.DUPLICATE
        assert "disputed" in str(refused) and tid.hex()[:16] in str(refused)
    refused = clock.state(OTHER, tid, 400)  # a participant who is not a party
    assert reason(refused) is Reason.FORBIDDEN and "not a party" in str(refused)
    assert balances(c) == before
    # the DSO meters the feeder: its word is final
    final = clock.state(Keys.dso, tid, 380)
    assert events(final) == [
        ("settled", {"trade": tid, "amount": PRICE * 380, "delivered": 380, "basis": "dso"})
    ]
    assert reason(clock.state(Keys.authority, tid, 1)) is Reason.ALREADY_SETTLED
    # no other authority settles a disputed trade (on the MGMC chain it may be a party's own node key)
    assert clock.state(BUYER2, tid2, 0).ok and clock.state(SELLER, tid2, 300).ok
    refused = clock.state(Keys.authority, tid2, 150)
    assert reason(refused) is Reason.FORBIDDEN and "only the DSO" in str(refused)
    assert events(clock.state(Keys.dso, tid2, 150))[-1][1]["basis"] == "dso"
    after = balances(c)
    assert after[SELLER.public] - before[SELLER.public] == PRICE * (380 + 150)
    assert sum(after.values()) == sum(before.values())


def test_the_dso_may_settle_first_another_authority_never() -> None:
    c = both_chain()
    clock = Clock(c)
    tid, tid2 = trades_of(c, clock)
    refused = clock.state(Keys.authority, tid, 400)
    assert reason(refused) is Reason.FORBIDDEN and "only the DSO" in str(refused)
    assert events(clock.state(Keys.dso, tid, 400))[0][1]["basis"] == "dso"  # before any statement
    assert clock.state(BUYER2, tid2, 10).ok
    assert reason(clock.state(Keys.authority, tid2, 300)) is Reason.FORBIDDEN
    assert events(clock.state(Keys.dso, tid2, 300))[0][1]["basis"] == "dso"  # after one statement
    refused = clock.state(SELLER, tid2, 300)  # the seller was too late to state: settled
    assert reason(refused) is Reason.ALREADY_SETTLED


def test_a_silent_counterparty_cannot_hold_the_payment_back_after_the_deadline() -> None:
    c = both_chain()
    clock = Clock(c)
    tid, tid2 = trades_of(c, clock)
    before = balances(c)
    assert clock.state(SELLER, tid, 400).ok
    deadline = clock.now + WAIT
    refused = clock.state(SELLER, tid, 400)  # before the deadline a second statement is a duplicate
    assert reason(refused) is Reason.DUPLICATE and "seller already stated 400 Wh" in str(refused)
    assert str(deadline) in str(refused)
    clock.now = deadline - 2  # the last block time the buyer still may state in is deadline - 1 ...
    assert reason(clock.state(SELLER, tid, 400)) is Reason.DUPLICATE
    assert balances(c) == before
    # ... from the deadline on the buyer's statement is refused, and the seller's settles on its own
    late = clock.state(BUYER, tid, 10)
    assert reason(late) is Reason.CLOSED and "after the deadline" in str(late) and "buyer" in str(late)
    changed = clock.state(SELLER, tid, 399)  # a statement is final: not a new number after the deadline
    assert reason(changed) is Reason.DUPLICATE and "not 399" in str(changed)
    lapsed = clock.state(SELLER, tid, 400)
    assert events(lapsed) == [
        ("settled", {"trade": tid, "amount": PRICE * 400, "delivered": 400, "basis": "lapsed"})
    ]
    assert balances(c)[SELLER.public] - before[SELLER.public] == PRICE * 400
    # the deadline is measured from the first statement, whoever made it: the buyer's word settles too
    assert clock.state(BUYER2, tid2, 200).ok
    clock.now += WAIT
    assert events(clock.state(BUYER2, tid2, 200))[0][1]["basis"] == "lapsed"


def test_a_second_statement_the_buyer_cannot_pay_is_refused_unrecorded_and_retried() -> None:
    c = both_chain(balance=1000, credit=500, contracts=("market", "payments"))
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(BUYER, tid, 100).ok
    refused = clock.state(SELLER, tid, 100)  # 25,000 from a buyer with 1,000 and 500 of credit
    assert reason(refused) is Reason.INSUFFICIENT_FUNDS
    status = query.settlement(c.state, tid)
    assert status is not None and set(status["statements"]) == {"buyer"} and status["state"] == "stated"
    # once the buyer has the money (OTHER pays it in) the seller's retry of the same statement settles
    assert clock.send(OTHER, {"payee": BUYER.public, "amount": 30_000, "ref": "top-up"}, "pay").ok
    settled = clock.state(SELLER, tid, 100)
    assert events(settled)[-1][1] == {"trade": tid, "amount": 25_000, "delivered": 100, "basis": "agreed"}
    assert query.balance(c.state, BUYER.public) == 1000 + 30_000 - 25_000


def test_refusals_name_the_trade_and_the_sender() -> None:
    c = both_chain()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    too_much = clock.state(BUYER, tid, 401)
    assert reason(too_much) is Reason.INVALID
    assert "buyer" in str(too_much) and tid.hex()[:16] in str(too_much) and "401" in str(too_much)
    stranger = clock.state(OTHER, tid, 1)
    assert reason(stranger) is Reason.FORBIDDEN and OTHER.public.hex()[:16] in str(stranger)
    missing = clock.state(BUYER, bytes(32), 1)
    assert reason(missing) is Reason.NOT_FOUND and "00000000" in str(missing)


def test_a_superseded_trade_never_settles_and_its_statements_stay() -> None:
    c = both_chain(max_reopens=1)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(BUYER, tid, 400).ok
    body = {"interval": 1, "iteration": 1, "ref": bytes(32), "until": clock.now + 10**6}
    assert clock.send(Keys.dso, body, "market.reopen").ok
    status = query.settlement(c.state, tid)
    assert status is not None and status["state"] == "superseded"
    assert status["statements"]["buyer"]["delivered"] == 400
    refused = clock.state(SELLER, tid, 400)
    assert reason(refused) is Reason.CLOSED and "superseded" in str(refused)


def test_the_query_reads_every_state_and_none_for_no_trade() -> None:
    c = both_chain()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert query.settlement(c.state, bytes(32)) is None
    status = query.settlement(c.state, tid)
    assert status == {"state": "open", "statements": {}, "deadline": None, "settlement": None}


def test_a_replica_replaying_the_blocks_reaches_the_same_state_root() -> None:
    c = both_chain(tolerance=1)
    clock = Clock(c)
    tid, tid2 = trades_of(c, clock)
    for signer, trade_id, delivered in (
        (BUYER, tid, 5), (SELLER, tid, 400), (SELLER, tid2, 300), (Keys.dso, tid, 200),
    ):  # fmt: skip
        assert clock.state(signer, trade_id, delivered).ok
    clock.now += WAIT
    assert clock.state(SELLER, tid2, 300).ok
    replica = both_chain(tolerance=1)
    for height in range(1, c.height + 1):
        block = c.block(height)
        for tx in block.txs:
            assert replica.submit(tx).ok
        replica.seal(block.header.time)
        assert replica.header(height).state_root == block.header.state_root
    assert replica.state.root == c.state.root


# ------------------------------------------------------------------ review9: delivery first, the DSO decides

INTERVAL_MS = 900_000  # the tests' market interval: interval 1 ends at T0 + 2 * INTERVAL_MS


def clocked_chain(**more: int) -> tuple[LocalChain, int]:
    """A settle_by_both chain with the interval clock at T0; (chain, the end of interval 1)."""
    c = both_chain(settle_epoch_ms=T0, settle_interval_ms=INTERVAL_MS, **more)
    return c, T0 + 2 * INTERVAL_MS


def test_no_settle_lands_before_the_trades_interval_ended_so_an_early_word_starts_no_wait() -> None:
    """review9 F1 case a: the seller states the full 400 Wh at the close, before any delivery; the buyer
    states its metered 0 after it, later than the wait. The early word is refused, so it started no clock,
    and the trade is disputed (the DSO decides) instead of paid on the seller's word."""
    c, end = clocked_chain()
    clock = Clock(c)
    tid, tid2 = trades_of(c, clock)
    before = balances(c)
    early = clock.state(SELLER, tid, 400)
    assert reason(early) is Reason.RULE_VIOLATION
    assert f"before interval 1 ended at {end}" in str(early) and tid.hex()[:16] in str(early)
    assert query.settlement(c.state, tid) == {
        "state": "open", "statements": {}, "deadline": None, "settlement": None,
    }  # fmt: skip
    assert reason(clock.state(Keys.dso, tid2, 300)) is Reason.RULE_VIOLATION  # the DSO meters after it too
    clock.now = end - 2  # the last block time before the end is still refused ...
    assert reason(clock.state(BUYER2, tid2, 300)) is Reason.RULE_VIOLATION
    clock.now = end + WAIT * 3  # ... the buyer reads its meter long after the end
    assert clock.state(BUYER, tid, 0).ok
    assert clock.state(SELLER, tid, 400).ok  # the seller states in time: its early word started nothing
    assert query.settlement(c.state, tid)["state"] == "disputed"  # type: ignore[index]
    assert balances(c) == before
    # from the end on, a statement starts the wait as before
    assert clock.state(BUYER2, tid2, 300).ok
    assert query.settlement(c.state, tid2)["deadline"] == clock.now + WAIT  # type: ignore[index]


def test_an_early_buyer_cannot_settle_at_zero_on_its_own_word() -> None:
    """review9 F1 case a2: the buyer states 0 at the close; refused, its word cannot lapse against the seller's
    metered 400 stated after the delivery. Stated right at the end (block time = end) it is accepted."""
    c, end = clocked_chain()
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert reason(clock.state(BUYER, tid, 0)) is Reason.RULE_VIOLATION
    clock.now = end - 1
    assert clock.state(SELLER, tid, 400).ok  # block time end: the interval has ended
    clock.now += WAIT - 2  # the buyer still has the whole wait after the seller's statement
    assert clock.state(BUYER, tid, 400).ok
    status = query.settlement(c.state, tid)
    assert status is not None and status["settlement"]["basis"] == "agreed"


def test_a_party_cannot_settle_its_own_dispute_through_its_node_key() -> None:
    """review9 F2: OTHER is an authority (as each MGMC's node key is on the MGMC chain). Disputed, its 0 is
    refused; the DSO's 400 from the feeder metering settles."""
    genesis = make_genesis(
        accounts=accounts(),
        authorities=(Keys.authority.public, OTHER.public),
        params=Params(settle_by_both=1, settle_wait_ms=WAIT, **ENDED_LONG_AGO),
    )
    c = LocalChain(genesis, Keys.authority)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    assert clock.state(SELLER, tid, 400).ok and clock.state(BUYER, tid, 0).ok
    refused = clock.state(OTHER, tid, 0)
    assert reason(refused) is Reason.FORBIDDEN and OTHER.public.hex()[:16] in str(refused)
    settled = events(clock.state(Keys.dso, tid, 400))
    assert settled[-1][1]["basis"] == "dso" and settled[-1][1]["delivered"] == 400


def test_a_settle_by_both_genesis_without_a_dso_is_refused() -> None:
    """review9 F6: nobody could ever settle a dispute."""
    parties = tuple(a for a in accounts() if "dso" not in a.roles)
    with pytest.raises(GenesisError, match="settle_by_both: needs an account with role dso"):
        make_genesis(accounts=parties, params=Params(settle_by_both=1, **ENDED_LONG_AGO))
    assert make_genesis(accounts=parties).params.settle_by_both == 0  # the old rule needs none


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"settle_interval_ms": 5}, "params.settle_interval_ms: only with settle_by_both 1"),
        ({"settle_epoch_ms": 5}, "params.settle_epoch_ms: only with settle_by_both 1"),
        ({"settle_by_both": 1, "settle_epoch_ms": 5}, "params.settle_epoch_ms: only with settle_interval_ms"),
        ({"settle_by_both": 1, "settle_interval_ms": 86_400_001}, "params.settle_interval_ms: expected 1 to"),
    ],
)
def test_bad_clock_params_are_refused_with_one_line(params: dict[str, int], words: str) -> None:
    with pytest.raises(GenesisError, match=words.replace(".", r"\.")):
        Params.from_value(params)


def test_a_negative_epoch_is_refused_where_the_genesis_is_built_not_only_where_it_is_read() -> None:
    with pytest.raises(GenesisError, match=r"params\.settle_epoch_ms: expected an integer in \[0, 2\*\*63\)"):
        Params(settle_by_both=1, settle_epoch_ms=-1, settle_interval_ms=INTERVAL_MS)


def test_a_settle_by_both_genesis_without_the_clock_is_refused_naming_both_parameters() -> None:
    """review9 F1 closed for every chain: without the clock a word given before delivery started the other
    party's wait (docs/ledger-format.md); refused wherever a genesis is made or read."""
    words = (
        r"params\.settle_by_both: needs the market interval clock, settle_interval_ms .* and settle_epoch_ms"
    )
    with pytest.raises(GenesisError, match=words):
        Params(settle_by_both=1)
    with pytest.raises(GenesisError, match=words):
        Params(settle_by_both=1, settle_tolerance_wh=2, settle_wait_ms=WAIT)
    with pytest.raises(GenesisError, match=words):
        Params.from_value({"settle_by_both": 1})
    doc = make_genesis(params=Params(settle_by_both=1, **ENDED_LONG_AGO)).to_json()
    del doc["params"]["settle_interval_ms"]
    with pytest.raises(GenesisError, match=words):
        Genesis.from_json(doc)
    assert make_genesis().params.settle_interval_ms == 0  # the buyer's-word rule needs none


def test_the_clock_is_encoded_only_when_given() -> None:
    plain = make_genesis()
    for name in ("settle_epoch_ms", "settle_interval_ms"):
        assert name.encode() not in plain.encode()
    clocked = make_genesis(
        params=Params(settle_by_both=1, settle_epoch_ms=T0, settle_interval_ms=INTERVAL_MS)
    )
    assert Genesis.decode(clocked.encode()).params == clocked.params
    assert Genesis.from_json(json.loads(json.dumps(clocked.to_json()))).hash == clocked.hash
    assert clocked.params.interval_end(3) == T0 + 4 * INTERVAL_MS and plain.params.interval_end(3) is None
    # epoch 0 (a chain whose clock starts at 0) is the default: not encoded, read back the same
    zero = make_genesis(params=Params(settle_by_both=1, settle_interval_ms=INTERVAL_MS))
    assert Genesis.decode(zero.encode()).params.interval_end(0) == INTERVAL_MS

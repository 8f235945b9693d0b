"""Sealed settlement statements (genesis `sealed_statements`, review12 F1: the copy attack).

First the attack on public statements (the rule without the parameter, as every chain had it): the second
party to state reads the first's statement and tailors its own - it copies a buyer's over-statement, copies
within the tolerance, names no shortfall of its own where the buyer's covers the gap, or stays silent - and
settles better than stating honestly (figures in each test). Then the seal: each party commits to a hash of
its statement and salt and reveals only once both committed (or the commit deadline passed), so it cannot
read the other's first; a reveal that does not open its own commitment is refused; a committed party that
keeps its reveal back after reading the other's is settled at its worst, never better than honest.

Trade `tid`: SELLER sells BUYER 400 Wh at PRICE 250; the DSO priced retail 300, feed-in 50
(test_settle_compensation). Balances are what each party nets from the one settlement.
"""

from __future__ import annotations

from typing import Any

import pytest
from ledger_fixtures import Keys, make_genesis, reason
from sealed_fixtures import commit, reveal, salt_for, sealed_setup, state
from test_settle_both import BUYER, PRICE, SELLER, WAIT, Clock, balances, clocked_chain, events, trades_of
from test_settle_compensation import FEED_IN, RETAIL

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_sealed import SETTLE_SHAPE, seal_of
from peergrid_ledger.genesis import Genesis, GenesisError, Params
from peergrid_ledger.results import Reason


def seller_net(c: LocalChain, before: dict[bytes, int]) -> int:
    return balances(c)[SELLER.public] - before[SELLER.public]


def dso_settles(clock: Clock, tid: bytes, delivered: int, seller_short: int, buyer_short: int) -> Any:
    """The DSO's final word on a dispute, from its meters (here: the truth of the case)."""
    body = {"trade": tid, "delivered": delivered, "seller_short": seller_short, "buyer_short": buyer_short}
    return clock.send(Keys.dso, body)


# ------------------------------------------------------------------ the attack on public statements


def test_public_statements_copying_a_buyers_over_statement_gains_30000() -> None:
    """Truth: 300 Wh delivered, the seller 100 short, the buyer took all. The buyer states 400 (its meter
    over-reads). Honest seller: 300/100 - disputed, the DSO's meters settle 300 and the seller pays 100 x
    (retail - price): 70,000. Copying the buyer's 400/0 settles agreed: 100,000."""
    outcomes = {}
    for second in ("honest", "copy"):
        c, clock, tid, _ = sealed_setup(sealed=0)
        before = balances(c)
        assert state(clock, BUYER, tid, 400, 0).ok
        if second == "honest":
            assert events(state(clock, SELLER, tid, 300, 100))[-1][0] == "disputed"
            assert dso_settles(clock, tid, 300, 100, 0).ok
        else:
            assert events(state(clock, SELLER, tid, 400, 0))[-1][1]["basis"] == "agreed"
        outcomes[second] = seller_net(c, before)
    assert outcomes == {"honest": PRICE * 300 - 100 * (RETAIL - PRICE), "copy": PRICE * 400}
    assert outcomes["copy"] - outcomes["honest"] == 30_000


def test_public_statements_copying_within_the_tolerance_gains_6000() -> None:
    """Tolerance 20 Wh. Truth: the seller delivered 280 (120 short), the buyer would take only 300 (100
    short); the buyer's meter reads 300. Honest: agreed at 280, the seller pays 20 x 50: 69,000. Copying the
    buyer's 300/100: agreed at 300, no compensation: 75,000."""
    outcomes = {}
    for second, figures in (("honest", (280, 120)), ("copy", (300, 100))):
        c, clock, tid, _ = sealed_setup(tolerance=20, sealed=0)
        before = balances(c)
        assert state(clock, BUYER, tid, 300, 100).ok
        assert events(state(clock, SELLER, tid, *figures))[-1][1]["basis"] == "agreed"
        outcomes[second] = seller_net(c, before)
    assert outcomes == {"honest": 69_000, "copy": 75_000}


def test_public_statements_naming_no_shortfall_or_staying_silent_gains_20000() -> None:
    """Truth: 300 delivered, the seller 100 short and the buyer 100 short (equal: no compensation). The
    buyer states 300/100 first; a seller that reads it and names no shortfall of its own (300/0) or says
    nothing at all (the buyer's lone statement settles) is paid 100 x (price - feed-in) more."""
    outcomes = {}
    for second in ("honest", "tailored", "silent"):
        c, clock, tid, _ = sealed_setup(sealed=0)
        before = balances(c)
        assert state(clock, BUYER, tid, 300, 100).ok
        if second == "silent":
            clock.now += WAIT
            assert events(state(clock, BUYER, tid, 300, 100))[-1][1]["basis"] == "lapsed"
        else:
            assert state(clock, SELLER, tid, 300, 100 if second == "honest" else 0).ok
        outcomes[second] = seller_net(c, before)
    assert outcomes == {"honest": 75_000, "tailored": 95_000, "silent": 95_000}
    assert 100 * (PRICE - FEED_IN) == 20_000


# ------------------------------------------------------------------ the seal


def test_the_market_contract_takes_the_sealed_bodies() -> None:
    """market.py's KINDS (N5's file this session) must check `settle` against market_sealed's shapes."""
    assert market.KINDS["settle"].shape is SETTLE_SHAPE


def test_sealed_statements_agree_and_pay_once() -> None:
    c, clock, tid, _ = sealed_setup()
    before = balances(c)
    sealed = events(commit(clock, BUYER, tid, 300, 100))
    assert sealed == [("sealed", {"trade": tid, "party": "buyer", "deadline": clock.now + WAIT})]
    assert commit(clock, SELLER, tid, 300, 100).ok
    assert balances(c) == before
    assert events(reveal(clock, BUYER, tid, 300, 100))[0] == (
        "stated",
        {"trade": tid, "party": "buyer", "delivered": 300, "short": 100},
    )
    settled = events(reveal(clock, SELLER, tid, 300, 100))
    assert settled[-1][0] == "settled" and settled[-1][1]["basis"] == "agreed"
    assert seller_net(c, before) == PRICE * 300
    assert sum(balances(c).values()) == sum(before.values())
    record = query.trade(c.state, tid)
    assert record is not None and set(record["seals"]) == {"buyer", "seller"}
    for who in (BUYER, SELLER):
        assert reason(reveal(clock, who, tid, 300, 100)) is Reason.ALREADY_SETTLED
        assert reason(commit(clock, who, tid, 300, 100)) is Reason.ALREADY_SETTLED


def test_a_reveal_before_both_committed_is_refused_and_changes_nothing() -> None:
    c, clock, tid, _ = sealed_setup()
    assert commit(clock, BUYER, tid, 300, 100).ok
    root = c.state.root
    early = reveal(clock, BUYER, tid, 300, 100)
    assert reason(early) is Reason.RULE_VIOLATION and "before the seller committed" in str(early)
    assert c.state.root == root
    # a party that never committed cannot reveal, nor state in the open
    no_seal = reveal(clock, SELLER, tid, 300, 100)
    assert reason(no_seal) is Reason.RULE_VIOLATION and "never committed" in str(no_seal)
    plain = state(clock, SELLER, tid, 300, 100)
    assert reason(plain) is Reason.RULE_VIOLATION and "commits first" in str(plain)
    assert c.state.root == root


def test_a_reveal_that_does_not_match_its_commitment_is_refused_with_the_reason() -> None:
    c, clock, tid, _ = sealed_setup()
    before = balances(c)
    assert commit(clock, BUYER, tid, 300, 100).ok and commit(clock, SELLER, tid, 300, 100).ok
    assert reveal(clock, BUYER, tid, 300, 100).ok
    for figures, tag in (((300, 0), b""), ((310, 90), b""), ((300, 100), b"other salt")):
        wrong = reveal(clock, SELLER, tid, *figures, tag=tag)
        assert reason(wrong) is Reason.INVALID and "does not match its commitment" in str(wrong)
        assert tid.hex()[:16] in str(wrong)
    assert balances(c) == before
    assert events(reveal(clock, SELLER, tid, 300, 100))[-1][1]["basis"] == "agreed"


def test_the_copy_attack_fails_a_copied_commitment_does_not_open_for_the_copier() -> None:
    """The seller reads the buyer's commitment and posts the same hash: it opens only with the buyer's key,
    so the seller cannot reveal the buyer's statement as its own. Having kept back its own, it is settled
    at its worst: 0 delivered, all 400 short (on the buyer's over-statement of case 1: -20,000, not 100,000)."""
    c, clock, tid, _ = sealed_setup()
    before = balances(c)
    buyer_seal = seal_of(c.genesis.chain, tid, BUYER.public, 400, 0, salt_for(BUYER, tid))
    assert clock.send(BUYER, {"trade": tid, "seal": buyer_seal}).ok
    assert clock.send(SELLER, {"trade": tid, "seal": buyer_seal}).ok
    assert reveal(clock, BUYER, tid, 400, 0).ok
    copied = reveal(clock, SELLER, tid, 400, 0, salt=salt_for(BUYER, tid))
    assert reason(copied) is Reason.INVALID and "does not match" in str(copied)
    clock.now += WAIT
    assert reason(reveal(clock, SELLER, tid, 300, 100)) is Reason.INVALID  # nor its own: it sealed a copy
    settled = events(reveal(clock, BUYER, tid, 400, 0))[-1]
    assert settled[1]["basis"] == "withheld" and settled[1]["delivered"] == 0
    assert seller_net(c, before) == -400 * (RETAIL - PRICE) == -20_000


@pytest.mark.parametrize("case", ["over-statement", "tolerance", "shortfall"])
def test_keeping_a_reveal_back_after_reading_the_others_never_beats_revealing_honestly(case: str) -> None:
    """Each of the three attacks above, sealed: the seller commits honestly, reads the buyer's reveal, and
    either reveals (the honest outcome: the DSO's meters on a dispute) or keeps it back."""
    buyer, honest, truth, tolerance = {
        "over-statement": ((400, 0), (300, 100), (300, 100, 0), 0),
        "tolerance": ((300, 100), (280, 120), None, 20),
        "shortfall": ((300, 100), (300, 100), None, 0),
    }[case]
    outcomes = {}
    for second in ("reveal", "keep back"):
        c, clock, tid, _ = sealed_setup(tolerance=tolerance)
        before = balances(c)
        assert commit(clock, BUYER, tid, *buyer).ok and commit(clock, SELLER, tid, *honest).ok
        assert reveal(clock, BUYER, tid, *buyer).ok
        if second == "reveal":
            last = events(reveal(clock, SELLER, tid, *honest))[-1]
            if truth is not None:
                assert last[0] == "disputed" and dso_settles(clock, tid, *truth).ok
        else:
            clock.now += WAIT
            assert events(reveal(clock, BUYER, tid, *buyer))[-1][1]["basis"] == "withheld"
        outcomes[second] = seller_net(c, before)
    assert outcomes["keep back"] < outcomes["reveal"], outcomes


def test_a_buyer_keeping_its_reveal_back_pays_for_the_whole_quantity() -> None:
    c, clock, tid, _ = sealed_setup()
    before = balances(c)
    assert commit(clock, SELLER, tid, 300, 100).ok and commit(clock, BUYER, tid, 300, 0).ok
    assert reveal(clock, SELLER, tid, 300, 100).ok
    clock.now += WAIT
    late = reveal(clock, BUYER, tid, 300, 0)
    assert reason(late) is Reason.CLOSED and "after the deadline" in str(late)
    settled = events(reveal(clock, SELLER, tid, 300, 100))[-1][1]
    assert settled["basis"] == "withheld" and settled["delivered"] == 400 and settled["compensation"] == 0
    assert balances(c)[BUYER.public] - before[BUYER.public] == -PRICE * 400
    # honest, the buyer would have paid 300 x price less the seller's compensation 100 x (retail - price)
    assert -PRICE * 400 < -PRICE * 300 + 100 * (RETAIL - PRICE)


def test_a_lone_committer_reveals_after_the_commit_deadline_and_settles_on_its_word() -> None:
    """The buyer never commits (its node is down): from the commit deadline the seller may reveal, the buyer
    can no longer commit, and the seller's word settles as a lone statement does (the old rule: the buyer,
    silent without a commitment, owns the gap the seller does not)."""
    c, clock, tid, _ = sealed_setup()
    before = balances(c)
    assert commit(clock, SELLER, tid, 300, 0).ok
    deadline = clock.now + WAIT
    clock.now = deadline - 2
    refused = reveal(clock, SELLER, tid, 300, 0)
    assert reason(refused) is Reason.RULE_VIOLATION and str(deadline) in str(refused)
    assert reveal(clock, SELLER, tid, 300, 0).ok  # block time = the deadline
    late = commit(clock, BUYER, tid, 300, 100)
    assert reason(late) is Reason.CLOSED and "commit deadline" in str(late)
    settled = events(reveal(clock, SELLER, tid, 300, 0))[-1][1]
    assert settled["basis"] == "lapsed" and settled["payer"] == "buyer"
    assert seller_net(c, before) == PRICE * 300 + 100 * (PRICE - FEED_IN)


def test_commitments_are_final_and_only_the_parties_seal() -> None:
    _, clock, tid, tid2 = sealed_setup()
    assert commit(clock, SELLER, tid, 400).ok
    again = commit(clock, SELLER, tid, 300, 100)
    assert reason(again) is Reason.DUPLICATE and "already committed" in str(again)
    for who in (Keys.dso, Keys.authority):
        refused = commit(clock, who, tid, 400)
        assert reason(refused) in (Reason.INVALID, Reason.FORBIDDEN)
    # the DSO's word stays final on a sealed chain, before or after any commitment
    assert events(dso_settles(clock, tid, 380, 20, 0))[-1][1]["basis"] == "dso"
    assert events(dso_settles(clock, tid2, 300, 0, 0))[-1][1]["basis"] == "dso"


def test_seal_and_salt_are_refused_on_a_chain_without_sealed_statements() -> None:
    _, clock, tid, _ = sealed_setup(sealed=0)
    refused = commit(clock, SELLER, tid, 400)
    assert reason(refused) is Reason.INVALID and "no sealed_statements" in str(refused)
    refused = reveal(clock, SELLER, tid, 400)
    assert reason(refused) is Reason.INVALID and "no sealed_statements" in str(refused)
    assert state(clock, SELLER, tid, 400, 0).ok  # the open statement as before


def test_the_param_needs_settle_by_both_and_its_default_is_not_encoded() -> None:
    with pytest.raises(GenesisError, match="sealed_statements: only with settle_by_both"):
        Params(sealed_statements=1)
    with pytest.raises(GenesisError, match="sealed_statements: expected 0 or 1"):
        Params(settle_by_both=1, settle_interval_ms=900_000, sealed_statements=2)
    plain = Params(settle_by_both=1, settle_interval_ms=900_000)
    assert "sealed_statements" not in plain.to_value()
    sealed = Params(settle_by_both=1, settle_interval_ms=900_000, sealed_statements=1)
    assert sealed.to_value()["sealed_statements"] == 1
    genesis = make_genesis(params=sealed)
    assert Genesis.decode(genesis.encode()).params.sealed_statements == 1


def test_no_commitment_lands_before_the_trades_interval_ended() -> None:
    """A commitment starts the commit deadline: made before the delivery, it would shorten the other party's
    window as an early statement did (review9 F1), so the interval clock refuses it the same way."""
    c, end = clocked_chain(sealed_statements=1)
    clock = Clock(c)
    tid, _ = trades_of(c, clock)
    early = commit(clock, SELLER, tid, 400)
    assert reason(early) is Reason.RULE_VIOLATION and f"before interval 1 ended at {end}" in str(early)
    record = query.trade(c.state, tid)
    assert record is not None and "seals" not in record and "deadline" not in record
    clock.now = end
    assert commit(clock, SELLER, tid, 400).ok

"""The fee-funded make-whole (contracts/uplift_fund.py): a session opened with an exchange fee collects
ceil(fee x cleared Wh / 10^6) from each member into the chain's uplift fund, pays the owed from the fund all or
nothing, keeps a withheld credit, refunds what the fund holds above the session's cap to its fee payers, and
carries the rest into the next session; a member without the money owes its fee to the fund."""

from __future__ import annotations

import pytest
from ledger_fixtures import Keys, make_genesis
from test_settle_both import WAIT, Clock
from uplift_fee_fixtures import (
    KEYS,
    MEMBERS,
    P1,
    P2,
    P3,
    P4,
    TICK_FEE,
    TRADED,
    balances,
    deliver,
    fee_chain,
    fund,
    ok,
    open_session,
    ready_session,
    run_session,
    settle,
)

from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import exchange_state, market, uplift
from peergrid_ledger.contracts.funds import debts
from peergrid_ledger.contracts.market_fee import fee_for
from peergrid_ledger.genesis import Account, GenesisError, Params
from peergrid_ledger.keyspace import UPLIFT_FUND

FEES = {k: wh for k, wh in TRADED.items()}  # at one tick (10^6 nano/kWh) a member pays 1 per Wh it cleared


def test_a_session_with_a_fee_collects_pays_the_owed_from_the_fund_and_refunds_above_the_cap() -> None:
    chain, clock = fee_chain(cap=1_000)
    ready_session(chain, clock, "day-1", 100, gains={P1.public: 4_000})
    result, moved = settle(chain, clock, "day-1")
    # fees 2500 / 500 / 2000 / 1000 (6000); P1's 4000 paid from them; the 2000 left is 1000 above the cap,
    # refunded by the fees: 1000 x 2500/6000 = 416.7, x 500/6000 = 83.3, 333.3, 166.7 -> floors 416, 83, 333,
    # 166 and the 2 left to the largest remainders (P1's and P4's, 2/3 each)
    refunds = {P1.public: 417, P2.public: 83, P3.public: 333, P4.public: 167}
    assert moved == {k: (4_000 if k == P1.public else 0) - FEES[k] + refunds[k] for k in moved}
    assert fund(chain) == 1_000 and sum(moved.values()) == -fund(chain)
    settled = result.events[0]
    assert settled == (
        "uplift_settled",
        {"session": "day-1", "funded": True, "owed": 4_000, "collected": 6_000, "paid": 4_000, "withheld": 0,
         "refunded": 1_000, "fund_before": 0, "fund_after": 1_000},
    )  # fmt: skip
    kinds = [kind for kind, _ in result.events]
    assert kinds == ["uplift_settled", *["uplift_fee"] * 4, "uplift_paid", *["uplift_refund"] * 4]
    done = uplift.outcome(chain.state, "day-1")
    assert done is not None
    assert (done["funded"], done["owed"], done["collected"], done["fee"]) == (True, 4_000, 6_000, TICK_FEE)
    assert (done["fund_before"], done["fund_after"]) == (0, 1_000)
    assert done["credits"] == [[P1.public, 4_000]] and done["withheld"] == []
    assert done["charges"] == sorted([k, v] for k, v in FEES.items())
    assert done["refunds"] == sorted([k, v] for k, v in refunds.items())
    assert [UPLIFT_FUND, P1.public, 4_000, 0] in done["payments"]
    assert "surplus" not in done  # no payer figure is read
    # once: a second settle is a duplicate and moves nothing
    again = clock.send(P2, {"session": "day-1"}, "uplift.settle")
    assert not again.ok and "already settled" in str(again) and fund(chain) == 1_000


def test_the_fund_carries_over_and_pays_a_day_its_own_fees_cannot() -> None:
    """Day 1 owes nothing: its 6000 stay in the fund up to the cap of 5000 (1000 refunded). Day 2 owes 9000,
    more than its own 6000: the fund's 11,000 pays it in full, and 2000 stay (below the cap: no refund)."""
    chain, clock = fee_chain(cap=5_000)
    first = run_session(chain, clock, "day-1", 100).events[0][1]
    assert (first["owed"], first["refunded"], first["fund_after"], fund(chain)) == (0, 1_000, 5_000, 5_000)
    ready_session(chain, clock, "day-2", 200, gains={P1.public: 9_000})
    result, moved = settle(chain, clock, "day-2")
    second = result.events[0][1]
    assert (second["funded"], second["paid"], second["fund_before"]) == (True, 9_000, 5_000)
    assert (second["refunded"], second["fund_after"], fund(chain)) == (0, 2_000, 2_000)
    assert moved == {k: (9_000 if k == P1.public else 0) - FEES[k] for k in moved}


def test_an_owed_above_the_fund_pays_nobody_and_the_fund_keeps_its_balance_to_the_cap() -> None:
    chain, clock = fee_chain(cap=10_000)
    ready_session(chain, clock, "day-1", 100, gains={P1.public: 6_001})
    result, moved = settle(chain, clock, "day-1")
    settled = result.events[0][1]
    assert (settled["funded"], settled["owed"], settled["paid"], settled["refunded"]) == (False, 6_001, 0, 0)
    assert fund(chain) == 6_000 and uplift.outcome(chain.state, "day-1")["credits"] == []  # type: ignore[index]
    assert {k: -v for k, v in moved.items()} == FEES
    # the next day owes 6,001 again: now 12,000 cover it; 5,999 stay (the cap 10,000 is not reached)
    settled = run_session(chain, clock, "day-2", 200, gains={P1.public: 6_001}).events[0][1]
    assert (settled["funded"], settled["paid"], fund(chain)) == (True, 6_001, 5_999)


def test_a_payee_short_of_its_delivery_forfeits_its_credit_to_the_fund() -> None:
    chain, clock = fee_chain(cap=10**6)
    settled = run_session(chain, clock, "day-1", 100, gains={P1.public: 4_000}, short={P1.public: 1}).events[
        0
    ][1]
    assert (settled["funded"], settled["paid"], settled["withheld"], fund(chain)) == (True, 0, 4_000, 6_000)
    done = uplift.outcome(chain.state, "day-1")
    assert done is not None and done["withheld"] == [[P1.public, 4_000]] and done["credits"] == []


def test_the_claimed_surplus_is_not_read_with_a_fee() -> None:
    """The payers' lever (M10 §3): a claim of surplus 0 saved a payer its charge. With a fee every claim's
    surplus is stored as sent and changes nothing: the same balances with surplus 0 and with 10^6."""
    outcomes = []
    for surplus in (0, 10**6):
        chain, clock = fee_chain(cap=500)
        run_session(chain, clock, "day-1", 100, gains={P2.public: 3_000}, surplus=surplus)
        assert uplift.claim(chain.state, "day-1", P3.public)["surplus"] == surplus  # type: ignore[index]
        outcomes.append((balances(chain), fund(chain)))
    assert outcomes[0] == outcomes[1]


def test_a_fee_off_the_tick_is_refused_and_a_whole_tick_fee_is_charged_exactly() -> None:
    """A fee is a whole number of ticks (market_fee.check_fee): one off the tick is no genesis. At whole ticks
    ceil(fee x Wh / 10^6) is exact, fee/10^6 per Wh; `fee_for` itself still rounds up, in the fund's favour."""
    with pytest.raises(
        GenesisError, match=r"params\.exchange_fee must be a whole number of ticks .* got 333333"
    ):
        fee_chain(fee=333_333, cap=10**6)
    chain, clock = fee_chain(fee=3 * TICK_FEE, cap=10**6)
    run_session(chain, clock, "day-1", 100)
    done = uplift.outcome(chain.state, "day-1")
    assert done is not None
    want = {k: 3 * wh for k, wh in TRADED.items()}  # 7500 / 1500 / 6000 / 3000
    assert done["charges"] == sorted([k, v] for k, v in want.items()) and fund(chain) == 18_000
    # 2500 x 0.333333 = 833.3 -> 834; 500 -> 166.7 -> 167; 2000 -> 666.7 -> 667; 1000 -> 333.3 -> 334
    assert [fee_for(333_333, wh) for wh in (2_500, 500, 2_000, 1_000)] == [834, 167, 667, 334]


def test_a_member_without_the_money_owes_its_fee_to_the_fund_and_its_next_credit_pays_it() -> None:
    """P2 and P4 start with nothing and no credit: P4 cannot pay for its energy (its debts to P1 and P2), so
    neither has the money for its fee; each owes it to the fund under the session's uplift id, and the fund
    is refunded only to P1 and P3, who paid. A later payment to P2 pays its oldest debt first: the fund
    collects P2's fee."""
    start = {P1.public: 10**9, P2.public: 0, P3.public: 10**9, P4.public: 0}
    chain, clock = fee_chain(cap=0, balance=start)
    result = run_session(chain, clock, "day-1", 100)
    fees = {e["member"]: e for kind, e in result.events if kind == "uplift_fee"}
    assert fees[P2.public] == {"session": "day-1", "member": P2.public, "fee": 500, "owed": 500}
    assert fees[P4.public]["owed"] == 1_000 and "owed" not in fees[P1.public]
    ref = uplift.uplift_ref("day-1")
    assert debts(chain.state, P2.public) == [{"amount": 500, "creditor": UPLIFT_FUND, "trade": ref}]
    assert debts(chain.state, P4.public)[-1] == {"amount": 1_000, "creditor": UPLIFT_FUND, "trade": ref}
    done = uplift.outcome(chain.state, "day-1")
    assert done is not None and [P2.public, UPLIFT_FUND, 500, 500] in done["payments"]
    # the fund held P1's 2500 and P3's 2000, all above the cap 0: refunded to them, who paid their whole fee;
    # P2 and P4, owing theirs to the fund, are refunded nothing
    assert done["refunds"] == sorted([[P1.public, 2_500], [P3.public, 2_000]]) and fund(chain) == 0
    ok(clock.send(P1, {"payee": P2.public, "amount": 700, "ref": "gift"}, "pay"))
    assert fund(chain) == 500 and debts(chain.state, P2.public) == [] and balances(chain)[P2.public] == 200


def test_a_fee_zero_session_keeps_todays_record_and_rule() -> None:
    """A market.fee of 0 posted over a genesis fee: the session opened after it has no `fee` key, and its uplift
    is funded by the payers' claimed surplus, as before the fee (outcome with `surplus`, no fund)."""
    chain, clock = fee_chain(fee=TICK_FEE)
    ok(clock.send(Keys.dso, {"fee": 0, "fund_cap": 0}, "market.fee"))
    open_session(clock, "day-1", 100)
    record = exchange_state.session(chain.state, "day-1")
    assert record is not None and "fee" not in record and "fund_cap" not in record
    claims = {P1.public: (40_000, 0), P2.public: (0, 30_000), P3.public: (0, 60_000), P4.public: (0, 10_000)}
    for k, (gain, surplus) in claims.items():
        ok(clock.send(KEYS[k], {"session": "day-1", "gain": gain, "surplus": surplus}, "uplift.claim"))
    deliver(chain, clock, 100)
    before = balances(chain)
    ok(clock.send(P1, {"session": "day-1"}, "uplift.settle"))
    moved = {k: balances(chain)[k] - before[k] for k in before}
    assert moved == {P1.public: 40_000, P2.public: -12_000, P3.public: -24_000, P4.public: -4_000}
    done = uplift.outcome(chain.state, "day-1")
    assert done is not None and done["surplus"] == 100_000 and "collected" not in done and fund(chain) == 0


def test_without_a_fee_a_whole_session_replays_to_its_state_root_from_before_the_fee() -> None:
    """Fee 0, the default: no `fee` in genesis or the session record, the payers' surplus path, no fund - the
    same genesis hash and state root as the same transactions give on 5ed2237's ledger, before the fee."""
    rules = {**market.NO_RULES, "max_quantity": 1_000_000}
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", balance=10**9, rules=rules)
            for i, k in enumerate(MEMBERS, 1)
        ),
    )
    params = Params(settle_by_both=1, settle_wait_ms=WAIT, settle_interval_ms=900_000, unpaid_as_debt=1)
    genesis = make_genesis(accounts=accounts, params=params, contracts=("market", "exchange", "uplift"))
    assert genesis.hash.hex() == "9fd3ea081f86e6eb567bce4fdb375f197990083b804aeade1dc358e7cece62d5"
    chain = LocalChain(genesis, Keys.authority)
    clock = Clock(chain)
    open_session(clock, "day-1", 100)
    for k, (gain, surplus) in {P1: (40_000, 0), P2: (0, 30_000), P3: (0, 60_000), P4: (0, 10_000)}.items():
        ok(clock.send(k, {"session": "day-1", "gain": gain, "surplus": surplus}, "uplift.claim"))
    deliver(chain, clock, 100)
    ok(clock.send(P1, {"session": "day-1"}, "uplift.settle"))
    root = "89b4d28d0a6cf59c701618e48c2e5b5a55daffe520368fcddef2e95b3ac6ae24"
    assert chain.committed().root.hex() == chain.header(chain.height).state_root.hex() == root
    assert fund(chain) == 0

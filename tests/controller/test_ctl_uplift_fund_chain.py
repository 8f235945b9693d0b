"""The controller's fee-funded make-whole (uplift_fund.py) is the uplift contract's (the ledger's
`contracts/uplift_fund.settle_from_fund`), figure for figure, over runs of sessions (review26 R26-5, R26-2).

Each run starts a state with four members (balances, a credit limit, older debts to the fund or to another
account that owes nothing), a fund and a reserve in it, then settles one to three sessions on it: random cleared
Wh (some 0), fee (on and off the tick), cap, what is owed (to members with and without cleared Wh) and
defaulted payees. The contract runs on the state; the controller gets what a caller knows before the settle -
each member's fee and what it can pay of it (its balance + the credit limit), its debts - and carries its own
fund and reserve from session to session. Funded, owed, collected, credits, withheld, refunds, each fee's unpaid
part, the fund and the reserve after must all agree (before the fix: 11 of R26's 40 sessions differed, each with
a member too poor for its fee, and a voided day's owed was refunded).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_controller.exchange_fee import due
from peergrid_controller.uplift import Uplift
from peergrid_controller.uplift_fund import FundOutcome, fund_payout, settle_fund
from peergrid_ledger import keyspace as ks
from peergrid_ledger.contracts.funds import debts, debts_key
from peergrid_ledger.contracts.uplift_fund import FUND, fund_balance, fund_reserve, settle_from_fund
from peergrid_ledger.genesis import Genesis, Params
from peergrid_ledger.machine import BlockContext
from peergrid_ledger.state import Overlay, StateTree

MEMBERS = tuple(bytes([i]) * 32 for i in (0x21, 0x5A, 0x93, 0xC4))  # key order is name (hex) order
OTHER = bytes([0xEE]) * 32  # a creditor that owes nothing
MAX_CAP = 10**15  # the chain's bound: the controller's cap None

SESSION = st.fixed_dictionaries(
    {
        "fee": st.one_of(st.sampled_from([1, 333_333, 750_000, 1_000_000, 10**7]), st.integers(1, 10**7)),
        "cap": st.none() | st.sampled_from([0, 1_000, 5_000]) | st.integers(0, 30_000),
        "traded": st.tuples(*[st.sampled_from([0, 1, 500, 999, 2_000, 2_500]) for _ in MEMBERS]),
        "owed": st.tuples(*[st.sampled_from([0, 0, 1, 1_500, 2_600, 5_000, 60_000]) for _ in MEMBERS]),
        "defaulted": st.sets(st.sampled_from(MEMBERS), max_size=2),
    }
)
START = st.fixed_dictionaries(
    {
        "balances": st.tuples(*[st.sampled_from([0, 0, 1, 400, 2_000, 10**9]) for _ in MEMBERS]),
        "credit": st.sampled_from([0, 700]),
        "debts": st.tuples(
            *[st.lists(st.tuples(st.booleans(), st.integers(1, 3_000)), max_size=2) for _ in MEMBERS]
        ),
        "fund": st.integers(0, 20_000),
        "reserved": st.integers(0, 100),  # percent of the fund
    }
)


def name(key: bytes) -> str:
    return key.hex()


def chain_state(start: dict[str, Any]) -> tuple[Overlay, BlockContext]:
    view = Overlay(StateTree("fee-rule"))
    for key, balance, owing in zip(MEMBERS, start["balances"], start["debts"], strict=True):
        view.put(ks.balance(key), ks.encode_int(balance))
        if owing:
            entries = [
                {"amount": amount, "creditor": FUND if to_fund else OTHER, "trade": b"older"}
                for to_fund, amount in owing
            ]
            view.put_obj(debts_key(key), entries)
    view.put(ks.balance(FUND), ks.encode_int(start["fund"]))
    reserve = start["fund"] * start["reserved"] // 100
    if reserve:
        view.put(ks.UPLIFT_RESERVE, ks.encode_int(reserve))
    genesis = Genesis(
        chain="fee-rule", time=0, authorities=(OTHER,), params=Params(credit_limit=start["credit"])
    )
    return view, BlockContext(genesis, 1, 0)


def controller_session(
    view: Overlay, ctx: BlockContext, day: dict[str, Any], fund_before: int, reserve_before: int
) -> tuple[Uplift, FundOutcome]:
    """The controller's rule on what its caller knows before the settle: each fee, what the member can pay of it,
    its debts."""
    fees = {name(k): due(day["fee"], wh) for k, wh in zip(MEMBERS, day["traded"], strict=True) if wh > 0}
    room = {
        name(k): ks.decode_int(view.get(ks.balance(k))) + ctx.genesis.params.credit_limit for k in MEMBERS
    }
    paid_in = {n: max(0, min(f, room[n])) for n, f in fees.items()}
    owing = {
        name(k): [(d["creditor"] == FUND, int(d["amount"])) for d in debts(view, k)]
        for k in MEMBERS
        if debts(view, k)
    }
    owed = {name(k): c for k, c in zip(MEMBERS, day["owed"], strict=True)}
    uplift = fund_payout(owed, fees, fund_before, paid_in)
    return settle_fund(
        uplift,
        {name(k) for k in day["defaulted"]},
        fees,
        fund_before,
        day["cap"],
        paid_in=paid_in,
        reserve_before=reserve_before,
        debts=owing,
    )


def chain_session(view: Overlay, ctx: BlockContext, day: dict[str, Any], n: int) -> dict[str, Any]:
    record = {"fee": day["fee"], "fund_cap": MAX_CAP if day["cap"] is None else day["cap"]}
    traded = dict(zip(MEMBERS, day["traded"], strict=True))
    owed = {k: c for k, c in zip(MEMBERS, day["owed"], strict=True) if c > 0}
    done, _ = settle_from_fund(view, ctx, f"day-{n}", record, traded, owed, day["defaulted"], b"ref-%d" % n)
    return done


def as_chain(done: dict[str, Any]) -> dict[str, Any]:
    """The contract's outcome by member name, what FundOutcome holds."""
    unpaid = {name(row[0]): row[3] for row in done["payments"] if row[1] == FUND and row[3]}
    return {
        "funded": done["funded"],
        "owed": done["owed"],
        "collected": done["collected"],
        "fund_before": done["fund_before"],
        "fund_after": done["fund_after"],
        "credits": {name(k): v for k, v in done["credits"]},
        "withheld": {name(k): v for k, v in done["withheld"]},
        "fees": {name(k): v for k, v in done["charges"]},
        "refunds": {name(k): v for k, v in done["refunds"]},
        "unpaid": unpaid,
        "reserve_before": done.get("reserve_before", 0),
        "reserve_after": done.get("reserve_after", 0),
    }


FIELDS = (
    "funded",
    "owed",
    "collected",
    "fund_before",
    "fund_after",
    "credits",
    "withheld",
    "fees",
    "refunds",
    "unpaid",
    "reserve_before",
    "reserve_after",
)


@settings(max_examples=300, deadline=None)
@given(start=START, sessions=st.lists(SESSION, min_size=1, max_size=3))
def test_the_controller_s_fund_rule_is_the_contract_s(
    start: dict[str, Any], sessions: list[dict[str, Any]]
) -> None:
    view, ctx = chain_state(start)
    fund_before, reserve_before = fund_balance(view), fund_reserve(view)
    for n, day in enumerate(sessions):
        paid, model = controller_session(view, ctx, day, fund_before, reserve_before)
        chain = as_chain(chain_session(view, ctx, day, n))
        assert {key: getattr(model, key) for key in FIELDS} == chain, f"session {n}"
        assert paid.credits == model.credits and paid.withheld == model.withheld
        # carried by the controller itself, checked against the chain's state
        fund_before, reserve_before = model.fund_after, model.reserve_after
        assert (fund_before, reserve_before) == (fund_balance(view), fund_reserve(view))


def test_a_fee_left_owed_is_not_in_the_fund_and_earns_no_refund() -> None:
    # R26-5's shape: b (fee 500) can pay 200 of it. The fund (1000 before) holds 1000 + 300 + 200 + 200, not
    # + 1000 collected: 1700 available, so 1800 owed to a is unfunded (the old rule funded it from b's debt);
    # with nothing owed the cap of 0 refunds only a and c, the full payers (1700 by 3 : 2)
    fees, paid_in = {"a": 300, "b": 500, "c": 200}, {"a": 300, "b": 200, "c": 200}
    short = fund_payout({"a": 1_800}, fees, 1_000, paid_in)
    assert not short.funded and short.surplus == 1_700
    quiet = fund_payout({}, fees, 1_000, paid_in)
    _, fund = settle_fund(quiet, (), fees, 1_000, 0, paid_in=paid_in)
    assert fund.refunds == {"a": 300, "c": 200} and fund.unpaid == {"b": 300}
    assert fund.collected == 1_000 and fund.fund_after == 1_000 + 700 - 500


def test_a_payee_s_credit_first_pays_what_it_owes_the_fund() -> None:
    # b pays none of its 500 fee and is owed 400: the credit goes back into the fund against its fee debt
    fees, paid_in = {"a": 300, "b": 500}, {"a": 300, "b": 0}
    uplift = fund_payout({"b": 400}, fees, 1_000, paid_in)
    assert uplift.funded
    _, fund = settle_fund(uplift, (), fees, 1_000, None, paid_in=paid_in)
    assert fund.credits == {"b": 400} and fund.fund_after == 1_300 and fund.unpaid == {"b": 500}


def test_nothing_is_owed_to_a_member_that_cleared_nothing() -> None:
    uplift = fund_payout({"a": 100, "z": 900}, {"a": 50, "z": 0}, 10_000)
    assert uplift.funded and uplift.credits == {"a": 100} and uplift.owed == 100


def test_a_voided_day_refunds_what_a_paid_day_would() -> None:
    # R26-2's lever: the payers' refunds above the cap are the same whether 2600 owed is paid or voided (a payer
    # claiming 6000 beyond the fund): the voided owed is reserved
    fees = {"a": 2_500, "b": 500, "c": 2_000, "d": 1_000}
    _, paid = settle_fund(fund_payout({"c": 2_600}, fees, 0), (), fees, 0, 0)
    _, voided = settle_fund(fund_payout({"c": 2_600, "a": 6_000}, fees, 0), (), fees, 0, 0)
    assert not voided.funded and voided.reserve_after == 6_000
    assert sum(paid.refunds.values()) == 6_000 - 2_600 and voided.refunds == {}
    # ... and the reserve is kept from a later refund: the next quiet day refunds only its own fees' excess
    _, later = settle_fund(fund_payout({}, fees, 6_000), (), fees, 6_000, 0, reserve_before=6_000)
    assert later.refunds == fees and later.fund_after == later.reserve_after == 6_000


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"paid_in": {"a": 400}}, "pays 0 up to its own fee"),
        ({"paid_in": {"x": 1}}, "pays 0 up to its own fee"),
        ({"reserve_before": 2_000}, "is part of the fund"),
        ({"debts": {"a": [(True, 0)]}}, "a debt is > 0"),
    ],
)
def test_bad_figures_are_refused(kwargs: dict[str, Any], says: str) -> None:
    fees = {"a": 300}
    with pytest.raises(ValueError, match=says):
        settle_fund(fund_payout({}, fees, 1_000), (), fees, 1_000, 0, **kwargs)

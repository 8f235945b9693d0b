"""Property: over random runs of fee-funded sessions on one chain - fees of one to ten ticks (a fee off the tick is
refused: test_market_fee), caps, the DSO changing the fee between sessions, members too poor to pay their fee, owed
gains and short payees - every uplift.settle conserves money, never takes the fund below 0, moves the fund exactly
by what it collected less what it paid and refunded, pays each payee at most once and exactly its owed when the
fund covers the day, and refunds no payer more than the fee it paid."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from ledger_fixtures import Keys
from uplift_fee_fixtures import KEYS, P1, P2, P3, P4, TICK_FEE, TRADED, fee_chain, fund, ok, ready_session

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import uplift
from peergrid_ledger.contracts.funds import debts, owed_total
from peergrid_ledger.contracts.market_fee import fee_for
from peergrid_ledger.keyspace import UPLIFT_FUND

EVERYONE = (*KEYS, Keys.stranger.public, Keys.dso.public, UPLIFT_FUND)
FEES = st.integers(1, 10).map(lambda ticks: ticks * TICK_FEE)  # every fee the chain takes above 0
SESSION = st.fixed_dictionaries(
    {
        "gains": st.fixed_dictionaries(
            {k: st.sampled_from([0, 1_500, 2_600, 5_000, 20_000]) for k in (P1.public, P2.public, P3.public)}
        ),
        "short": st.dictionaries(st.sampled_from([P1.public, P2.public]), st.integers(1, 400), max_size=2),
        "surplus": st.sampled_from([0, 10**6]),
        "new_fee": st.none() | st.tuples(st.sampled_from([0, TICK_FEE, 2_000_000]), st.integers(0, 20_000)),
    }
)


def total(chain: LocalChain) -> int:
    return sum(query.balance(chain.state, k) for k in EVERYONE)


def owed_to_fund(chain: LocalChain) -> int:
    return sum(int(d["amount"]) for k in KEYS for d in debts(chain.state, k) if d["creditor"] == UPLIFT_FUND)


@settings(max_examples=100, deadline=None)
@given(
    fee=FEES,
    cap=st.integers(0, 30_000),
    poor=st.sets(st.sampled_from([P3.public, P4.public])),
    credit=st.sampled_from([0, 700]),
    sessions=st.lists(SESSION, min_size=1, max_size=3),
)
def test_fee_funded_settles_conserve_money_and_pay_by_the_rule(
    fee: int, cap: int, poor: set[bytes], credit: int, sessions: list[dict[str, Any]]
) -> None:
    start = {k: (0 if k in poor else 10**9) for k in KEYS}
    chain, clock = fee_chain(fee=fee, cap=cap, balance=start, credit=credit)
    money = total(chain)
    session_fee, session_cap = fee, cap
    for n, day in enumerate(sessions):
        name, first = f"day-{n}", 100 + 10 * n
        for (
            k
        ) in KEYS:  # a buyer that owes may not buy: the stranger pays its debts (the fund collects its part)
            if owed_total(chain.state, k):
                ok(
                    clock.send(
                        Keys.stranger,
                        {"payee": k, "amount": owed_total(chain.state, k), "ref": f"aid-{n}"},
                        "pay",
                    )
                )
        ready_session(
            chain, clock, name, first, gains=day["gains"], short=day["short"], surplus=day["surplus"]
        )
        fund_before, held_before = fund(chain), fund(chain) + owed_to_fund(chain)
        result = ok(clock.send(P1, {"session": name}, "uplift.settle"))
        done = uplift.outcome(chain.state, name)
        assert done is not None and total(chain) == money and fund(chain) >= 0
        if session_fee == 0:  # the DSO turned the fee off: the payers' surplus path, the fund untouched
            assert "collected" not in done and fund(chain) == fund_before
        else:
            check_settle(chain, result.events, done, session_fee, session_cap, day, fund_before, held_before)
        if day["new_fee"] is not None:
            session_fee, session_cap = day["new_fee"]
            session_cap = session_cap if session_fee else 0  # a cap without a fee is refused (R26-7)
            named = {"coordinators": [P1.public]} if session_fee else {}
            ok(clock.send(Keys.dso, {"fee": session_fee, "fund_cap": session_cap, **named}, "market.fee"))
        assert not clock.send(P2, {"session": name}, "uplift.settle").ok  # once
    assert total(chain) == money


def check_settle(
    chain: LocalChain,
    events: tuple[tuple[str, dict[str, Any]], ...],
    done: dict[str, Any],
    fee: int,
    cap: int,
    day: dict[str, Any],
    fund_before: int,
    held_before: int,
) -> None:
    charges = {k: fee_for(fee, wh) for k, wh in TRADED.items()}
    assert dict(map(tuple, done["charges"])) == charges and done["collected"] == sum(charges.values())
    assert (done["fee"], done["fund_before"], done["fund_after"]) == (fee, fund_before, fund(chain))
    paid_in = {row[0]: row[2] - row[3] for row in done["payments"] if row[1] == UPLIFT_FUND}
    assert all(0 <= paid_in[k] <= charges[k] for k in charges)
    owed = {k: g for k, g in day["gains"].items() if g > max(TRADED[k], 1000) + 1}
    funded = sum(owed.values()) <= fund_before + sum(paid_in.values())
    assert done["funded"] == funded and done["owed"] == sum(owed.values())
    credits = {k: g for k, g in owed.items() if funded and k not in day["short"]}
    withheld = {k: g for k, g in owed.items() if funded and k in day["short"]}
    assert dict(map(tuple, done["credits"])) == credits and dict(map(tuple, done["withheld"])) == withheld
    refunds = dict(map(tuple, done["refunds"]))
    full = {k: c for k, c in charges.items() if paid_in[k] == c}  # only a member that paid its whole fee
    assert all(0 < r <= full[k] for k, r in refunds.items())
    refunded = sum(refunds.values())
    # the fund the cap met: after the payout, before the refunds (a refund may pay a debt owed to the fund)
    kinds = [kind for kind, _ in events]
    start = kinds.index("uplift_refund") if "uplift_refund" in kinds else len(events)
    back_in = sum(
        e["amount"] for kind, e in events[start:] if kind == "owed_paid" and e["creditor"] == UPLIFT_FUND
    )
    # the reserve: drawn only once the unreserved balance paid what it could, then what was owed and not
    # paid (the unfunded day's owed, the withheld credits) is added, as far as the fund holds it; never refunded
    reserve_before, reserve = done.get("reserve_before", 0), done.get("reserve_after", 0)
    met = fund(chain) + refunded - back_in  # the fund after the payout
    drawn = max(0, sum(credits.values()) - (fund_before + sum(paid_in.values()) - reserve_before))
    unpaid = done["owed"] - sum(credits.values())
    assert reserve == reserve_before - drawn + min(unpaid, met - (reserve_before - drawn))
    assert 0 <= reserve <= fund(chain)
    assert refunded == min(max(0, met - reserve - cap), sum(full.values()))
    # the fund and what is owed to it moved by exactly the fees less the payout and the refunds
    assert (
        fund(chain) + owed_to_fund(chain)
        == held_before + done["collected"] - sum(credits.values()) - refunded
    )
    event(f"owed {bool(owed)} funded {funded} withheld {bool(withheld)} refunded {refunded > 0}")
    event(f"a fee owed {any(row[3] for row in done['payments'])}")
    paid = [e["payee"] for kind, e in events if kind == "uplift_paid"]
    back = [e["member"] for kind, e in events if kind == "uplift_refund"]
    assert sorted(paid) == sorted(credits) and len(set(back)) == len(back) == len(refunds)
    assert events[0][1]["refunded"] == refunded and events[0][1]["paid"] == sum(credits.values())

"""A chain with the exchange fee (genesis `exchange_fee`, `market.fee`) and whole day-ahead sessions on it, for the
fee-funded make-whole's tests (imported as `uplift_fee_fixtures`).

Each session `run_session` opens has P1 and P2 selling, P3 and P4 buying, and clears to the same trades as
test_uplift_contract's day: P1→P3 1000 and P2→P4 500 Wh in its first interval, P1→P3 1000 and P1→P4 500 in
its second, so P1 trades 2500 Wh, P2 500, P3 2000 and P4 1000 (6000 Wh in all, 3000 a side)."""

from __future__ import annotations

from typing import Any

from ledger_fixtures import Keys, make_genesis
from test_settle_both import WAIT, Clock

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.keyspace import UPLIFT_FUND
from peergrid_ledger.results import Accepted, Rejected

P1, P2, P3, P4 = Keys.p1, Keys.p2, Keys.p3, Keys.p4
MEMBERS = (P1, P2, P3, P4)
KEYS = {k.public: k for k in MEMBERS}
POSITIONS = {P1: [1000, 1500], P2: [500, 0], P3: [-1000, -1000], P4: [-500, -500]}
TRADED = {P1.public: 2500, P2.public: 500, P3.public: 2000, P4.public: 1000}  # Wh each member clears
PRICES = [100_000_000, 120_000_000]  # nano per kWh: 100 and 120 micro-units per Wh
TICK_FEE = 1_000_000  # nano-currency per kWh: 1 micro-unit per Wh, one market tick
BALANCE = 10**9


def ok(result: Accepted | Rejected) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def fee_chain(
    fee: int = TICK_FEE,
    cap: int = 0,
    balance: int | dict[bytes, int] = BALANCE,
    credit: int = 0,
    coordinators: tuple[bytes, ...] = (P1.public,),
) -> tuple[LocalChain, Clock]:
    """A settle_by_both chain with the exchange, uplift, market and payments contracts, genesis `exchange_fee` = `fee`,
    `uplift_fund_cap` = `cap` and (with a fee) `fee_coordinators` = `coordinators` (the DSO, which opens
    `open_session`'s sessions, is sanctioned anyway); every member's max_quantity rule 1,000,000 Wh (so its
    gain is bounded)."""
    rules = {**market.NO_RULES, "max_quantity": 1_000_000}
    balances = balance if isinstance(balance, dict) else dict.fromkeys(KEYS, balance)
    accounts = (
        Account(Keys.dso.public, ("dso",), "dso"),
        *(
            Account(k.public, ("anonym",), f"p{i}", balance=balances.get(k.public, 0), rules=rules)
            for i, k in enumerate(MEMBERS, 1)
        ),
        Account(Keys.stranger.public, ("anonym",), "stranger", balance=BALANCE),
    )
    params = Params(
        credit_limit=credit,
        settle_by_both=1,
        settle_wait_ms=WAIT,
        settle_interval_ms=900_000,
        unpaid_as_debt=1,
        exchange_fee=fee,
        uplift_fund_cap=cap,
    )
    genesis = make_genesis(
        accounts=accounts,
        params=params,
        contracts=("market", "exchange", "uplift", "payments"),
        fee_coordinators=coordinators if fee else (),
    )
    chain = LocalChain(genesis, Keys.authority)
    return chain, Clock(chain)


def open_session(clock: Clock, name: str, first: int) -> None:
    """The DSO prices every member's cover (retail 300, feed-in 50) for the session's two intervals, opens it,
    the members post, the chain steps, the coordinator closes; every member accepts and the DSO clears."""
    for k in MEMBERS:
        cover = {"account": k.public, "first_interval": first, "retail": [300] * 2, "feed_in": [50] * 2}
        ok(clock.send(Keys.dso, cover, "market.tariff"))
    members = [k.public for k in MEMBERS]
    opening = {
        "session": name,
        "first_interval": first,
        "members": members,
        "prices": PRICES,
        "rho": 5_000_000,
    }
    ok(clock.send(Keys.dso, opening, "exchange.open"))
    for k, positions in POSITIONS.items():
        ok(clock.send(k, {"session": name, "iteration": 0, "positions": positions}, "exchange.position"))
    ok(clock.send(Keys.dso, {"session": name, "iteration": 0, "rho": 5_000_000}, "exchange.step"))
    ok(clock.send(Keys.dso, {"session": name, "iteration": 1}, "exchange.close"))
    for k, positions in POSITIONS.items():
        ok(clock.send(k, {"session": name, "positions": positions, "clean": False}, "exchange.accept"))
    ok(clock.send(Keys.dso, {"session": name}, "exchange.clear"))


def deliver(chain: LocalChain, clock: Clock, first: int, short: dict[bytes, int] | None = None) -> None:
    """Both parties state every trade of the session's two intervals: all delivered, but for the seller named
    in `short` (its Wh missing in each of its trades)."""
    for interval in (first, first + 1):
        for tid, tr in query.trades(chain.state, interval):
            missing = (short or {}).get(tr["seller"], 0)
            delivered = tr["quantity"] - missing
            ok(clock.send(KEYS[tr["seller"]], {"trade": tid, "delivered": delivered, "short": missing}))
            ok(clock.send(KEYS[tr["buyer"]], {"trade": tid, "delivered": delivered}))


def ready_session(
    chain: LocalChain,
    clock: Clock,
    name: str,
    first: int,
    gains: dict[bytes, int] | None = None,
    short: dict[bytes, int] | None = None,
    surplus: int = 0,
) -> None:
    """A session up to its uplift's settle: opened and cleared (`open_session`), then `claim_and_deliver`."""
    open_session(clock, name, first)
    claim_and_deliver(chain, clock, name, first, gains, short, surplus)


def claim_and_deliver(
    chain: LocalChain,
    clock: Clock,
    name: str,
    first: int,
    gains: dict[bytes, int] | None = None,
    short: dict[bytes, int] | None = None,
    surplus: int = 0,
) -> None:
    """Every member of the cleared session claims (`gains`, 0 by default; each `surplus`), every trade is
    delivered (`short` as `deliver`)."""
    for k in MEMBERS:
        body = {"session": name, "gain": (gains or {}).get(k.public, 0), "surplus": surplus}
        ok(clock.send(k, body, "uplift.claim"))
    deliver(chain, clock, first, short)


def settle(chain: LocalChain, clock: Clock, name: str) -> tuple[Accepted, dict[bytes, int]]:
    """P1 settles the session's uplift: its result and what it moved in each member's balance."""
    before = balances(chain)
    result = ok(clock.send(P1, {"session": name}, "uplift.settle"))
    return result, {k: v - before[k] for k, v in balances(chain).items()}


def run_session(chain: LocalChain, clock: Clock, name: str, first: int, **claims: Any) -> Accepted:
    """`ready_session` (with `claims`: gains, short, surplus) and `settle`: the settle's result."""
    ready_session(chain, clock, name, first, **claims)
    return settle(chain, clock, name)[0]


def fund(chain: LocalChain) -> int:
    return query.balance(chain.state, UPLIFT_FUND)


def balances(chain: LocalChain) -> dict[bytes, int]:
    return {k: query.balance(chain.state, k) for k in KEYS}


def send(clock: Clock, who: Keypair, kind: str, body: dict[str, Any]) -> Accepted | Rejected:
    return clock.send(who, body, kind)

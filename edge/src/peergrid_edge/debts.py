"""What the MGMC reads of its own debts before it buys (the ledger's rule: `contracts/funds.refuse_debtor`).

Promises: `barring_debt` is what this MG's trading account owes when that bars its purchases on the MGMC chain
(more than the genesis's `owed_limit`; 0 while it may buy), read from this MGMC's own replica: public state,
so a debtor posts no purchase the chain would refuse (a refused move would leave it out of the interval's
later phases after one phase timeout, costing every member that wait). `note` logs why a buyer posts no
purchase, once per interval. The day-ahead stage reads the same rule off its replica (`owed_on`): while it
bars, a member's answers keep no purchase (`sales_only_bounds`: its range's buying side closed, so its own
solve sells or stays out) and what it posts or accepts carries none (`sales_only`: each negative position
zero; a debt that landed after its answer was solved). Never submits anything; a debt is paid by the
debtor's sales (`funds.collect`), which stay open to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from peergrid_ledger.contracts import funds

log = logging.getLogger("peergrid.edge.trader")
ROLE = "mgmc"  # the chain whose funds and debts these read
Q = TypeVar("Q", int, float)


def barring_debt(state: Any, genesis: Any, key: bytes) -> int:
    """What `key` owes (micro-units) when it owes more than the chain lets a buyer owe; else 0: the contract's
    own rule (`funds.barring_debt`) at the genesis' `owed_limit`."""
    return funds.barring_debt(state, key, int(genesis.params.owed_limit))


def note(agent: Any, t: int, owed: int) -> None:
    """Log, once for interval t, that this MG buys nothing in it because it owes `owed`; kept on the agent
    (`debt_noted`) for the interval's record."""
    if agent.debt_noted is not None and agent.debt_noted[0] == t:
        agent.debt_noted = (t, max(owed, agent.debt_noted[1]))
        return
    agent.debt_noted = (t, owed)
    log.warning(
        "interval %d: this MG owes %d micro-units on the MGMC chain and may not buy while it does: it posts "
        "no purchase (empty bid); the DSO covers its deficit, and its sales pay the debt first",
        t,
        owed,
    )


def owed_on(ledger: Any, key: bytes) -> int:
    """`barring_debt` of `key` on this MGMC's replica of the MGMC chain, at that chain's own genesis (read only
    when `key` has a debt on it: a replica owing nothing is asked one lookup)."""
    state = ledger.state(ROLE)
    if state.get(funds.debts_key(key)) is None:
        return 0
    return barring_debt(state, ledger.replicas[ROLE].app.genesis, key)


def sales_only(positions: Sequence[Q]) -> tuple[Q, ...]:
    """`positions` (+ a sale, - a purchase; either book of a clean session) with every purchase zero: what a
    debtor may post or accept (a negative one in either book is what the chain refuses)."""
    return tuple(q if q > 0 else type(q)(0) for q in positions)


def sales_only_bounds(bounds: tuple[list[float], list[float]]) -> tuple[list[float], list[float]]:
    """An MG's (lo, hi) range (kW of net export per interval, lo <= 0 <= hi) with its buying side closed."""
    lo, hi = bounds
    return [max(v, 0.0) for v in lo], hi

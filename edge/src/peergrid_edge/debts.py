"""What the MGMC reads of its own debts before it buys (the ledger's rule: `contracts/funds.refuse_debtor`).

Promises: `barring_debt` is what this MG's trading account owes when that bars its purchases on the MGMC chain
(more than the genesis's `owed_limit`; 0 while it may buy), read from this MGMC's own replica: public state,
so a debtor posts no purchase the chain would refuse (a refused move would leave it out of the interval's
later phases after one phase timeout, costing every member that wait). `note` logs why a buyer posts no
purchase, once per interval. Never submits anything; a debt is paid by the debtor's sales (`funds.collect`),
which stay open to it.
"""

from __future__ import annotations

import logging
from typing import Any

from peergrid_ledger.contracts import funds

log = logging.getLogger("peergrid.edge.trader")


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

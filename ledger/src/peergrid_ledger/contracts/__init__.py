"""Smart contracts: deterministic modules shipped with the ledger and enabled by name in genesis.

A contract module offers `KINDS` (transaction kind -> `KindSpec`), `END_BLOCK` (a hook run after a block's
transactions, or None) and `genesis_writes(genesis)`. Contracts hold preset rules and run automatically when
their conditions hold; the chain, not the participants' goodwill, enforces them. Code is never loaded from
the network: only the names below can be enabled.
"""

from __future__ import annotations

from types import ModuleType

from . import auction, exchange, market, payments, uplift

CONTRACTS: dict[str, ModuleType] = {
    "auction": auction,
    "exchange": exchange,
    "market": market,
    "payments": payments,
    "uplift": uplift,
}

"""One rule for every transaction this MGMC signs with a key it may be signing with elsewhere at the same time: its
anonym signs the interval's moves, a make-whole claim retried in the idle, the day-ahead session's moves and,
beside them all, the background settle of an earlier day's uplift (`day_stages.retry_in_background`).

Promises: `submit_own` signs with the sender's next nonce and waits for a final block (`Replicas.submit`), but
never on a nonce this replica's pool already holds a transaction of the sender at (`own_pending`: one of this
MGMC's own, not final yet): it first waits, at most `wait_s`, for that one to land or be evicted (`nonce_free`),
and a transaction lost all the same to another of the sender's (NONCE_TAKEN: it never lands; the pool refused it
as "pending" and the other one took the nonce) is signed again once with the next nonce (review19 F5).
`next_nonce` counts final transactions only, so two of them read the same nonce while one is pending: before,
whichever came second was lost - an interval's first move (K6, 051a0eb, which gave the moves this rule), or the
background uplift settle, tried again only at the next start, a day later. Used by the trading agent's moves
(`MarketAgent._submit_outcome`) and the exchange stages' `exchange_io.submit_final` (session, forward trades,
claims, settles) alike. No clocks of its own; it waits on the replica's final blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from peergrid_edge.replicas import NONCE_TAKEN, Submission
from peergrid_ledger import keys

log = logging.getLogger("peergrid.edge.nonce")


def own_pending(ledger: Any, role: str, sender: bytes) -> int | None:
    """The sender's next nonce where this replica's pool holds a transaction of it there (sent by this MGMC and
    neither final nor evicted yet: a make-whole claim not final in time, or cut; a move still on its way); None
    where it holds none, or the ledger has no pool (a stand-in)."""
    replicas = getattr(ledger, "replicas", None)
    replica = replicas.get(role) if isinstance(replicas, Mapping) else None
    pool = getattr(getattr(replica, "app", None), "mempool", None)
    if not pool:
        return None
    nonce = ledger.next_nonce(role, sender)
    return int(nonce) if pool.holds(sender, nonce) else None


async def nonce_free(ledger: Any, role: str, key: keys.Keypair, timeout_s: float) -> bool:
    """Wait, at most `timeout_s`, until this replica's pool holds no transaction of `key` at its next nonce
    (`own_pending`: it landed, or the pool evicted it); True: none, so a transaction signed now with the next
    nonce is not refused as "pending" and then lost to it (NONCE_TAKEN, review19 F5). Wakes on final blocks."""
    if own_pending(ledger, role, key.public) is None:
        return True
    if timeout_s <= 0:
        return False
    free = await ledger.wait_for(
        role, lambda _state: own_pending(ledger, role, key.public) is None, timeout_s
    )
    return bool(free)


async def submit_own(
    ledger: Any,
    role: str,
    key: keys.Keypair,
    kind: str,
    body: dict[str, Any],
    timeout_s: float,
    wait_s: float,
    before_submit: Callable[[], None],
) -> Submission:
    """Sign `body` as `kind` with `key`'s next nonce and wait `timeout_s` for a final block: landed, or the chain's
    reason why not (the module's rule: a pending transaction of `key` waited for up to `wait_s` first, and one
    lost to NONCE_TAKEN signed again once). `before_submit` runs before each signing (the agent's stop check)."""

    async def sign_and_submit() -> Submission:
        before_submit()
        if not await nonce_free(ledger, role, key, wait_s):
            log.warning("a %s waited %.1f s for this MGMC's transaction pending on its nonce: sent anyway", kind,
                        wait_s)  # fmt: skip
        before_submit()
        raw = ledger.sign(role, key, kind, body, ledger.next_nonce(role, key.public))
        return await ledger.submit(role, raw, timeout_s)  # type: ignore[no-any-return]

    outcome = await sign_and_submit()
    if not outcome.landed and outcome.reason.startswith(NONCE_TAKEN):
        outcome = await sign_and_submit()
    return outcome

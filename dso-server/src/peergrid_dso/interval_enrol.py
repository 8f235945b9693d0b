"""The MGs of the DSO's closed loop as members of the DSO chain (split out of `interval_node`, D3): enrolling each
configured MG's anonym at start, and which of them the loop still waits for.

Promises: `enrol` enrols each configured MG's anonym on the DSO chain, once (a restart finds it enrolled), all
MGs at once: the adapter pipelines them on consecutive nonces into a block or two (one after the other took a
block each). A submit that did not land is tried again only after the next final block (nothing here spins);
one the chain refuses for good (a revoked anonym, an anonym equal to its MGMC's key) is logged and that MG left
out (the adapter fills its nonce): the DSO serves the others. An MG whose MGMC is revoked is not asked for. A
first try not final is told at INFO (the chain makes no block before the MGMCs run), a later one at WARNING
(through `said`, once per few seconds). `active(mgs, state)`: the MGs the loop waits for, those of its config
whose MGMC is not revoked on the DSO chain (pure: it reads the state it is given). Logs as the interval node
(`peergrid_dso.interval_node`), as before the split.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from peergrid_dso.node_chains import ChainAdapter, Changed, Throttled
from peergrid_ledger import keys, query

log = logging.getLogger("peergrid_dso.interval_node")
ENROL_RETRY_S = 1.0  # a failed enrolment is tried again at the next final block, or after this at the latest


async def enrol(
    mgs: Mapping[str, Any],
    adapter: ChainAdapter,
    dso_key: keys.Keypair,
    state: Callable[[], Any],
    changed: Changed,
    said: Throttled,
) -> None:
    """Enrol every MG of `mgs` (the loop's `mgs` entries: `node`, `anonym`) on the DSO chain whose replica's
    state `state()` reads (module)."""
    from peergrid_ledger.core import is_revoked

    async def enrol_one(mg: str, entry: Any) -> None:
        anonym = bytes.fromhex(entry.anonym)
        if is_revoked(state(), bytes.fromhex(entry.node)):
            return  # revoked for good: it enrols again only with new keys
        tries = 0
        while query.account(state(), anonym) is None:
            result = await adapter.submit(
                dso_key, "enrol", {"mgmc": bytes.fromhex(entry.node), "anonym": anonym, "label": mg}
            )
            if result.ok:
                continue
            if result.reason == "refused":  # (unless an earlier one, pending meanwhile, enrolled it)
                if query.account(state(), anonym) is None:
                    log.error("the DSO chain refuses to enrol %s: %s; not enrolled", mg, result.detail)
                return
            tries += 1
            if tries == 1:  # the DSO chain makes no block until its co-validators, the MGMCs, run: they start
                # after the DSO, so the first try times out as a matter of course (six WARNINGs at a lab's start)
                log.info("enrolment of %s not final yet: %s; sent again", mg, result.detail)
            else:
                said.warning("enrolment of %s not final yet: %s", mg, result.detail)
            await changed.wait(ENROL_RETRY_S)

    async with asyncio.TaskGroup() as group:  # in the MGs' order: their nonces too
        for mg, entry in sorted(mgs.items()):
            group.create_task(enrol_one(mg, entry))


def active(mgs: Mapping[str, Any], state: Any) -> set[str]:
    """The MGs of `mgs` the DSO waits for: less those whose MGMC is revoked on the DSO chain (their injections
    are refused from the next height; they count as zero, like a missing MG, without the wait)."""
    from peergrid_ledger.core import is_revoked

    return {mg for mg, entry in mgs.items() if not is_revoked(state, bytes.fromhex(entry.node))}

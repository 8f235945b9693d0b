"""Reopening a trading interval on the MGMC chain for the DSO's re-bargaining (split out of `interval_node`, D5).

Promises: `reopen` sends `market.reopen` under the DSO key for one security iteration (only the DSO may), after
waiting (at most `wait_s`, the loop's `rebargain_wait_s`) for a closing the MGMCs may still be finishing; the
transaction's deadline (`REOPEN_WAIT_S`) is when the DSO stops waiting for it, so it never lands after the DSO
moved on. It sends nothing for an interval a day-ahead clear closed (`forward_traded`), nor what the contract
refuses now (checked on the replica first). It returns a `Reopening`: the iteration on that chain, or None and
why not; the MGMCs then re-plan with their trades kept. Never raises for a refusal or a timeout.
`nothing_offered(state, t, joined, configured)` says why an interval has nothing to reopen and never will (nobody
offered, every MG that must have joined did, as a buyer), or None: the DSO then sends nothing and waits for nothing
(pure: it reads the MGMC chain's state it is given). `answer(reopening)` is how the MGMCs answered one
iteration's contracts, in the words of the DSO's record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from peergrid_dso.node_chains import ChainAdapter
from peergrid_ledger import keys

log = logging.getLogger("peergrid_dso.interval_node")
REOPEN_WAIT_S = 6.0  # a reopening not final by then never lands (its deadline): the MGMCs keep their trades


class Reopening(NamedTuple):
    """What `DsoLoop.reopen` did: the reopening's iteration on the MGMC chain, or None and why not."""

    iteration: int | None
    why: str | None = None


def forward_traded(state: Any, t: int) -> str | None:
    """Whether interval t's closing on the MGMC chain is a day-ahead exchange session's clear (its market
    record names the session), said plainly, or None. The contract refuses to reopen such an interval (its
    forward trades have no positions to re-bargain): the MGMCs meet the DSO's limits by re-planning with the
    forward trades kept, so asking would only cost the reopening's wait."""
    from peergrid_ledger.contracts import market

    session = market.interval_record(state, t).get("session")
    return None if session is None else f"forward-traded by exchange session {session!r}"


def nothing_offered(state: Any, t: int, joined: Iterable[bytes], configured: Iterable[bytes]) -> str | None:
    """Why interval t has nothing to reopen and never will, or None: on the MGMC chain (`state`) it is not closed,
    nobody offered in it, and every MG of `joined` (the anonyms of those that sent an injection) and of
    `configured` (the loop config's, but one revoked on the MGMC chain) joined it as a buyer. Each MG sends its
    injection after its bargaining, and one without a seller is never closed (`chain_closing`: nothing to close);
    while the replica lacks an MG's join it may lack an offer too, so the bounded wait for a closing stands: that
    of an MG whose injection is late (missing from `joined`, counted as zero) as well, or a seller's offer still on
    its way to the replica reads as nobody offered (review41)."""
    from peergrid_ledger.contracts import market
    from peergrid_ledger.core import is_revoked

    wanted = set(joined) | {anonym for anonym in configured if not is_revoked(state, anonym)}
    if market.closed(state, t) or market.members(state, t, "sellers"):
        return None
    if not wanted <= set(market.members(state, t, "buyers")):
        return None
    return "no offer in it: nothing traded, nothing closed to reopen"


def answer(reopening: Reopening) -> str:
    """How the MGMCs answered one iteration's contracts, for the record and every line that shows it: they
    re-bargained a reopened interval, else re-planned within their limits, saying what they kept (U3: a
    forward-traded interval read 'rebargained x1' though the contract refuses to reopen it)."""
    why = reopening.why or ""
    if reopening.iteration is not None:
        return "re-bargained"
    if why.startswith("forward-traded"):
        return "re-planned, forward trades kept"
    if why.startswith("no offer"):
        return "re-planned, nothing traded"
    return "re-planned, trades kept"


async def reopen(
    mgmc: ChainAdapter | None, dso_key: keys.Keypair, t: int, ref: bytes, wait_s: float
) -> Reopening:
    """Reopen interval t on the MGMC chain for this iteration's re-bargaining (`market.reopen`, only the
    DSO may; ref = the iteration's first adjustment contract's txid). Waits (bounded) for a closing the
    MGMCs may still be finishing; the transaction's deadline is when the DSO stops waiting for it, so it
    never lands after the DSO moved on. Sends nothing for an interval a day-ahead clear closed
    (`forward_traded`), nor what the contract refuses now (checked on the replica first, its reason
    logged: no wait). Returns the reopening's iteration on that chain, or None with why not (no MGMC
    chain configured, nothing closed to reopen, forward-traded, refused, not final): the MGMCs then
    re-plan with their trades kept."""
    from peergrid_ledger.contracts import market

    if mgmc is None:
        return Reopening(None, "no MGMC chain")
    follower = mgmc.node.replicas[mgmc.chain]
    deadline = time.monotonic() + wait_s
    while not market.closed(follower.app.state, t) and time.monotonic() < deadline:
        await mgmc.changed.wait(0.5)
    if not market.closed(follower.app.state, t):
        log.warning("interval %d is not closed on the MGMC chain: nothing to reopen", t)
        return Reopening(None, "not closed")
    forward = forward_traded(follower.app.state, t)
    if forward is not None:
        log.info("interval %d: %s; not reopened, the MGMCs re-plan with them kept", t, forward)
        return Reopening(None, forward)
    last = market.reopening(follower.app.state, t)
    iteration = 1 if last is None else int(last["iteration"]) + 1
    until = mgmc.node.clock() + round(REOPEN_WAIT_S * 1000)
    body = {"interval": t, "iteration": iteration, "ref": ref, "until": until}
    result = await mgmc.submit(dso_key, "market.reopen", body, timeout=REOPEN_WAIT_S + 2.0, precheck=True)
    now = market.reopening(follower.app.state, t)
    if now is not None and int(now["iteration"]) == iteration:
        return Reopening(iteration)
    if result.reason == "refused":
        log.warning("interval %d: the MGMC chain refused reopening %d: %s", t, iteration, result.detail)
        return Reopening(None, f"refused: {result.detail}")
    log.warning("interval %d: reopening %d not final: %s %s", t, iteration, result.reason, result.detail)
    return Reopening(None, f"{result.reason}: {result.detail}")

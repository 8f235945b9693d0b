"""The security loop of one interval at the DSO node (design step 6): the re-bargaining iterations.

Promises: `security_loop(loop, t, ...)` seals each affected MG's adjustment contract on the DSO chain (with its
iteration), reopens the interval on the MGMC chain (`reopen`: only the DSO may; at once not where nobody
offered), publishes a non-final verdict, waits for the MGs' revised injections for that iteration, re-checks
(`planner.adjust` on the chosen topology, off the event loop) and repeats up to `max_iterations`, going on after
a restart from the iterations the DSO chain already holds; it returns what it did (`SecurityRounds`: each
iteration's record, every contract with its txid, the injections it ended with, the unmet constraint). It never
switches relays and never writes the interval's record: `interval_node.DsoLoop.interval` does both with what it
returns. `loop` is the node's `DsoLoop` (its settings, chains, recorder, planner, `gather`, `publish`,
`reopen`), whose methods of the same names delegate here. Split out of interval_node; it logs under its logger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peergrid_dso import interval_reopen
from peergrid_dso.interval_reopen import Reopening, answer
from peergrid_ledger import keyspace as ks
from peergrid_ledger.state import read_obj

if TYPE_CHECKING:
    from peergrid_dso.interval_node import DsoLoop

log = logging.getLogger("peergrid_dso.interval_node")  # its lines' name before the split (operators grep it)


@dataclass
class SecurityRounds:
    """What the security loop of one interval did: the injections it ended with, every contract it sealed
    (with its iteration), each iteration's revised injections and who was missing, the unmet constraint."""

    injections: dict[str, tuple[float, float]]
    unmet: str | None
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    iterations: int = 1  # AC analyses: the first, then one per re-bargaining


async def security_loop(
    loop: DsoLoop,
    t: int,
    mgs: set[str],
    injections: dict[str, tuple[float, float]],
    analysis: Any,
    already: int = 0,
) -> SecurityRounds:
    """Design step 6: seal each affected MG's adjustment contract, reopen the interval on the MGMC chain
    (`reopen`), let every MGMC of the interval re-bargain and submit its revised injection for this iteration,
    re-check by AC power flow on the chosen topology, repeat up to `max_iterations`. An MG that answers
    short of its limit (or not at all) has shown what it can reach: the next iteration asks the others.
    `mgs`: the MGs it waits for (those that sent an injection for this interval); the others keep theirs.
    `already`: the iterations the DSO chain holds of it from before a restart (`interval_resume.on_chain`):
    it goes on with the next, within the same `max_iterations`."""
    from peergrid_dso.services.security import learn_reach

    s = loop.settings
    out = SecurityRounds(injections=dict(injections), unmet=analysis.unmet)
    contracts = list(analysis.contracts)
    reach: dict[str, Any] = {}
    iteration = already
    while contracts and mgs and iteration < s.max_iterations:
        iteration += 1
        txids: list[bytes | None] = []  # each contract's on the DSO chain (final now), None if not there
        for contract in contracts:
            body = {**contract.body(), "iteration": iteration}
            node = bytes.fromhex(s.mgs[contract.mg].node)
            await asyncio.to_thread(loop.recorder.adjustment, node, t, body)
            index = read_obj(loop.replica.app.state, ks.adjustment_index(node, t)) or []
            txids.append(index[-1] if index else None)
            # the record names the contract's txid, so the console can point at it on the chain
            out.adjustments.append({**body, "txid": index[-1].hex() if index else None})
        nodes = [s.mgs[c.mg].node for c in contracts]
        first = txids[0]  # the reopening names the iteration's first contract
        reopening = (
            Reopening(None, "no contract on chain") if first is None else await loop.reopen(t, first, mgs)
        )
        reopened = reopening.iteration
        loop.publish({"interval": t, "iteration": iteration, "final": False, "adjust": nodes,
                      "rebargain": reopened is not None, "reopen": reopened})  # fmt: skip
        got = await loop.gather(t, iteration, mgs, s.wait_s, s.rebargain_wait_s)
        missing = sorted(mg for mg in mgs if mg not in got or got[mg][1] < iteration)
        if missing:
            log.warning("interval %d iteration %d: no revised injection from %s", t, iteration, missing)
        out.injections = {mg: (got[mg][0] / 1e6 if mg in got else p, q) for mg, (p, q) in injections.items()}
        loop.live.injections[t] = dict(out.injections)
        reach = learn_reach(reach, contracts, out.injections)
        contracts, _, out.unmet = await asyncio.to_thread(
            loop.planner.adjust, t, analysis.target_open, out.injections, reach
        )
        out.rounds.append(
            {
                "iteration": iteration, "reopened": reopened, "not_reopened": reopening.why,
                "answer": answer(reopening), "missing": missing,
                "injections_kw": {mg: p * 1000 for mg, (p, _) in out.injections.items()},
                "secure": not contracts and out.unmet is None, "unmet": out.unmet,
            }
        )  # fmt: skip
    out.iterations = iteration + 1
    return out


async def reopen(loop: DsoLoop, t: int, ref: bytes, mgs: Iterable[str] = ()) -> Reopening:
    """Reopen interval t on the MGMC chain for this iteration's re-bargaining (`interval_reopen.reopen`;
    ref = the iteration's first adjustment contract's txid): its iteration there, or None and why not. At
    once, without waiting for a closing, where nobody offered (`interval_reopen.nothing_offered`; `mgs`:
    those that sent an injection): U3's interval 75 overran by 12.7 s waiting for a closing that never
    comes."""
    idle = None
    if loop.mgmc is not None and mgs:
        anonyms = {mg: bytes.fromhex(entry.anonym) for mg, entry in loop.settings.mgs.items()}
        state = loop.mgmc.node.replicas[loop.mgmc.chain].app.state
        idle = interval_reopen.nothing_offered(state, t, {anonyms[mg] for mg in mgs}, anonyms.values())
    if idle is not None:
        log.info("interval %d: %s; not reopened, the MGMCs re-plan", t, idle)
        return Reopening(None, idle)
    return await interval_reopen.reopen(loop.mgmc, loop.dso_key, t, ref, loop.settings.rebargain_wait_s)

"""One MG's side of the DSO's security loop for one interval (design step 6), split from `chain_bargaining.py`.

Promises: `answer_iteration` is one MG's whole answer to one iteration of the DSO's loop: its adjustment
contract of that iteration opened (`sealed_contract`: the DSO's document sealed to this node on the DSO chain),
its curve held within the limit, `chain_bargaining.rebargain` played once the DSO reopened the interval on the
MGMC chain (only the DSO may reopen; an MGMC never does), the interval closed again, a re-plan within its limit
and the revised injection submitted as that iteration's revision. `Market` is what the MG bargains with in the
interval, `DsoAnswers` what it has answered so far. Reads only this node's own sealed contracts and public
positions; never reveals the curve. t is the chain's interval (its contracts, reopening, closing, injection);
the MG's tariff is read at t's profile index (`interval_plan.profile_index`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from peergrid_controller.adjustment import Adjustment
from peergrid_controller.moves import Participant
from peergrid_controller.rebargain import curve_within
from peergrid_edge.chain_bargaining import position, rebargain
from peergrid_edge.chain_closing import close_interval
from peergrid_edge.interval_plan import profile_index
from peergrid_ledger import keys, query
from peergrid_ledger import keyspace as ks
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.state import read_obj

if TYPE_CHECKING:
    from peergrid_edge.trader import MarketAgent


def sealed_contract(
    state: Any, node: keys.Keypair, t: int, iteration: int
) -> tuple[dict[str, Any], bytes] | None:
    """The DSO's adjustment contract for interval t sealed to `node`, of the DSO's `iteration` (inside the sealed
    document), with its txid on the DSO chain; None when this state holds none (one that does not open is skipped)."""
    contracts = query.adjustment_contracts(state, node.public, t)
    txids = read_obj(state, ks.adjustment_index(node.public, t)) or []
    for record, txid in reversed(list(zip(contracts, txids, strict=True))):
        try:
            doc: dict[str, Any] = json.loads(node.unseal(record["ciphertext"]))
        except ValueError:
            continue
        if doc.get("iteration") == iteration:
            return doc, txid
    return None


@dataclass(frozen=True)
class Market:
    """What this MG bargains with in one interval: its participant (curve, rules) and the price bounds."""

    me: Participant
    feed_in: float
    retail: float
    premium: float


@dataclass
class DsoAnswers:
    """This MG's side of the DSO's security loop for one interval: its plan and injection now, its P2P net
    export (kW, the latest closing's trades), the latest contract's limits and what each iteration did."""

    plan: Any
    injection_kw: float
    p2p_net_kw: float
    limit: dict[str, Any] | None = None  # the latest opened contract (W)
    limits: list[dict[str, Any]] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    rebargains: list[dict[str, Any]] = field(default_factory=list)

    def limit_kw(self) -> tuple[float | None, float | None]:
        if self.limit is None:
            return None, None
        lo, hi = self.limit.get("min_injection_w"), self.limit.get("max_injection_w")
        return (None if lo is None else lo / 1000), (None if hi is None else hi / 1000)


async def answer_iteration(
    agent: MarketAgent,
    t: int,
    iteration: int,
    addressed: bool,
    sched: Any,
    market: Market,
    answers: DsoAnswers,
    reopen: int | None = None,
) -> None:
    """This MG's answer to iteration `iteration` of the DSO's security loop (design step 6): an addressed MG
    opens its sealed contract of this iteration (waiting, bounded, for its DSO-chain replica to hold it) and
    holds its curve within the limit; when the DSO reopened the interval (`reopen`: the reopening's iteration
    on the MGMC chain, only the DSO may reopen) every MG that sees that reopening in a final block within 3
    phase timeouts plays `rebargain`, then makes sure the interval is closed again (`close_interval`, as a
    backup closer) and reads its latest closing's trades. Each then re-plans within its limit
    (`adjustment.meet`; short of it: says how close) and submits its injection as revision `iteration`. No
    reopening (in time): the same re-plan with the trades it holds — the DSO gets its answer."""
    opened = await agent._open_contract(t, iteration) if addressed else None
    if opened is not None:
        answers.limits.append(opened[0])
        answers.limit = opened[0]
    lo, hi = answers.limit_kw()
    entry: dict[str, Any] = {"iteration": iteration, "addressed": addressed, "reopened": False}
    me = market.me
    if answers.limit is not None:
        tariff, i = agent.mg.tariff, profile_index(t, agent.mg.intervals)  # the model's day: t's profile
        limited = curve_within(sched, lo, hi, tariff.feed_in[i], tariff.retail[i] + market.premium,
                               answers.injection_kw, limit_kw=me.rules.max_quantity_kwh / agent.dt)  # fmt: skip
        me = replace(market.me, curve=limited.curve)
        entry["curve_met"], entry["curve_reason"] = limited.met, limited.reason

    def reopened(state: Any) -> bool:
        last = contract.reopening(state, t)
        return reopen is not None and last is not None and last["iteration"] >= reopen

    if reopen is not None and await agent.ledger.wait_for("mgmc", reopened, 3 * agent.s.phase_timeout_s):
        entry["reopened"] = True
        if not contract.closed(agent.ledger.state("mgmc"), t):
            history = await rebargain(agent, t, me, market.feed_in, market.retail)
            entry["rounds"] = history
        entry["closed"] = await close_interval(agent, t, None)
        if entry["closed"]:
            mine, net_kwh, _ = position(agent.ledger.state("mgmc"), t, agent.anonym.public)
            answers.p2p_net_kw = net_kwh / agent.dt
            entry["trades"] = [{"id": tid.hex(), "seller": tr["seller"].hex(), "buyer": tr["buyer"].hex(),
                                "price": tr["price"] / 1000, "quantity_kwh": tr["quantity"] / 1000}
                               for tid, tr in mine]  # fmt: skip
            entry["net_p2p_kwh"] = net_kwh
    agent.phase = "dso"
    adjustment = agent.meet_limit(t, sched, answers.p2p_net_kw, answers.limit)
    answers.plan, answers.injection_kw = adjustment.plan, adjustment.injection_kw
    if answers.limit is not None:
        answers.adjustments.append(adjustment)
    entry.update(injection_kw=adjustment.injection_kw, met=adjustment.met, reason=adjustment.reason)
    answers.rebargains.append(entry)
    await agent._submit(
        "dso", agent.d.keypair, "equivalent_injection",
        {"interval": t, "injection": round(adjustment.injection_kw * 1000), "revision": iteration},
    )  # fmt: skip

"""`peergrid-market simulate`'s output: the day's JSON (or its summary) on stdout, its diagnostics on stderr.

Promises: `result_json(result, chain)` is the JSON document, built from the result records (simrecords.py) by
field name with floats rounded to 6 places (non-finite: null), keys in a fixed order, so the same result gives
the same bytes (a day run with a risk allowance adds `total.risk_allowance`, each MG's; without one the
document is as before it existed; so does an intraday day where an owner paid a clean premium,
`total.clean_premium_paid`, each such MG's, and a day-ahead day with an exchange fee, `total.fee`: its fund,
and its reserve where there is one);
`report(...)` prints it (or a short summary) and then one stderr line each on
stability, the chain's settlements, the lossy transport, the risk allowance (or, strict without one, any MG
whose day ended above its conventional day plus its owner's clean premiums) and the day-ahead stage. Reads no
clocks and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.market import Trade
from peergrid_controller.model import Scenario
from peergrid_controller.netsim import LossyVenue
from peergrid_controller.simrecords import SimulationResult


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _trade_json(agreed: Trade, delivered: Trade | None) -> dict[str, Any]:
    """A trade as agreed (`quantity_kwh`); day-ahead also `delivered_kwh`, the quantity settled."""
    doc: dict[str, Any] = {
        "seller": agreed.seller,
        "buyer": agreed.buyer,
        "quantity_kwh": _num(agreed.quantity_kwh),
        "price": _num(agreed.price),
    }
    if delivered is not None:
        doc["delivered_kwh"] = _num(delivered.quantity_kwh)
    return doc


def chain_of(venue: object) -> ChainVenue | None:
    """The chain venue, behind the lossy transport where there is one (None: no chain)."""
    inner = venue.inner if isinstance(venue, LossyVenue) else venue
    return inner if isinstance(inner, ChainVenue) else None


def chain_counts(venue: object) -> dict[str, int] | None:
    """The chain venue's transactions and the forward trades its exchange contract cleared (None elsewhere)."""
    chain = chain_of(venue)
    if chain is None:
        return None
    return {"transactions": chain.transactions, "forward_trades_cleared": chain.exchange.cleared}


def result_json(result: SimulationResult, chain: dict[str, int] | None = None) -> dict[str, Any]:
    intervals = []
    for r in result.intervals:
        intervals.append(
            {
                "interval": r.interval,
                "p2p_welfare": _num(r.p2p_welfare),
                "central_welfare": _num(r.central_welfare),
                "conventional_welfare": _num(r.conventional_welfare),
                "rounds_max": r.rounds,
                "converged": r.converged,
                "mg_cost_p2p": {k: _num(v) for k, v in sorted(r.mg_cost_p2p.items())},
                "mg_cost_conventional": {k: _num(v) for k, v in sorted(r.mg_cost_conventional.items())},
                "trades": [
                    _trade_json(t, d)
                    for t, d in zip(r.trades, r.delivered or (None,) * len(r.trades), strict=True)
                ],
            }
        )
    totals = result.totals()
    total: dict[str, Any] = {
        "p2p_welfare": _num(float(totals["p2p_welfare"])),  # type: ignore[arg-type]
        "central_welfare": _num(float(totals["central_welfare"])),  # type: ignore[arg-type]
        "conventional_welfare": _num(float(totals["conventional_welfare"])),  # type: ignore[arg-type]
        "rounds_max": totals["rounds_max"],
        "converged": totals["converged"],
        "mg_cost_p2p": {k: _num(v) for k, v in sorted(totals["mg_cost_p2p"].items())},  # type: ignore[attr-defined]
        "mg_cost_conventional": {k: _num(v) for k, v in sorted(totals["mg_cost_conventional"].items())},  # type: ignore[attr-defined]
    }
    if result.risk_allowance:  # the allowance each MG ran with (intraday strict; none: the key is absent)
        total["risk_allowance"] = {k: _num(v) for k, v in sorted(result.risk_allowance.items())}
    if result.premium_paid:  # what each owner chose to pay for clean energy (none: the key is absent)
        total["clean_premium_paid"] = {k: _num(v) for k, v in sorted(result.premium_paid.items())}
    d = result.dayahead
    if d is not None:  # the day-ahead stage's stability check and its make-whole payments
        total["dayahead"] = {
            "iterations": d.iterations,
            "stop": d.stop,  # kwh (both residuals within tolerance), value (at_stake), cap (max_iterations)
            "moves_on_chain": d.moves_on_chain,
            "primal_residual_kwh": _num(d.primal_residual),
            "dual_residual_kwh": _num(d.dual_residual),
            "stable": d.stable,
            "max_deviation_gain": _num(d.max_deviation_gain),
            "max_deviation_gain_with_uplift": _num(d.max_deviation_gain_with_uplift),
            "rationed_at_own_rule": {k: _num(v) for k, v in sorted(d.rationed_at_own_rule.items())},
            "uplift_funded": d.uplift_funded,
            "uplift_total": _num(d.uplift_total),
            "uplift_shortfall": _num(d.uplift_shortfall),
            "uplift_credit": {k: _num(v) for k, v in sorted(d.uplift_credit.items())},
            "uplift_charge": {k: _num(v) for k, v in sorted(d.uplift_charge.items())},
            "delivery": {
                "faults": [str(f) for f in d.faults],
                "shortfall_kwh": {k: _num(v) for k, v in sorted(d.shortfall_kwh.items())},
                "covered_kwh": {k: _num(v) for k, v in sorted(d.covered_kwh.items())},
                "uplift_withheld": {k: _num(v) for k, v in sorted(d.uplift_withheld.items())},
                "uplift_refund": {k: _num(v) for k, v in sorted(d.uplift_refund.items())},
                "worse_than_conventional": {k: _num(v) for k, v in sorted(d.worse_than_conventional.items())},
                "compensation": {k: _num(v) for k, v in sorted(d.compensation.items())},
            },
        }
        if d.exchange_fee:  # beside `dayahead`, whose keys are fixed; absent without a fee
            total["fee"] = {
                "exchange_fee_nano_per_kwh": d.exchange_fee,
                "collected": _num(d.fee_collected),
                "fund_before": _num(d.fund_before),
                "fund_after": _num(d.fund_after),
                "funded": d.uplift_funded,
                "fee_paid": {k: _num(v) for k, v in sorted(d.fee_paid.items())},
                "refund": {k: _num(v) for k, v in sorted(d.fund_refund.items())},
            }
            if d.fund_reserve_before or d.fund_reserve_after:  # absent: none (the bytes as before it)
                total["fee"]["reserve_before"] = _num(d.fund_reserve_before)
                total["fee"]["reserve_after"] = _num(d.fund_reserve_after)
        if chain is not None:  # beside `dayahead`, whose keys are fixed
            total["chain"] = chain
    return {"intervals": intervals, "total": total}


def _above_conventional(result: SimulationResult) -> dict[str, float]:
    """Each MG's day cost less its conventional day's (by name; negative: it gained)."""
    totals = result.totals()
    p2p, conventional = totals["mg_cost_p2p"], totals["mg_cost_conventional"]
    assert isinstance(p2p, dict) and isinstance(conventional, dict)
    return {k: p2p[k] - conventional[k] for k in sorted(p2p)}


def allowance_line(result: SimulationResult) -> str:
    """Each MG's risk allowance and whose day ended above its conventional one (by how much, and whether
    within the allowance plus its owner's clean premiums: the bound rationality.py proves without a genset and
    checks with one)."""
    above = {k: x for k, x in _above_conventional(result).items() if x > 1e-6}
    beyond = [
        k
        for k, x in above.items()
        if x > result.risk_allowance.get(k, 0.0) + result.premium_paid.get(k, 0.0) + 1e-6
    ]
    return (
        "risk allowance per MG per day "
        + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.risk_allowance.items()))
        + "; day above its conventional one: "
        + (", ".join(f"{k} {x:.4f}" for k, x in above.items()) or "none")
        + (f" — BEYOND the allowance: {', '.join(beyond)}" if beyond else "")
    )


def strict_above_line(result: SimulationResult) -> str | None:
    """The MGs whose day ended above their conventional day plus the clean premiums their owners paid, under
    the strict guard without an allowance (None: none did). The guard keeps every MG within that bound
    (rationality.py: a clean purchase is charged at its price less the owner's premium), so a line here is
    a fault; without it the JSON alone could contradict `--rationality strict`'s promise (U5)."""
    beyond_premiums = {k: x - result.premium_paid.get(k, 0.0) for k, x in _above_conventional(result).items()}
    above = {k: x for k, x in beyond_premiums.items() if x > 1e-6}
    if not above:
        return None
    return (
        "day above its conventional one plus its owner's clean premiums under the strict guard: "
        + ", ".join(f"{k} {x:.4f}" for k, x in above.items())
        + " (the guard promises none is: a fault)"
    )


def report(
    result: SimulationResult, scenario: Scenario, args: argparse.Namespace, venues: Sequence[Venue]
) -> None:
    """The result on stdout (JSON with `--json`, else a summary), then the day's diagnostics on stderr."""
    if args.json:
        try:
            doc = result_json(result, chain_counts(venues[0]) if venues else None)
            print(json.dumps(doc, sort_keys=False, separators=(",", ":")))
        except BrokenPipeError:  # `| head` closed the pipe: not an error of ours
            sys.stderr.close()
            return
    else:
        doc = result_json(result)["total"]
        print(
            f"scenario {scenario.name}: {len(result.intervals)} intervals, {len(scenario.microgrids)} microgrids"
        )
        for key in ("p2p_welfare", "central_welfare", "conventional_welfare", "rounds_max", "converged"):
            print(f"  {key:22s} {doc[key]}")
    stable = all(r.stable for r in result.intervals)
    worst = max((r.max_taker_gain for r in result.intervals), default=0.0)
    print(
        f"peergrid-market: outcome stable in {sum(r.stable for r in result.intervals)}/{len(result.intervals)} "
        f"intervals (largest gain from deviating alone at the posted prices: {worst:.4f})"
        + ("" if stable else " — NOT stable everywhere"),
        file=sys.stderr,
    )
    chain = chain_of(venues[0]) if venues else None
    if chain is not None:
        counts = ", ".join(f"{basis} {n}" for basis, n in sorted(chain.settled.items())) or "none"
        print(f"peergrid-market: chain settlements by basis: {counts}", file=sys.stderr)
    if venues and isinstance(venues[0], LossyVenue):
        stats = venues[0].stats
        print(
            f"peergrid-market: transport (loss {args.loss}, seed {args.seed}): {stats.sent} messages sent, "
            f"{stats.lost} lost, {stats.late} late, {stats.undelivered_moves} moves left out of their round",
            file=sys.stderr,
        )
    if result.risk_allowance:
        print(f"peergrid-market: {allowance_line(result)}", file=sys.stderr)
    elif (args.market, args.rationality) == ("intraday", "strict") and (line := strict_above_line(result)):
        print(f"peergrid-market: {line}", file=sys.stderr)
    d = result.dayahead
    if d is not None:
        paid = (
            f"make-whole uplift {d.uplift_total:.4f} paid"
            if d.uplift_funded
            else f"make-whole uplift NOT funded (short {d.uplift_shortfall:.4f}), nothing paid"
        )
        if d.exchange_fee:
            paid += (
                f" from the fee's fund (fee {d.exchange_fee} nano/kWh/side: collected {d.fee_collected:.4f}, "
                f"fund {d.fund_before:.4f} -> {d.fund_after:.4f}, refunded {sum(d.fund_refund.values()):.4f}"
                + (
                    f", reserved {d.fund_reserve_after:.4f}"
                    if d.fund_reserve_before or d.fund_reserve_after
                    else ""
                )
                + ")"
            )
        rationed = (
            "; rationed at their own rule, not paid: "
            + ", ".join(f"{k} {v:.4f}" for k, v in d.rationed_at_own_rule.items())
            if d.rationed_at_own_rule
            else ""
        )
        print(
            f"peergrid-market: day-ahead: largest day gain from deviating alone {d.max_deviation_gain:.4f}; "
            f"{paid}; with it {d.max_deviation_gain_with_uplift:.4f} (within tolerance by construction when funded)"
            f"{rationed}",
            file=sys.stderr,
        )
        if d.faults:
            worse = ", ".join(f"{k} {v:.4f}" for k, v in d.worse_than_conventional.items()) or "none"
            print(
                f"peergrid-market: delivery faults {' '.join(str(f) for f in d.faults)}: "
                f"{sum(d.shortfall_kwh.values()):.3f} kWh not delivered; uplift withheld "
                f"{sum(d.uplift_withheld.values()):.4f}; imbalance compensation paid "
                f"{sum(v for v in d.compensation.values() if v > 0):.4f}"
                f"{' (moved by the chain in the settlements)' if chain is not None and chain.compensate else ''}"
                f"; worse off than conventional: {worse}",
                file=sys.stderr,
            )

"""P2P market benchmark: welfare against the central optimum, MG costs against the conventional market,
rounds to converge, wall time per interval, and the MGMC's 96-interval schedule solve time.

Every figure is a ratio to a baseline solved in the same run (the central MILP, the conventional DSO-only
schedules, the Pyomo formulation of the same MILP). Seeded synthetic feeders (controller/synth.py) with four
mixes: PV-heavy, storage, genset, load-heavy. The market runs over the in-memory MGMC chain (every move a
signed transaction judged by the ledger's market contract).
"""

from __future__ import annotations

import statistics
import time

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue
from peergrid_controller.model import Scenario
from peergrid_controller.pyomo_model import solve_pyomo
from peergrid_controller.schedule import MgSchedule
from peergrid_controller.simulate import SimulationConfig, simulate
from peergrid_controller.synth import synthetic_scenario

SEED = 1


def _market(n: int, intervals: int, rules: bool, rationality: str = "strict") -> dict[str, float]:
    """A whole day in `intervals` steps (96: 15 min; 24: hourly, for --quick)."""
    scenario = synthetic_scenario(n, intervals, seed=SEED, interval_hours=24 / intervals, rules=rules)
    venues: list[ChainVenue] = []

    def factory(s: Scenario) -> Venue:
        venues.append(ChainVenue(s))
        return venues[-1]

    marks: list[float] = []
    cpu_marks: list[float] = []

    def mark(_: int) -> None:
        marks.append(time.perf_counter())
        cpu_marks.append(time.process_time())

    started = time.perf_counter()
    config = SimulationConfig(rationality=rationality)  # type: ignore[arg-type]
    result = simulate(scenario, config, venue_factory=factory, on_interval=mark)
    ended, cpu_ended = time.perf_counter(), time.process_time()
    totals = result.totals()
    w_p2p, w_c, w_conv = (
        float(totals[k]) for k in ("p2p_welfare", "central_welfare", "conventional_welfare")
    )  # type: ignore[arg-type]
    cost_p2p: dict[str, float] = totals["mg_cost_p2p"]  # type: ignore[assignment]
    cost_conv: dict[str, float] = totals["mg_cost_conventional"]  # type: ignore[assignment]
    savings = [cost_conv[m] - cost_p2p[m] for m in cost_p2p]
    rounds = [r.rounds for r in result.intervals]
    return {
        "n": n,
        "mgs": n,
        "intervals": intervals,
        "gain_efficiency": (w_p2p - w_conv) / (w_c - w_conv) if w_c - w_conv > 1e-6 else float("nan"),
        "cost_ratio": w_c / w_p2p,  # both negative: central cost / P2P cost
        "saving_pct": 100 * sum(savings) / sum(cost_conv.values()),
        "better_off": sum(s > -1e-6 for s in savings),
        "worst_saving": min(savings),
        "rounds_max": max(rounds),
        "rounds_mean": statistics.mean(rounds),
        "converged": all(r.converged for r in result.intervals),
        "stable": all(r.stable for r in result.intervals),
        "taker_gain": max(r.max_taker_gain for r in result.intervals),
        "pricing_gain": max(r.max_pricing_gain for r in result.intervals),
        "wall_per_interval": (ended - marks[0]) / intervals,
        "cpu_per_interval": (cpu_ended - cpu_marks[0]) / intervals,
        "setup": marks[0] - started,
        "txs": venues[-1].transactions if venues else 0,
        "height": venues[-1].chain.height if venues else 0,
    }


def _solve_times(n: int, pyomo_sample: int) -> dict[str, float]:
    scenario = synthetic_scenario(n, 96, seed=SEED)
    times, walls, genset_times, pyomo_times, highs_sample = [], [], [], [], []
    for index, mg in enumerate(scenario.microgrids):
        t0 = time.process_time()  # CPU time: on a shared machine wall time mostly measures the neighbours
        w0 = time.perf_counter()
        MgSchedule(mg, scenario.interval_hours).solve()
        took = time.process_time() - t0
        walls.append(time.perf_counter() - w0)
        times.append(took)
        if mg.gensets:
            genset_times.append(took)
        if index < pyomo_sample:
            highs_sample.append(took)
            t0 = time.process_time()
            solve_pyomo(mg, scenario.interval_hours)
            pyomo_times.append(time.process_time() - t0)
    return {
        "median": statistics.median(times),
        "p95": sorted(times)[int(0.95 * (len(times) - 1))],
        "max": max(times),
        "wall_median": statistics.median(walls),
        "wall_p95": sorted(walls)[int(0.95 * (len(walls) - 1))],
        "wall_max": max(walls),
        "genset_median": statistics.median(genset_times),
        "pyomo_ratio": sum(pyomo_times) / sum(highs_sample),
        "count": len(times),
        "pyomo_count": len(pyomo_times),
    }


def run(quick: bool = False) -> str:
    steps = 24 if quick else 96
    rows = [_market(n, steps, rules=False) for n in (6, 20, 100)]
    trusting = [
        {**_market(n, steps, rules=False, rationality=mode), "n": f"{n}, {mode}"}
        for mode in ("off", "trades")
        for n in (6, 20)
    ]
    ruled = {**_market(20, steps, rules=True), "n": "20 + owner rules"}
    solve = _solve_times(100 if not quick else 20, pyomo_sample=8 if not quick else 4)
    out = ["## P2P market (controller)", ""]
    out.append(
        "Synthetic feeders (seed 1; PV-heavy, storage, genset and load-heavy MGs in turn), one day, "
        "ToU retail 0.14/0.22/0.30, feed-in 0.05. The market runs interval by interval over the in-memory MGMC chain "
        "(single sealing authority, every move a signed transaction): each MGMC re-plans the rest of the day (MILP, "
        "genset re-committed hourly), derives its price–quantity curve by HiGHS cost ranging (with a genset start "
        "or stop for the interval as a second option when its minimum up/down time is one interval), and "
        "bargains; a call on quantities alone finds the interval's indicative price, which decides who sells "
        "and who buys and where sellers start. Day-ahead indicative prices (24 tâtonnement rounds on "
        "quantities) let storage plans see peers' prices. Individual rationality, *strict* (the default, rows "
        "without a note): each MG trades only within what its conventional alternative (the rest of its day "
        "with the DSO only) would trade at that price, and follows its forecast-leaning plan only while the "
        "conventional value of where that leaves it fits its budget (conventional day cost minus what it has "
        "paid), so no MG can end worse off than with the DSO alone; *trades*: the trade bound only; *off*: "
        "each MG trusts the day-ahead forecast (more welfare, no guarantee). "
        "Baselines solved in the same run: conventional (each MG alone with the DSO) and the central optimum "
        "(one MILP over all MGs, owners' rules ignored)."
    )
    out.append("")
    out.append(
        "| MGs | intervals | P2P gain / central gain | central cost / P2P cost | MG cost saving vs conventional "
        "| MGs not worse off | rounds max (mean) | converged | stable | wall (CPU) per interval | chain txs |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in [*rows, *trusting, ruled]:
        out.append(
            f"| {r['n']} | {r['intervals']} | {r['gain_efficiency']:.3f} | {r['cost_ratio']:.4f} | "
            f"{r['saving_pct']:.1f} % | {r['better_off']}/{r['mgs']} | "
            f"{r['rounds_max']} ({r['rounds_mean']:.1f}) | {'yes' if r['converged'] else 'NO'} | "
            f"{'yes' if r['stable'] else 'NO'} | {r['wall_per_interval']:.2f} s ({r['cpu_per_interval']:.2f} s) | {r['txs']} |"
        )
    out.append("")
    out.append(
        f"MGMC schedule, 96 intervals, build + MILP solve with highspy, CPU time ({solve['count']} MGs): median "
        f"{1000 * solve['median']:.0f} ms, p95 {1000 * solve['p95']:.0f} ms, max {1000 * solve['max']:.0f} ms "
        f"(genset MGs median {1000 * solve['genset_median']:.0f} ms); wall time median "
        f"{1000 * solve['wall_median']:.0f} ms, p95 {1000 * solve['wall_p95']:.0f} ms, max "
        f"{1000 * solve['wall_max']:.0f} ms (the shared machine was loaded); target < 1 s. The same MILP built in Pyomo "
        f"and solved by appsi_highs took {solve['pyomo_ratio']:.1f}× as long ({solve['pyomo_count']} MGs, same run)."
    )
    out.append("")
    worst = max(r["taker_gain"] for r in [*rows, *trusting, ruled])
    power = max(r["pricing_gain"] for r in [*rows, *trusting, ruled])
    out.append(
        "How to read it: *P2P gain / central gain* = (W_p2p − W_conv) / (W_central − W_conv), the share of the "
        "achievable saving the market captures (stricter than the raw cost ratio beside it; target ≥ 0.99). "
        "Wall per interval is every MGMC's planning, curve, bargaining and chain work run one after another on "
        f"one core (on the Pis they run in parallel, so ÷ MGs per node). Stability: at the final prices no MG "
        f"could gain more than {worst:.4f} (money, one interval) by changing its own quantities; a seller re-pricing "
        f"alone against the buyers' responses could gain up to {power:.3f} (market power, reported, not removed)."
    )
    if quick:
        out.append("")
        out.append("_Quick run: the same day in 24 hourly intervals instead of 96 quarter-hours._")
    return "\n".join(out)

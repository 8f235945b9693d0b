"""`peergrid-market`: run a day of P2P bargaining among a scenario's MGMCs beside the two baselines.

`peergrid-market simulate --scenario FILE --intervals N --json` prints
`{"intervals": [...], "total": {...}}` (see `result_json`; with `--market dayahead` the total also carries
`dayahead`: the stability check and the make-whole uplift, and on the chain venue `chain`: its transactions
and how many forward trades the exchange contract cleared); without `--json`, a short summary. Exit status:
0 on success, 2 for a bad scenario or arguments (one the day-ahead stage refuses too, e.g. a single microgrid;
a bad `--fault`: unknown MG, fraction outside [0, 1], interval out of range),
3 when no schedule exists or the market contract refuses the day-ahead trades or a settlement; each error is
one line on stderr naming the cause.
The market runs over the in-memory MGMC chain when the ledger provides one (`--venue chain`, the default when
available) or over the market contract alone (`--venue memory`). On the chain a trade settles on both
parties' statements (`--settle both`, the default; `first`: the first settle sent, the buyer's, the rule
before), `--silent MG` keeps an MGMC from stating and `--meter-error MG:WH` skews its meter (chain_venue.py);
a line on stderr counts the trades settled per basis. Where both state, the chain also computes the day-ahead
market's imbalance compensation (chain_venue `compensate`: the DSO's tariffs, each side's own shortfall in
its statement) and the simulation's figure is checked against it, not posted; a chain that moved other
figures stops the day (exit 3, naming both). `--loss P` sends every MGMC's messages across a seeded lossy
transport (netsim.py, seeded with `--seed`): each dropped with probability P and resent; a line on stderr
counts them. Output is byte-identical for the same inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue, CompensationError, SealError
from peergrid_controller.dayexchange import DayAheadConfig, DayAheadError
from peergrid_controller.delivery import FaultError, parse_fault
from peergrid_controller.forward import ForwardError
from peergrid_controller.market import Trade
from peergrid_controller.model import ModelError, Scenario
from peergrid_controller.netsim import LossyVenue
from peergrid_controller.scenario import ScenarioError, load_scenario
from peergrid_controller.schedule import ScheduleError
from peergrid_controller.simulate import (
    SettlementError,
    SimulationConfig,
    SimulationResult,
    simulate,
    truncate,
)
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.venues import VENUES, default_venue


class OptionError(ValueError):
    """A command-line option the run cannot take (names the option and why)."""


def chain_options(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """ChainVenue's settlement options from `--settle`, `--sealed`, `--silent` and `--meter-error` ({} when none
    given)."""
    names = {mg.name for mg in scenario.microgrids}
    options: dict[str, Any] = {}
    if args.settle is not None:
        options["settle_by_both"] = args.settle == "both"
    if args.sealed:
        if args.settle == "first":
            raise OptionError("--sealed: the parties seal their statements only with --settle both")
        options["sealed_statements"] = True
    for name in args.silent:
        if name not in names:
            raise OptionError(f"--silent {name}: no microgrid named {name!r}")
    if args.silent:
        options["silent"] = tuple(args.silent)
    errors: dict[str, int] = {}
    for text in args.meter_error:
        name, _, value = text.partition(":")
        if name not in names:
            raise OptionError(f"--meter-error {text}: no microgrid named {name!r} (expected MG:WH)")
        if name in errors:
            raise OptionError(f"--meter-error {text}: {name}'s meter is given twice")
        try:
            errors[name] = int(value)
        except ValueError:
            raise OptionError(f"--meter-error {text}: {value!r} is not a whole number of Wh") from None
    if errors:
        options["meter_error_wh"] = errors
    return options


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
        if chain is not None:  # beside `dayahead`, whose keys are fixed
            total["chain"] = chain
    return {"intervals": intervals, "total": total}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peergrid-market", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate", help="bargain through a day (or its first N intervals) and compare baselines"
    )
    source = sim.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--scenario", help="testbed scenario YAML (firmware-sim's format, optional market: section)"
    )
    source.add_argument(
        "--synthetic", type=int, metavar="N", help="a seeded synthetic feeder of N microgrids"
    )
    sim.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic feeder (and of the transport)"
    )
    sim.add_argument("--intervals", type=int, default=None, help="simulate only the first N intervals")
    sim.add_argument("--json", action="store_true", help="print the result as JSON")
    sim.add_argument(
        "--venue", choices=sorted(VENUES), default=None, help="where moves go (default: the chain)"
    )
    sim.add_argument("--no-central", action="store_true", help="skip the centralised optimum (large feeders)")
    sim.add_argument(
        "--rationality",
        choices=("strict", "trades", "off"),
        default="strict",
        help="strict: no MG ends worse off than with the DSO alone (default); trades: each trade bounded by "
        "the MG's conventional alternative; off: MGs trust the day-ahead price forecast",
    )
    sim.add_argument(
        "--market",
        choices=("intraday", "dayahead"),
        default="intraday",
        help="intraday: bargain interval by interval (default); dayahead: forward trades for the whole day "
        "by exchange ADMM, each MG's exact check that it ends no worse off than conventional, then dispatch "
        "with the trades fixed (--rationality does not apply)",
    )
    sim.add_argument(
        "--clean-book",
        action="store_true",
        help="day-ahead: on a day with a clean-only MG, a second (clean) book per interval beside the general "
        "one, so clean-only buyers get a day-ahead position (off by default: about twice the rounds)",
    )
    sim.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MG:FRACTION[:INTERVALS]",
        help="day-ahead: MG fails to deliver FRACTION (0..1) of its forward trades in INTERVALS (e.g. 3,5-7; "
        "default every one); repeatable",
    )
    sim.add_argument(
        "--random-faults",
        type=int,
        default=0,
        metavar="K",
        help="day-ahead: K MGs with forward trades (not those given --fault), drawn with --fault-seed, "
        "fail part of them",
    )
    sim.add_argument("--fault-seed", type=int, default=0, help="seed of --random-faults")
    sim.add_argument(
        "--settle",
        choices=("both", "first"),
        default=None,
        help="chain venue: both (default): a trade settles on the buyer's and the seller's statements of what "
        "they metered (genesis settle_by_both; meters that disagree: the DSO's); first: on the first settle "
        "sent, the buyer's",
    )
    sim.add_argument(
        "--sealed",
        action="store_true",
        help="chain venue, --settle both: each party commits to its statement before either reveals it "
        "(genesis sealed_statements: neither can tailor its own to the other's; two more transactions a trade)",
    )
    sim.add_argument(
        "--silent",
        action="append",
        default=[],
        metavar="MG",
        help="chain venue: MG's MGMC never states what it delivered; its counterparty's statement settles each "
        "trade after the chain's settle wait; repeatable",
    )
    sim.add_argument(
        "--meter-error",
        action="append",
        default=[],
        metavar="MG:WH",
        help="chain venue: MG's meter reads WH more (or, negative, fewer) Wh than each of its trades delivered "
        "(within 0..agreed); repeatable",
    )
    sim.add_argument(
        "--loss",
        type=float,
        default=None,
        metavar="P",
        help="every MGMC's messages cross a seeded lossy transport (seed: --seed): each dropped with "
        "probability P in [0, 1) and resent, delayed up to 200 ms; a move not in its round in time is left out",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.intervals is not None and args.intervals <= 0:
        print("peergrid-market: --intervals must be positive", file=sys.stderr)
        return 2
    if args.loss is not None and not 0.0 <= args.loss < 1.0:  # also NaN
        print(f"peergrid-market: --loss {args.loss}: a probability in [0, 1) is needed", file=sys.stderr)
        return 2
    if args.clean_book and args.market != "dayahead":
        print("peergrid-market: --clean-book needs --market dayahead", file=sys.stderr)
        return 2
    try:
        if args.scenario:
            scenario = load_scenario(args.scenario)
        else:
            if args.synthetic <= 1:
                print("peergrid-market: --synthetic needs at least 2 microgrids", file=sys.stderr)
                return 2
            scenario = synthetic_scenario(args.synthetic, 96, seed=args.seed)
    except (ScenarioError, ModelError) as exc:
        print(f"peergrid-market: scenario error: {exc}", file=sys.stderr)
        return 2
    if args.intervals is not None:
        scenario = truncate(scenario, args.intervals)
    venue = VENUES[args.venue] if args.venue else default_venue()
    try:
        options = chain_options(args, scenario)
    except OptionError as exc:
        print(f"peergrid-market: {exc}", file=sys.stderr)
        return 2
    if options:
        if args.venue not in (None, "chain") or "chain" not in VENUES:
            print(
                "peergrid-market: --settle, --sealed, --silent and --meter-error need the chain venue",
                file=sys.stderr,
            )
            return 2
        # the chain computes the compensation wherever both parties state (it needs each side's statement)
        compensate = options.get("settle_by_both", True)
        venue = lambda s: ChainVenue(s, compensate=compensate, **options)  # noqa: E731
    venues: list[Venue] = []

    def made(s: Scenario) -> Venue:  # kept, so that the chain's counts can be reported
        inner = venue(s)
        venues.append(inner if args.loss is None else LossyVenue(inner, seed=args.seed, loss=args.loss))
        return venues[-1]

    try:
        result = simulate(
            scenario,
            SimulationConfig(
                with_central=not args.no_central,
                rationality=args.rationality,
                market=args.market,
                delivery_faults=tuple(parse_fault(text) for text in args.fault),
                random_faults=args.random_faults,
                fault_seed=args.fault_seed,
                dayahead=DayAheadConfig(clean_book=True) if args.clean_book else DayAheadConfig(),
            ),
            venue_factory=made,
        )
    except FaultError as exc:
        print(f"peergrid-market: {exc}", file=sys.stderr)
        return 2
    except DayAheadError as exc:
        print(f"peergrid-market: day-ahead market: {exc}", file=sys.stderr)
        return 2
    except ScheduleError as exc:
        print(f"peergrid-market: no schedule ({exc.cause}): {exc}", file=sys.stderr)
        return 3
    except (ForwardError, SettlementError) as exc:
        print(f"peergrid-market: the market contract refused: {exc}", file=sys.stderr)
        return 3
    except SealError as exc:  # a transaction the chain took on submit but left out of its block
        print(f"peergrid-market: the MGMC chain did not seal a move: {exc}", file=sys.stderr)
        return 3
    except CompensationError as exc:  # the chain moved a compensation the simulation's figures lack
        print(f"peergrid-market: the MGMC chain's compensation differs: {exc}", file=sys.stderr)
        return 3
    if args.json:
        try:
            doc = result_json(result, chain_counts(venues[0]) if venues else None)
            print(json.dumps(doc, sort_keys=False, separators=(",", ":")))
        except BrokenPipeError:  # `| head` closed the pipe: not an error of ours
            sys.stderr.close()
            return 0
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
    d = result.dayahead
    if d is not None:
        paid = (
            f"make-whole uplift {d.uplift_total:.4f} paid"
            if d.uplift_funded
            else f"make-whole uplift NOT funded (short {d.uplift_shortfall:.4f}), nothing paid"
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

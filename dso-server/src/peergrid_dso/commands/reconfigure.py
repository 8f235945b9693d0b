"""`peergrid-dso reconfigure`: loss-minimising radial switch state of a feeder, validated by pandapower.

Prints `{"open_branches": [...], "losses_kw", "vmin_pu", "seconds", "bound_kw", "gap", "proven",
"proof_seconds"}` with `--json` (branch numbers 1-based in file order). `--prove S` spends up to S seconds
proving a lower bound on the AC losses of every radial configuration (`bound_kw`; `gap` = 1 - bound/losses;
`proven` when the gap is within `--gap`); without it the three are null/false: a fast answer, no claim. Exit 0 on success, 1 when no radial configuration meets the limits (message on stderr), 2 on bad
input (unreadable or malformed case or ties file, bad option).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from peergrid_dso.feeder.load import NAMED_CASES, load_feeder
from peergrid_dso.feeder.model import FeederDataError
from peergrid_dso.services.acvalidate import cross_check, validate_ac
from peergrid_dso.services.powerflow import IslandedLoadError
from peergrid_dso.services.reconfiguration import ReconfigurationInfeasible, SolverFailure, reconfigure

PROGRAM = "peergrid-dso reconfigure"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--case", choices=NAMED_CASES, help="a built-in feeder")
    source.add_argument("--matpower", metavar="FILE", help="a MATPOWER case file (.m)")
    parser.add_argument(
        "--ties", metavar="FILE", help="CSV of tie branches to append (open): from_bus,to_bus,r_ohm,x_ohm"
    )
    parser.add_argument("--vmin", type=float, default=0.90, metavar="PU", help="voltage floor (default 0.90)")
    parser.add_argument(
        "--time-limit", type=float, default=120.0, metavar="S", help="solver budget in seconds"
    )
    parser.add_argument(
        "--prove",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to prove a loss lower bound (default 0)",
    )
    parser.add_argument(
        "--gap", type=float, default=1e-3, metavar="REL", help="gap that counts as proven (default 0.001)"
    )
    parser.add_argument("--no-validate", action="store_true", help="skip the pandapower cross-check")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if not 0.5 < args.vmin < 1.0:
        print(f"{PROGRAM}: --vmin must lie between 0.5 and 1.0 pu", file=sys.stderr)
        return 2
    if not (0 <= args.prove <= 86_400 and 0 < args.gap < 1):
        print(f"{PROGRAM}: --prove must lie in [0, 86400] s and --gap in (0, 1)", file=sys.stderr)
        return 2
    try:
        feeder = load_feeder(args.case, args.matpower, args.ties)
    except FeederDataError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        result = reconfigure(
            feeder, vmin_pu=args.vmin, time_limit_s=args.time_limit, prove_s=args.prove, target_gap=args.gap
        )
    except (ReconfigurationInfeasible, IslandedLoadError) as exc:
        print(f"{PROGRAM}: infeasible: {exc}", file=sys.stderr)
        return 1
    except SolverFailure as exc:
        print(f"{PROGRAM}: solver failure: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    if not args.no_validate:
        cross_check(result.losses_kw, result.vmin_pu, validate_ac(feeder, result.open_branches))
    answer = {
        "open_branches": list(result.open_branches),
        "losses_kw": round(result.losses_kw, 3),
        "vmin_pu": round(result.vmin_pu, 5),
        "seconds": round(seconds, 3),
        "bound_kw": None if result.bound_kw is None else round(result.bound_kw, 3),
        "gap": None if result.gap is None else round(result.gap, 6),
        "proven": result.proven,
        "proof_seconds": round(result.proof_seconds, 3),
    }
    if args.json:
        print(json.dumps(answer))
    else:
        print(
            f"{feeder.name}: open {answer['open_branches']}  losses {answer['losses_kw']} kW "
            f"(was {result.initial_losses_kw or float('nan'):.1f})  vmin {answer['vmin_pu']} pu  {answer['seconds']} s"
        )
        if result.bound_kw is not None:
            print(
                f"  lower bound {result.bound_kw:.2f} kW, gap {result.gap:.2%} "
                f"({'proven' if result.proven else 'not proven'} within {args.gap:.2%}, {result.proof_seconds:.1f} s)"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

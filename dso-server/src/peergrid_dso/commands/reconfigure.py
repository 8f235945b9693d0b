"""`peergrid-dso reconfigure`: loss-minimising radial switch state of a feeder, validated by pandapower.

Prints `{"open_branches": [...], "losses_kw", "vmin_pu", "seconds", "bound_kw", "gap", "proven",
"proof_seconds"}` with `--json` (branch numbers 1-based in file order). `--prove S` spends up to S seconds
proving a lower bound on the AC losses of every radial configuration (`bound_kw`; `gap` = 1 - bound/losses;
`proven` when the gap is within `--gap`); without it the three are null/false: a fast answer, no claim.
`--verify S` spends up to S seconds on an independent check with SCIP (`loss_verify`, optional extra
`peergrid-dso[verify]`): `verify_bound_kw`, `verify_gap`, `verify_proven` (null/false without it).
Exit 0 on success, 1 when no radial configuration meets the limits (message on stderr), 2 on bad
input (unreadable or malformed case or ties file, bad option, --verify without PySCIPOpt).
"""

from __future__ import annotations

import argparse
import importlib.util
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
    parser.add_argument(
        "--verify",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds for an independent SCIP check of optimality (default 0; needs peergrid-dso[verify])",
    )
    parser.add_argument("--no-validate", action="store_true", help="skip the pandapower cross-check")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if not 0.5 < args.vmin < 1.0:
        print(f"{PROGRAM}: --vmin must lie between 0.5 and 1.0 pu", file=sys.stderr)
        return 2
    if not (0 <= args.prove <= 86_400 and 0 <= args.verify <= 86_400 and 0 < args.gap < 1):
        print(
            f"{PROGRAM}: --prove and --verify must lie in [0, 86400] s and --gap in (0, 1)", file=sys.stderr
        )
        return 2
    if args.verify > 0 and importlib.util.find_spec("pyscipopt") is None:
        print(f"{PROGRAM}: --verify needs PySCIPOpt: pip install 'peergrid-dso[verify]'", file=sys.stderr)
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
    verdict = None
    if args.verify > 0:
        from peergrid_dso.services.loss_verify import verify_with_scip
        from peergrid_dso.services.powerflow import net_injection_mw

        p, q = net_injection_mw(feeder)
        verdict = verify_with_scip(
            feeder, result.open_branches, result.losses_kw, p / feeder.base_mva, q / feeder.base_mva, args.vmin,
            time_limit_s=args.verify, gap=args.gap,
        )  # fmt: skip
    verify_gap = None if verdict is None else max(0.0, 1 - verdict.bound_kw / result.losses_kw)
    answer = {
        "open_branches": list(result.open_branches),
        "losses_kw": round(result.losses_kw, 3),
        "vmin_pu": round(result.vmin_pu, 5),
        "seconds": round(seconds, 3),
        "bound_kw": None if result.bound_kw is None else round(result.bound_kw, 3),
        "gap": None if result.gap is None else round(result.gap, 6),
        "proven": result.proven,
        "proof_seconds": round(result.proof_seconds, 3),
        "verify_bound_kw": None if verdict is None else round(verdict.bound_kw, 3),
        "verify_gap": None if verify_gap is None else round(verify_gap, 6),
        "verify_proven": verify_gap is not None and verify_gap <= args.gap + 1e-9,
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
        if verdict is not None and verify_gap is not None:
            print(
                f"  SCIP check: lower bound {verdict.bound_kw:.2f} kW, gap {verify_gap:.2%} "
                f"({'proven' if answer['verify_proven'] else 'not proven'}; SCIP {verdict.status}, "
                f"{verdict.seconds:.1f} s)"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

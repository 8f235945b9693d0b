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
counts them. `--risk-allowance X` (or `MG:X`, an MG's own; intraday strict only) lets each MG's day end at most X
above its conventional day whatever its peers do (rationality.py); it overrides the scenario file's
`market.risk_allowance` / `mg_risk_allowance`, the JSON total then records each MG's (`risk_allowance`) and a
line on stderr names whose day ended above its conventional one; a bad allowance, or one for another market or
rationality, exits 2. `--exchange-fee NANO` (day-ahead, `--venue memory`) puts a fee of NANO nano-currency per
kWh on each side of every day-ahead trade into every MG's model and pays the make-whole from the fund it fills
(`--uplift-fund`, `--uplift-fund-cap`: its carried balance and cap, micro-units); the JSON total then carries
`fee` (uplift_fund.py); a negative or non-whole fee exits 2. Output is byte-identical for the same inputs.
This module runs the day: the options are cli_args.py's, the output cli_output.py's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from peergrid_controller.bargaining import Venue
from peergrid_controller.chain_venue import ChainVenue, CompensationError, SealError
from peergrid_controller.cli_args import OptionError, chain_options, fee_options, parser, risk_allowance
from peergrid_controller.cli_output import chain_counts, chain_of, report, result_json
from peergrid_controller.dayexchange import DayAheadConfig, DayAheadError
from peergrid_controller.delivery import FaultError, parse_fault
from peergrid_controller.forward import ForwardError
from peergrid_controller.model import ModelError, Scenario
from peergrid_controller.netsim import LossyVenue
from peergrid_controller.scenario import ScenarioError, ScenarioFile, load_scenario_file
from peergrid_controller.schedule import ScheduleError
from peergrid_controller.simulate import ConfigError, SettlementError, SimulationConfig, simulate, truncate
from peergrid_controller.synth import synthetic_scenario
from peergrid_controller.venues import VENUES, default_venue

# their names here before the split into cli_args.py and cli_output.py (tests and tools import them from here)
__all__ = ["OptionError", "chain_counts", "chain_of", "chain_options", "main", "result_json"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.intervals is not None and args.intervals <= 0:
        print("peergrid-market: --intervals must be positive", file=sys.stderr)
        return 2
    if args.loss is not None and not 0.0 <= args.loss < 1.0:  # also NaN
        print(f"peergrid-market: --loss {args.loss}: a probability in [0, 1) is needed", file=sys.stderr)
        return 2
    if args.clean_book and args.market != "dayahead":
        print("peergrid-market: --clean-book needs --market dayahead", file=sys.stderr)
        return 2
    file: ScenarioFile | None = None
    try:
        if args.scenario:
            file = load_scenario_file(args.scenario)
            scenario = file.scenario
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
        allowance, own_allowance = risk_allowance(args, file, scenario)
        fee = fee_options(args)
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
                dayahead=DayAheadConfig(clean_book=args.clean_book, exchange_fee=fee.pop("exchange_fee", 0)),
                risk_allowance=allowance,
                mg_risk_allowance=own_allowance,
                **fee,
            ),
            venue_factory=made,
        )
    except (FaultError, ConfigError) as exc:
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
    report(result, scenario, args, venues)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`peergrid-market`'s command line: the options it takes and the checks on them that need a scenario.

Promises: `parser(description)` builds the argument parser (every option and its help text; argparse itself
exits 2 on an unknown option or a choice outside its list); `chain_options(args, scenario)` turns the chain
venue's settlement options into ChainVenue keywords, raising `OptionError` (one line naming the option and
why) for an option the scenario or the other options cannot take. Runs nothing and prints nothing: cli.py
runs the day, cli_output.py writes it.
"""

from __future__ import annotations

import argparse
from typing import Any

from peergrid_controller.model import Scenario
from peergrid_controller.venues import VENUES


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


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peergrid-market", description=description)
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

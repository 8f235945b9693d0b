"""`peergrid-market`'s command line: the options it takes and the checks on them that need a scenario.

Promises: `parser(description)` builds the argument parser (every option and its help text; argparse itself
exits 2 on an unknown option or a choice outside its list); `chain_options(args, scenario)` turns the chain
venue's settlement options into ChainVenue keywords and `risk_allowance(args, file, scenario)` the owners'
risk allowance (the command line's over the scenario file's) into SimulationConfig's two fields, each raising
`OptionError` (one line naming the option and why) for an option the scenario or the other options cannot
take; `fee_options(args)` the exchange fee and its fund. Runs nothing and prints nothing: cli.py
runs the day, cli_output.py writes it.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from peergrid_controller import exchange_fee
from peergrid_controller.model import Scenario
from peergrid_controller.scenario import ScenarioFile
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


def _amount(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{option}: {text!r} is not an amount") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise OptionError(f"{option}: the allowance must be a finite amount >= 0, got {text}")
    return value


def risk_allowance(
    args: argparse.Namespace, file: ScenarioFile | None, scenario: Scenario
) -> tuple[float, dict[str, float]]:
    """(every MG's allowance, each MG's own) from `--risk-allowance X` / `MG:X` and the scenario file's
    `market.risk_allowance` / `mg_risk_allowance`. An MG's allowance is, first found: its own on the command
    line, the command line's every-MG value, its own in the file, the file's every-MG value (0 without any):
    the command line overrides the whole file, so `--risk-allowance 0` runs a file's day without one."""
    names = {mg.name for mg in scenario.microgrids}
    everyone: float | None = None
    own: dict[str, float] = {}
    for text in args.risk_allowance:
        option = f"--risk-allowance {text}"
        name, colon, value = text.rpartition(":")
        if not colon:
            if everyone is not None:
                raise OptionError(f"{option}: every MG's allowance is given twice")
            everyone = _amount(option, value)
            continue
        if name not in names:
            raise OptionError(f"{option}: no microgrid named {name!r} (expected X or MG:X)")
        if name in own:
            raise OptionError(f"{option}: {name}'s allowance is given twice")
        own[name] = _amount(option, value)
    given = (everyone or 0.0) > 0.0 or any(own.values())  # a positive allowance on the command line
    if everyone is None and file is not None:
        everyone, own = file.risk_allowance, {**file.mg_risk_allowance, **own}
    everyone = everyone or 0.0
    if (everyone > 0.0 or any(own.values())) and (args.market, args.rationality) != ("intraday", "strict"):
        source = "--risk-allowance" if given else "the scenario's market.risk_allowance / mg_risk_allowance"
        raise OptionError(
            f"{source}: a risk allowance applies to the intraday market's strict rationality only, not to "
            f"--market {args.market} --rationality {args.rationality}"
            + ("" if given else "; --risk-allowance 0 runs the day without it")
        )
    return everyone, own


def fee_options(args: argparse.Namespace) -> dict[str, Any]:
    """DayAheadConfig's `exchange_fee` and SimulationConfig's `uplift_fund` / `uplift_fund_cap` from
    `--exchange-fee`, `--uplift-fund` and `--uplift-fund-cap` ({} when none given): whole numbers >= 0, the
    fee a whole number of ticks within the chain's bound (the chain's own check, `exchange_fee.check`),
    day-ahead on the memory venue only."""
    options: dict[str, Any] = {}
    for option, key, text in (
        ("--exchange-fee", "exchange_fee", args.exchange_fee),
        ("--uplift-fund", "uplift_fund", args.uplift_fund),
        ("--uplift-fund-cap", "uplift_fund_cap", args.uplift_fund_cap),
    ):
        if text is None:
            continue
        try:
            value = int(text)
        except ValueError:
            raise OptionError(f"{option} {text}: {text!r} is not a whole number") from None
        if key == "exchange_fee":
            try:
                exchange_fee.check(value, option)
            except ValueError as exc:
                raise OptionError(str(exc)) from None
        elif value < 0:
            raise OptionError(f"{option} {text}: must be >= 0")
        options[key] = value
    if options and args.market != "dayahead":
        raise OptionError("--exchange-fee, --uplift-fund and --uplift-fund-cap need --market dayahead")
    if options.get("exchange_fee") and args.venue != "memory":
        raise OptionError("--exchange-fee needs --venue memory: the chain venue's genesis carries no fee yet")
    if not options.get("exchange_fee") and ({"uplift_fund", "uplift_fund_cap"} & options.keys()):
        raise OptionError("--uplift-fund and --uplift-fund-cap need --exchange-fee > 0 (no fee, no fund)")
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
    sim.add_argument(
        "--intervals",
        type=int,
        default=None,
        help="simulate only the first N intervals as a day of their own (a battery that ends them below its start "
        "pays the shortfall at their mean retail, in the P2P day and both baselines alike); N above the day's "
        "intervals runs the whole day",
    )
    sim.add_argument("--json", action="store_true", help="print the result as JSON")
    sim.add_argument(
        "--venue", choices=sorted(VENUES), default=None, help="where moves go (default: the chain)"
    )
    sim.add_argument("--no-central", action="store_true", help="skip the centralised optimum (large feeders)")
    sim.add_argument(
        "--rationality",
        choices=("strict", "trades", "off"),
        default="strict",
        help="strict: no MG ends worse off than with the DSO alone plus the clean premiums its owner chose to "
        "pay (default); trades: each trade bounded by the MG's conventional alternative; off: MGs trust the "
        "day-ahead price forecast",
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
    sim.add_argument(
        "--risk-allowance",
        action="append",
        default=[],
        metavar="[MG:]X",
        help="intraday, strict: each MG's day may end at most X (currency) above its conventional day, "
        "whatever its peers do, so it may take positions that pay only if they keep trading; X: every MG's, "
        "MG:X: one MG's own (repeatable); overrides the scenario's market.risk_allowance and "
        "mg_risk_allowance; default 0: never above",
    )
    sim.add_argument(
        "--exchange-fee",
        default=None,
        metavar="NANO",
        help="day-ahead, memory venue: the exchange fee in nano-currency per kWh on each side of every trade "
        "in whole ticks (multiples of 10^6 = one micro-unit per Wh, the market tick; at most 10^7), in every MG's "
        "model; the make-whole is then paid from the fund it fills (default 0: no fee, the payers' surplus funds it)",
    )
    sim.add_argument(
        "--uplift-fund",
        default=None,
        metavar="MICRO",
        help="with --exchange-fee: the fund's balance carried over from earlier days (micro-units; default 0)",
    )
    sim.add_argument(
        "--uplift-fund-cap",
        default=None,
        metavar="MICRO",
        help="with --exchange-fee: what the fund holds above this after the payout goes back to the day's fee "
        "payers by their fees (micro-units; default: no cap)",
    )
    return parser

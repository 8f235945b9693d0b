"""The `peergrid-testbed` command line: each flag, what it takes, and the combinations it refuses.

Promises: `build_parser` parses every flag the testbed takes, refusing a malformed value (a port, a lead, a
delay, an allowance, a fee, a fund cap) in argparse's own words; `owner_guard` and `exchange_fee` turn the
flags into the MGMCs' owner guard and the MGMC genesis' exchange fee, refusing (SystemExit naming the flag) the
combinations that would mean nothing. Writes nothing and starts nothing: `testbed` runs the lab they describe.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from peergrid_sim.processes import DSO_PORT

PROGRAM = "peergrid-testbed"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _tcp_port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return port


def _lead_s(text: str) -> float:
    try:
        lead = float(text)
    except ValueError:
        lead = math.nan
    if not (math.isfinite(lead) and lead > 0):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return lead


def _delay_s(text: str) -> float:
    try:
        delay = float(text)
    except ValueError:
        delay = math.nan
    if not (math.isfinite(delay) and delay >= 0):
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return delay


def _allowance(text: str) -> float:
    try:
        allowance = float(text)
    except ValueError:
        allowance = math.nan
    if not (math.isfinite(allowance) and allowance >= 0):
        raise argparse.ArgumentTypeError(f"not a currency amount >= 0: {text!r}")
    return allowance


def _bounded_int(what: str, top: int) -> Any:
    def parse(text: str) -> int:
        value = int(text) if text.isascii() and text.isdigit() else -1
        if not 0 <= value <= top:
            raise argparse.ArgumentTypeError(f"not {what} from 0 to {top}: {text!r}")
        return value

    return parse


def _exchange_fee(text: str) -> int:
    """--exchange-fee: a whole number of ticks as the chain takes it (its own `market_fee.check_fee`)."""
    from peergrid_ledger.contracts.market_fee import check_fee

    value = int(text) if text.isascii() and text.removeprefix("-").isdigit() else text  # else named as given
    try:
        return check_fee(value, "the fee")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from peergrid_ledger.contracts.market_fee import MAX_FUND_CAP

    parser = argparse.ArgumentParser(prog=PROGRAM, description="run the peergrid lab testbed on this machine")
    parser.add_argument(
        "--scenario", type=Path, default=SCENARIOS / "skeleton.yaml", help="firmware-sim scenario"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where configs, logs and data go (default: a temp dir)"
    )
    parser.add_argument(
        "--http-port",
        type=_tcp_port,
        default=None,
        help=f"DSO console/API port; 0: any free one, see ports.json (default {DSO_PORT}, or any free one when "
        "another process holds it)",
    )
    parser.add_argument("--speed", type=float, default=60.0, help="simulated clock speed factor")
    parser.add_argument(
        "--intervals",
        type=int,
        default=None,
        help="trade this many intervals, then stop (with --report: write it)",
    )
    parser.add_argument("--report", type=Path, default=None, help="write report.json and report.html here")
    parser.add_argument("--first-interval", type=int, default=36, help="first trading interval of the day")
    parser.add_argument("--interval-s", type=float, default=6.0, help="real seconds per trading interval")
    parser.add_argument(
        "--block-period-ms", type=int, default=200, help="consensus block period of both chains"
    )
    parser.add_argument(
        "--dso-vmin", type=float, default=None,
        help="demo: a stricter voltage floor met by adjustment contracts alone (no reconfiguration)",
    )  # fmt: skip
    parser.add_argument(
        "--dso-reconfigure-every", type=int, default=None,
        help="intervals between the DSO's scheduled reconfigurations (0: only when insecure; default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--cuttable",
        action="append",
        default=[],
        help="MG whose Pi reaches the broker through a pullable cable",
    )
    parser.add_argument(
        "--dayahead", action="store_true",
        help="the MGMCs run the day-ahead exchange session first and trade its cleared intervals forward",
    )  # fmt: skip
    parser.add_argument(
        "--lead-s", type=_lead_s, default=None,
        help="wall seconds from the start to the first interval: the processes' start-up and, with --dayahead, "
        "the day-ahead stage, whose session must close 4 phase timeouts and the clear's margin before it (12.5 s in "
        "the lab) (default 25; 55 with --dayahead: the DSO node starts first, the MGMCs once it is ready); a DSO "
        "node ready late moves the first interval later, except with --settle-by-both, where the lab then fails",
    )  # fmt: skip
    parser.add_argument(
        "--dso-start-delay-s", type=_delay_s, default=0.0,
        help="tests: the DSO server's process starts this many seconds late (a slow DSO start); the MGMCs "
        "still wait for it, and if that leaves them too little time before the first interval, it moves later (with "
        "--settle-by-both the lab fails at once)",
    )  # fmt: skip
    parser.add_argument(
        "--settle-by-both", dest="settle_by_both", action="store_true",
        help="each trade settles on both parties' metered statements (genesis settle_by_both), a disputed one by "
        "the DSO from their sealed PCC readings; default: on the buyer's word alone",
    )  # fmt: skip
    parser.add_argument(
        "--unsigned-meters", dest="unsigned_meters", action="store_true",
        help="the PCC meters do not sign their readings and the DSO enrols no meter key (it then reads the MGMCs' "
        "own sealed readings); default: each MG's meter signs and the DSO counts only its signed readings",
    )  # fmt: skip
    parser.add_argument(
        "--rationality", choices=("strict", "trades"), default=None,
        help="the MGMCs guard their owners' individual rationality in the intraday bargaining on the market's "
        "price forecast (edge market.rationality, market.forecast market); default: off, no forecast",
    )  # fmt: skip
    parser.add_argument(
        "--risk-allowance", type=_allowance, default=0.0,
        help="with --rationality strict: currency per day each MG's day may end above its conventional cost "
        "(edge market.risk_allowance); default 0",
    )  # fmt: skip
    parser.add_argument(
        "--exchange-fee", type=_exchange_fee, default=None,
        metavar="NANO_PER_KWH",
        help="with --dayahead: the MGMC genesis' exchange fee per kWh per side of every day-ahead trade, in whole "
        "ticks (multiples of 10^6 = 1 micro-unit per Wh; at most 10^7), paid into the uplift fund that pays the "
        "session's make-whole; default 0: no fee, the payers' claimed surplus funds it. A lab directory keeps "
        "the genesis it was made with",
    )  # fmt: skip
    parser.add_argument(
        "--uplift-fund-cap", type=_bounded_int("a whole number of micro-units", MAX_FUND_CAP), default=None,
        metavar="MICRO",
        help="with --exchange-fee above 0: the micro-units the uplift fund keeps after a session's payout, the rest "
        "refunded to that session's fee payers by their fees; default 0",
    )  # fmt: skip
    parser.add_argument(
        "--no-market", action="store_true", help="devices, edges and DSO only: no ledger replicas, no trading"
    )
    return parser


def owner_guard(args: argparse.Namespace) -> Any:
    """The MGMCs' owner guard from --rationality and --risk-allowance (`closedloop.OwnerGuard`; None: off).
    An allowance without strict is refused here, as the edge's config would refuse it in every MGMC."""
    from peergrid_sim.closedloop import OwnerGuard

    if args.risk_allowance and args.rationality != "strict":
        raise SystemExit(
            f"{PROGRAM}: --risk-allowance needs --rationality strict (it is the strict guard's slack)"
        )
    return None if args.rationality is None else OwnerGuard(args.rationality, args.risk_allowance)


def exchange_fee(args: argparse.Namespace) -> Any:
    """The MGMC genesis' exchange fee from --exchange-fee and --uplift-fund-cap (`lab_chains.ExchangeFee`; None:
    neither given, the genesis has none). Refused where it would mean nothing: the fee is charged on the
    day-ahead session's cleared Wh alone (without --dayahead no session opens), and the cap is the fee's fund's."""
    from peergrid_sim.lab_chains import ExchangeFee

    if args.exchange_fee is None and args.uplift_fund_cap is None:
        return None
    given = "--exchange-fee" if args.exchange_fee is not None else "--uplift-fund-cap"
    if not args.dayahead or args.no_market:
        raise SystemExit(
            f"{PROGRAM}: {given} needs --dayahead (and the market): the fee is charged on the day-ahead "
            "session's cleared energy and funds its make-whole; an intraday lab opens no session"
        )
    if args.uplift_fund_cap and not args.exchange_fee:
        raise SystemExit(
            f"{PROGRAM}: --uplift-fund-cap needs --exchange-fee above 0 (without a fee there is no fund)"
        )
    return ExchangeFee(args.exchange_fee or 0, args.uplift_fund_cap or 0)

"""`peergrid-testbed`: the whole lab on one machine — broker, emulated devices, MGMCs, DSO server.

Promises: every process it starts (`peergrid_sim.processes.Testbed`) runs in its own session and is stopped
(SIGTERM, then SIGKILL of its process group) when the testbed ends — by Ctrl-C, SIGTERM, SIGHUP (its terminal
closed), `--duration`, or a child dying early — so it leaves no orphan; a broker that dies is started again on
its port with a back-off, and the testbed stops (status 1) when it dies too often soon after its start
(`broker_watch`), never restarting it once a stop began; killed itself (SIGKILL, e.g. a test's
timeout) or crashing, the kernel kills them (`peergrid_ledger.tied`). Prints the URLs to look at; the ports it
got are also in `<workdir>/ports.json` while it runs (`--http-port 0`: any free port, bound here, served by the
DSO; its stop removes the file, and pids.json). With
`--intervals` it trades that many intervals, halts the chains, keeps one scrape of each MGMC's /metrics (every
lab edge serves it on a loopback port of its own: `lab_metrics`, `<workdir>/records/metrics.json`), and writes
the report; a DSO node ready late moves its first interval later (`closedloop_run.ClosedLoop.move_t0`), with
`--settle-by-both` too (the lab's clock key posts the moved t0), except in a settle-by-both lab directory whose
genesis predates the clock key. With `--settle-by-both` a new lab directory's MGMC
genesis names `settle_by_both` (each trade settles on both parties' metered statements, a disputed one by the
DSO from their PCC readings; `closedloop.SettleByBoth`); off by default: under the full suite's load (two
workers, every lab test) the DSO's start before the MGMCs and the end's wait for the last statements made the
lab tests miss their windows; a lab directory made before keeps its genesis either way. Each MG's PCC meter
signs its readings and the DSO node meters it from the signatures only, as a field meter would
(`closedloop_run.ClosedLoop.signed_meters`); `--unsigned-meters` leaves the meters unsigned and the DSO
reading the MGMCs' own sealed readings. With `--dayahead`, `--exchange-fee` (and `--uplift-fund-cap`) give a
new lab directory's MGMC genesis an exchange fee that funds the session's make-whole (`lab_chains.ExchangeFee`);
refused without `--dayahead`, and where the directory's genesis carries another. Assumes the console scripts
of the other components are on PATH beside it (one venv). Binds loopback only. A market lab's --workdir that an
earlier start wrote in (anything beside the lab's keys) is refused in one line naming what is there (`run_before`).
Its flags, and the combinations of them it refuses, are `testbed_args`'.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peergrid_ledger.settings import ConfigError, exit_with_config_error
from peergrid_sim.broker import LOOPBACK
from peergrid_sim.processes import DSO_PORT, Testbed, TestbedError
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed_args import (  # the tests import the three from here, as before they moved
    PROGRAM,
    build_parser,
    exchange_fee,
    owner_guard,
)

if TYPE_CHECKING:
    from peergrid_sim.closedloop_run import ClosedLoop


# What a start of the lab writes in its directory, the most telling first: the name the refusal gives it. keys/ is
# not here: `lab_loop` writes the lab's keys and geneses before any process starts, and a directory holding only
# those is reused as it is (a kept lab directory, whose genesis the start checks)
RUN_TRACES = (
    ("records/dso.jsonl", "its interval records"),
    ("records", "its nodes' records"),
    ("nodes", "its nodes' ledger stores"),
    ("logs", "its processes' logs"),
    ("config", "its processes' configs"),
    ("broker", "its broker's directory"),
    ("endpoints.json", "its devices' endpoints"),
    ("console-admin.txt", "its console login"),
    ("pids.json", "its processes' ids"),
    ("ports.json", "its ports"),
)

# What a user may put in a lab directory before its first start: the console's users file (`peergrid-dso user
# --users <workdir>/config/console-users.json add ...`, and the lock file beside it that command leaves), which
# the lab then uses instead of adding its own admin (`processes._add_console_admin`; tests/console/test_browser.py
# starts its lab so). Not a trace of a run.
OWN_BEFORE = frozenset({Path("config/console-users.json"), Path("config/console-users.json.lock")})


def run_before(workdir: Path) -> str:
    """What of an earlier start of the lab `workdir` holds ("" for none), as the refusal names it: its coordinated
    halt (the chains stop above those heights at once), else the first of `RUN_TRACES` there (a directory counts
    only with something in it other than `OWN_BEFORE`). Why: a second start after a finished day halted at the old heights, printed the
    old day's 16 intervals as done and wrote a report whose checks all passed, trading nothing (U4); one after a
    run stopped before the DSO's first interval record ran on the old run's ledger stores and MGMC records and
    was not refused (D4)."""
    from peergrid_sim.quiesce import halt_file

    halt = halt_file(workdir / "records")
    if halt.exists():
        return f"its chains halted, {halt.relative_to(workdir)}"
    for name, what in RUN_TRACES:
        path = workdir / name
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.relative_to(workdir) not in OWN_BEFORE)
            if inside:
                more = f" (+{len(inside) - 2} more)" if len(inside) > 2 else ""
                return f"{what}, {', '.join(str(p.relative_to(workdir)) for p in inside[:2])}{more}"
        elif path.exists():
            return f"{what}, {name}"
    return ""


def lab_loop(args: argparse.Namespace, workdir: Path, scenario: Any) -> ClosedLoop | None:
    """The closed loop the testbed runs (`closedloop_run.ClosedLoop`; None: no market), with the lab's keys and
    geneses written once (a directory holding only those reuses them; one a start of the lab wrote in is
    refused, `run_before`): its t0 is fixed here, before the MGMC genesis, whose
    settlement clock (with --settle-by-both) is the loop's own intervals, not ones a warm-up ahead."""
    fee = exchange_fee(args)  # (refused before anything is written)
    if args.no_market or (args.intervals is None and len(scenario.microgrids) < 2):
        return None
    from peergrid_sim.closedloop import LabChains, SettleByBoth
    from peergrid_sim.closedloop_run import ClosedLoop
    from peergrid_sim.lab_chains import LabGenesisMismatch, bargaining_rounds, same_rounds

    loop = ClosedLoop(args.intervals or 96 - args.first_interval, args.first_interval, args.interval_s,
                      args.block_period_ms, cuttable=tuple(args.cuttable), dayahead=args.dayahead,
                      lead=args.lead_s, dso_start_delay_s=args.dso_start_delay_s,
                      signed_meters=not args.unsigned_meters, guard=owner_guard(args))  # fmt: skip
    t0 = loop.fix_t0()  # (after `dayahead` and `lead`: they set the lead)
    by_both = (
        SettleByBoth.for_lab(args.interval_s, args.first_interval, t0, block_period_ms=args.block_period_ms)
        if args.settle_by_both
        else None
    )  # its quiet period is counted in the MGMC chain's blocks, which --block-period-ms sets
    # the rounds its MGMCs play, named in the MGMC genesis as its round cap (a kept lab directory keeps its own:
    # one whose cap is other rounds is refused, as one with another fee is)
    rounds = bargaining_rounds(args.interval_s, args.block_period_ms)
    if ran := run_before(workdir):
        raise SystemExit(f"{PROGRAM}: {workdir} holds an earlier run ({ran}): use a new --workdir")
    try:
        same_rounds(workdir / "keys" / "mgmc-genesis.json", args.interval_s, args.block_period_ms)
        LabChains.create(workdir / "keys", scenario.feeder, args.scenario, by_both, fee, rounds=rounds)
    except LabGenesisMismatch as err:
        raise SystemExit(f"{PROGRAM}: {err}") from None
    if args.dso_reconfigure_every is not None:  # e.g. 0: operators reconfigure from the console
        loop.dso_extra["reconfigure_every"] = max(0, args.dso_reconfigure_every)
    if args.dso_vmin is not None:  # a stricter floor: the DSO must send adjustment contracts
        loop.dso_extra |= {
            "vmin_pu": args.dso_vmin,
            "reconfigure_every": 0,
            "reconfigure_when_insecure": False,
        }
    return loop


def meters_line(bed: Testbed) -> str:
    """Which MGs' PCC meters sign their readings, for the start's banner."""
    signing = sorted(bed.loop.meter_seeds(bed)) if bed.loop is not None else []
    if not signing:
        return "PCC meters: unsigned (the DSO reads the MGMCs' own sealed readings)"
    mgs = len(bed.scenario.microgrids)
    return (
        f"PCC meters sign: {len(signing)} of {mgs} MGs ({' '.join(signing)}), their keys enrolled with the DSO "
        "(a dispute counts only their signed readings)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="peergrid-testbed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    http_port = DSO_PORT if args.http_port is None else args.http_port
    bed = Testbed(
        workdir, args.scenario, scenario, http_port, args.speed, http_port_or_any_free=args.http_port is None
    )
    bed.loop = lab_loop(args, workdir, scenario)
    stop_reason: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_reason.append(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    status = 0
    try:
        bed.start()
        url = f"http://{LOOPBACK}:{bed.http_port}"
        print(f"peergrid testbed running (workdir {workdir})", flush=True)
        print(f"  DSO console:  {url}/", flush=True)
        print(f"  DSO API:      {url}/api/nodes  {url}/api/health  {url}/docs", flush=True)
        assert bed.broker is not None
        print(f"  MQTT broker:  mqtt://{bed.broker.host}:{bed.broker.port}", flush=True)
        print(f"  logs:         {workdir / 'logs'}", flush=True)
        print(f"  console login: user and password in {workdir / 'console-admin.txt'}", flush=True)
        started = None if bed.loop is None else bed.loop.start_times
        if started is not None:
            print(
                f"  DSO node ready {started.t0 - started.dso_ready:.1f} s before the first interval "
                f"(its start-up {started.dso_ready - started.dso_started:.1f} s); then the MGMCs started",
                flush=True,
            )
            if started.moved_s > 0:  # a loaded machine: the start waited for the DSO node
                print(
                    f"  the first interval moved {started.moved_s:.1f} s later: the DSO node was ready late, "
                    f"and the MGMCs have their {started.need_s:.0f} s",
                    flush=True,
                )
            if started.postings is not None:
                print(started.postings.banner(started.t0), flush=True)
            print(f"  {meters_line(bed)}", flush=True)
            if args.exchange_fee:
                print(
                    f"  exchange fee: {args.exchange_fee} nano-currency per kWh per side into the uplift fund "
                    f"(fund cap {args.uplift_fund_cap or 0} micro-units), unless the lab directory's genesis "
                    "predates it",
                    flush=True,
                )
        print(
            "Ctrl-C stops every process it started."
            if args.duration is None
            else f"stopping after {args.duration:.0f} s.",
            flush=True,
        )
        deadline = None if args.duration is None else time.monotonic() + args.duration
        reported: set[str] = set()
        told_traded = False
        while not stop_reason and (deadline is None or time.monotonic() < deadline):
            if bed.loop is not None:
                for line in bed.loop.handle_requests(bed):
                    print(f"testbed: {line}", flush=True)
                for line in bed.loop.poll(bed):
                    print(line, flush=True)
                    print(bed.loop.progress_bar(), flush=True)
                # left running (no --intervals, no --duration): it says once that the trading is over
                idle = args.intervals is None and args.duration is None and not told_traded
                traded = bed.loop.day_traded() if idle else None
                if traded is not None:
                    print(f"testbed: {traded}", flush=True)
                    told_traded = True
                if args.intervals is not None and bed.loop.finished(bed):  # settled, halted, heads agree
                    for line in bed.loop.poll(bed, force=True):
                        print(line, flush=True)
                        print(bed.loop.progress_bar(), flush=True)
                    from peergrid_sim.lab_metrics import keep_edge_metrics

                    keep_edge_metrics(bed)  # each edge's /metrics as it ended, for the tests
                    if args.report is not None:
                        from peergrid_sim.report import collect_live

                        collect_live(bed)
                    break
            for child in bed.children:
                if child.process.poll() is not None and child.name in bed.restartable:
                    if child.name not in reported:
                        code = child.process.returncode
                        print(f"testbed: {child.name} is down (exit {code}); the others go on", flush=True)
                        reported.add(child.name)
                elif child.name in reported:
                    reported.discard(child.name)
            for line in bed.watch_broker(stopping=lambda: bool(stop_reason)):  # a dead one started again
                print(f"testbed: {line}", flush=True)
            dead = bed.dead_child()
            if dead is not None:
                print(
                    f"{PROGRAM}: {dead.name} exited with {dead.process.returncode}; see {dead.log}",
                    file=sys.stderr,
                )
                status = 1
                break
            time.sleep(0.2)
        if not stop_reason and deadline is not None and time.monotonic() >= deadline:
            stop_reason.append("--duration")  # the report and the last line say what ended the lab (R41-6)
    except TestbedError as err:
        print(f"{PROGRAM}: {err}", file=sys.stderr)
        status = 1
    finally:
        bed.stop()
    if args.report is not None and bed.loop is not None and status == 0:
        from peergrid_sim.report import write_report

        # a lab stopped before its coordinated halt: the report says its quiesce was not checked, and by what
        path = write_report(bed, args.report, stop_reason[0] if stop_reason else None)
        print(f"report: {path}", flush=True)
    print(f"peergrid testbed stopped{' (' + stop_reason[0] + ')' if stop_reason else ''}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

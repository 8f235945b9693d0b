"""`peergrid-testbed`: the whole lab on one machine — broker, emulated devices, MGMCs, DSO server.

Promises: every process it starts runs in its own session and is stopped (SIGTERM, then SIGKILL of its
process group) when the testbed ends — by Ctrl-C, SIGTERM, `--duration`, or a child dying early — so it
leaves no orphan. Prints the URLs to look at and writes the ports it got to `<workdir>/ports.json`
(`{"dso_http": …, "broker": …}`): `--http-port 0` lets the DSO server bind any free port itself, which the
testbed then reads from that process's own listening socket (`peergrid_sim.ports`), so no port is picked
here and bound there, where another process could take it in between. Assumes the console scripts of the
other components are on PATH beside it (one venv). Binds loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peergrid_ledger.settings import ConfigError, exit_with_config_error
from peergrid_sim.broker import LOOPBACK, MosquittoBroker, wait_for_port
from peergrid_sim.ports import wait_for_listener
from peergrid_sim.scenario import Scenario, load_scenario

PROGRAM = "peergrid-testbed"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


class TestbedError(RuntimeError):
    """A part of the testbed did not come up."""


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Testbed:
    workdir: Path
    scenario_path: Path
    scenario: Scenario
    http_port: int  # the DSO server's: 0 until it started when asked for any free port
    speed: float
    children: list[Child] = field(default_factory=list)
    broker: MosquittoBroker | None = None
    loop: Any = None  # closedloop_run.ClosedLoop when the MGMCs trade (scenarios with two or more MGs)
    restartable: set[str] = field(default_factory=set)  # children a fault test may kill and restart

    def spawn(self, name: str, argv: list[str], pass_fds: tuple[int, ...] = ()) -> Child:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        self._write_pids()
        return child

    def _write_pids(self) -> None:
        pids = {c.name: c.process.pid for c in self.children}
        if self.broker is not None and self.broker.process is not None:
            pids["mosquitto"] = self.broker.process.pid
        (self.workdir / "pids.json").write_text(json.dumps(pids, indent=1), encoding="utf-8")

    def start(self) -> None:
        self.broker = MosquittoBroker(self.workdir / "broker").start()
        endpoints_file = self.workdir / "endpoints.json"
        sim_scenario = self.scenario_path if self.loop is None else self.loop.sim_scenario(self)
        sim = self.spawn(
            "firmware-sim",
            [
                _tool("firmware-sim"),
                "run",
                str(sim_scenario),
                "--endpoints-json",
                str(endpoints_file),
                "--speed",
                str(self.speed),
                "--broker",
                f"{self.broker.host}:{self.broker.port}",
            ],
        )
        endpoints = self._wait_for_endpoints(endpoints_file, sim)
        feeder = self.scenario.feeder
        if self.loop is not None:
            self.loop.start(self, endpoints, endpoints_file)
        for mg, devices in sorted(_group_by_mg(endpoints).items() if self.loop is None else ()):
            node = f"mgmc-{mg}"
            config = {
                "node_id": node,
                "mg": mg,
                "feeder": feeder,
                "broker": {"host": self.broker.host, "port": self.broker.port},
                "data_dir": str(self.workdir / "nodes" / node),
                "devices": devices,
            }
            path = self.workdir / "config" / f"{node}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            self.spawn(node, [_tool("peergrid-edge"), "run", "--config", str(path)])
        if self.loop is None:
            self.start_dso()
        dso = next(c for c in self.children if c.name == "dso")
        port = wait_for_listener(dso.process, self.http_port, 30 + 3 * len(self.scenario.microgrids))
        if port is None:
            in_use = "address already in use" in dso.log.read_text(encoding="utf-8", errors="replace").lower()
            why = f": port {self.http_port} is taken by another process" if in_use else ""
            raise TestbedError(f"the DSO server did not start{why}; see {dso.log}")
        self.http_port = port
        ports = {"dso_http": port, "broker": self.broker.port}
        tmp = self.workdir / "ports.json.tmp"  # readers poll for it: never show them half a file
        tmp.write_text(json.dumps(ports), encoding="utf-8")
        os.replace(tmp, self.workdir / "ports.json")

    def start_dso(self, loop: dict[str, Any] | None = None) -> Child:
        """The DSO server and its console: with `loop` (the closed loop's DSO node settings) it is the DSO of
        the loop; without, the console's lab mode."""
        assert self.broker is not None
        dso_config = self.workdir / "config" / "dso.yaml"
        dso_config.parent.mkdir(parents=True, exist_ok=True)
        users_file = self.workdir / "config" / "console-users.json"
        if not users_file.exists():  # a lab admin for the console; name and password in console-admin.txt
            password = os.urandom(12).hex()
            add = [
                _tool("peergrid-dso"),
                "user",
                "--users",
                str(users_file),
                "add",
                "admin",
                "--role",
                "admin",
            ]
            subprocess.run(
                [*add, "--password-stdin"], input=password.encode(), check=True, capture_output=True
            )
            admin_file = self.workdir / "console-admin.txt"
            admin_file.touch(mode=0o600)
            admin_file.write_text(f"admin {password}\n", encoding="utf-8")
        config: dict[str, Any] = {
            "node_id": "dso",
            "feeder": self.scenario.feeder,
            "broker": {"host": self.broker.host, "port": self.broker.port},
            "http": {"host": LOOPBACK, "port": self.http_port},
            "console": {"users_file": str(users_file)},
        }
        if loop is not None:
            config["loop"] = loop
        dso_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return self.spawn(
            "dso", [_tool("peergrid-dso"), "serve", "--config", str(dso_config), "--log-level", "warning"]
        )

    def _wait_for_endpoints(self, path: Path, sim: Child, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sim.process.poll() is not None:
                raise TestbedError(f"firmware-sim exited with {sim.process.returncode}; see {sim.log}")
            if path.exists():
                try:
                    endpoints = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    endpoints = None  # still being written
                if isinstance(endpoints, list):
                    return endpoints
            time.sleep(0.1)
        raise TestbedError(f"firmware-sim wrote no endpoints in {timeout:.0f} s; see {sim.log}")

    def dead_child(self) -> Child | None:
        return next(
            (c for c in self.children if c.process.poll() is not None and c.name not in self.restartable),
            None,
        )

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Kill the whole group even when the leader exited: no grandchild may outlive the testbed.
            _signal_group(child.process, signal.SIGKILL)
            if child.process.poll() is None:
                child.process.wait(timeout=5)
        if self.broker is not None:
            self.broker.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_by_mg(endpoints: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    natures = {
        "pv": "pv",
        "pv_inverter": "pv",
        "inverter": "pv",
        "battery": "battery",
        "genset": "genset",
        "load": "load",
        "meter": "meter",
    }
    grouped: dict[str, list[dict[str, Any]]] = {}
    for ep in endpoints:
        if ep.get("protocol") != "modbus-tcp" or ep.get("mg") is None:
            continue
        nature = natures.get(str(ep.get("kind")))
        if nature is None:
            continue
        grouped.setdefault(str(ep["mg"]), []).append(
            {
                "name": str(ep["device"]),
                "nature": nature,
                "protocol": "modbus-tcp",
                "host": ep["host"],
                "port": int(ep["port"]),
                "unit_id": int(ep.get("unit_id", 1)),
            }
        )
    return grouped


def _tcp_port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return port


def build_parser() -> argparse.ArgumentParser:
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
        help="DSO console/API port; 0: any free one, see ports.json (default 8080 if free)",
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
        "--no-market", action="store_true", help="devices, edges and DSO only: no ledger replicas, no trading"
    )
    return parser


def _default_http_port() -> int:
    return 8080 if not wait_for_port(LOOPBACK, 8080, 0.05) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="peergrid-testbed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    http_port = _default_http_port() if args.http_port is None else args.http_port
    bed = Testbed(workdir, args.scenario, scenario, http_port, args.speed)
    if not args.no_market and (args.intervals is not None or len(scenario.microgrids) >= 2):
        from peergrid_sim.closedloop_run import ClosedLoop

        bed.loop = ClosedLoop(
            args.intervals or 96 - args.first_interval,
            args.first_interval,
            args.interval_s,
            args.block_period_ms,
        )
        bed.loop.cuttable = tuple(args.cuttable)
        if args.dso_reconfigure_every is not None:  # e.g. 0: operators reconfigure from the console
            bed.loop.dso_extra["reconfigure_every"] = max(0, args.dso_reconfigure_every)
        if args.dso_vmin is not None:  # a stricter floor: the DSO must send adjustment contracts
            bed.loop.dso_extra |= {
                "vmin_pu": args.dso_vmin,
                "reconfigure_every": 0,
                "reconfigure_when_insecure": False,
            }
    stop_reason: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_reason.append(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
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
        print(
            "Ctrl-C stops every process it started."
            if args.duration is None
            else f"stopping after {args.duration:.0f} s.",
            flush=True,
        )
        deadline = None if args.duration is None else time.monotonic() + args.duration
        reported: set[str] = set()
        while not stop_reason and (deadline is None or time.monotonic() < deadline):
            if bed.loop is not None:
                for line in bed.loop.handle_requests(bed):
                    print(f"testbed: {line}", flush=True)
                for line in bed.loop.poll(bed):
                    print(line, flush=True)
                    print(bed.loop.progress_bar(), flush=True)
                if args.intervals is not None and bed.loop.finished(bed):  # settled, halted, heads agree
                    for line in bed.loop.poll(bed, force=True):
                        print(line, flush=True)
                        print(bed.loop.progress_bar(), flush=True)
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
            dead = bed.dead_child()
            if dead is not None:
                print(
                    f"{PROGRAM}: {dead.name} exited with {dead.process.returncode}; see {dead.log}",
                    file=sys.stderr,
                )
                status = 1
                break
            time.sleep(0.2)
    except TestbedError as err:
        print(f"{PROGRAM}: {err}", file=sys.stderr)
        status = 1
    finally:
        bed.stop()
    if args.report is not None and bed.loop is not None and status == 0:
        from peergrid_sim.report import write_report

        path = write_report(bed, args.report)
        print(f"report: {path}", flush=True)
    print(f"peergrid testbed stopped{' (' + stop_reason[0] + ')' if stop_reason else ''}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

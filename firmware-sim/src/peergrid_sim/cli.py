"""`firmware-sim`: run a scenario's emulated devices, check a scenario, or inject faults into a running one.

  firmware-sim run SCENARIO [--endpoints-json FILE] [--speed X] [--broker HOST:PORT] [--broker-tls CA CERT KEY]
                            [--relays-tls CA CERT KEY] [--control-port N]
  firmware-sim check SCENARIO
  firmware-sim pki DIR [--client NAME[:ROLE] ...]      lab CA, device and client certificates (not for the pilot)
  firmware-sim fault --control HOST:PORT DEVICE KIND [key=value ...] [--verbose]   e.g. mg1/pv1 delay seconds=2
  firmware-sim clear --control HOST:PORT DEVICE [KIND] [--verbose]
`fault` and `clear` print one line saying what they did and which faults the device has now; --verbose prints
the control API's whole answer instead (the device's readings and every register point, as JSON).
Exit codes: 0 ok, 2 bad scenario or arguments, 1 control API refused the request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from peergrid_ledger.settings import ConfigError, exit_with_config_error

from .image import MapError
from .runtime import ScenarioError
from .scenario import Broker, load_scenario, with_tls_relays


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def post(control: str, path: str, body: dict[str, object]) -> tuple[int, object]:
    request = urllib.request.Request(
        f"http://{control}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, {"error": f"control API at {control} unreachable: {getattr(exc, 'reason', exc)}"}
    try:
        return status, json.loads(raw or b"{}")
    except json.JSONDecodeError:
        return status, {"error": "control API answered with something that is not JSON"}


def said(command: str, body: dict[str, object], reply: object) -> str:
    """The one line `fault` or `clear` prints: what was done to which device, and its faults now."""
    device, kind = body["device"], body.get("fault")
    params = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}"  # as typed: point=103.W, seconds=2
        for k, v in body.items()
        if k not in ("device", "fault")
    )
    if command == "fault":
        done = f"{device}: fault {kind}{' ' + params if params else ''} injected"
    else:
        done = f"{device}: {'fault ' + str(kind) if kind else 'every fault'} cleared"
    now = reply.get("faults") if isinstance(reply, dict) else None
    return done + (f"; its faults now: {json.dumps(now)}" if now else "; it has no fault now")


def write_pki(directory: Path, clients: list[str]) -> int:
    from .certs import make_lab_pki

    names: list[str] = []
    roles: dict[str, str] = {}
    for item in clients:
        name, _, role = item.partition(":")
        if not name or "/" in name:
            exit_with_config_error("firmware-sim", ConfigError(f"--client must be NAME[:ROLE], got {item!r}"))
        names.append(name)
        if role:
            roles[name] = role
    pki = make_lab_pki(directory, names, days=365, roles=roles)
    print(f"ca      {pki.ca_cert}")
    print(f"device  {pki.server.cert} {pki.server.key}  (for 127.0.0.1 and localhost)")
    for name, pair in pki.clients.items():
        print(f"client  {pair.cert} {pair.key}  CN={name} role={roles.get(name, '-')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firmware-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start every device of a scenario and serve until SIGINT/SIGTERM")
    run.add_argument("scenario", type=Path)
    run.add_argument("--endpoints-json", type=Path, help="also write the endpoints as JSON to this file")
    run.add_argument(
        "--speed", type=float, help="simulated seconds per real second (default: the scenario's)"
    )
    run.add_argument("--broker", help="HOST:PORT of the MQTT broker (overrides the scenario's)")
    run.add_argument(
        "--broker-tls",
        nargs=3,
        metavar=("CA", "CERT", "KEY"),
        help="TLS to the broker with this client certificate",
    )
    run.add_argument(
        "--relays-tls",
        nargs=3,
        metavar=("CA", "CERT", "KEY"),
        help="serve every Modbus TCP relay as Modbus/TCP Security: clients need a certificate from CA",
    )
    run.add_argument("--control-port", type=int, default=0, help="control API port (default: a free one)")
    pki = sub.add_parser(
        "pki", help="write a lab PKI: CA, a device (server) certificate, client certificates"
    )
    pki.add_argument("directory", type=Path)
    pki.add_argument(
        "--client",
        action="append",
        metavar="NAME[:ROLE]",
        help="a client certificate with CN NAME and an optional Modbus Role (default: dso:operator console:viewer)",
    )
    check = sub.add_parser("check", help="validate a scenario and build its devices without serving")
    check.add_argument("scenario", type=Path)
    fault = sub.add_parser("fault", help="inject a fault through a running simulator's control API")
    fault.add_argument("--control", required=True, help="HOST:PORT of the control API (see the endpoints)")
    fault.add_argument("device")
    fault.add_argument("kind")
    fault.add_argument("params", nargs="*", help="key=value, values as JSON (seconds=2, point=103.W)")
    fault.add_argument("--verbose", action="store_true", help="print the device's readings and registers")
    clear = sub.add_parser("clear", help="clear one fault kind (or all) on a device")
    clear.add_argument("--control", required=True)
    clear.add_argument("device")
    clear.add_argument("kind", nargs="?")
    clear.add_argument("--verbose", action="store_true", help="print the device's readings and registers")
    args = parser.parse_args(argv)

    if args.command in ("fault", "clear"):
        body: dict[str, object] = {"device": args.device}
        if args.kind:
            body["fault"] = args.kind
        for item in getattr(args, "params", []):
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"expected key=value, got {item!r}")
            body[key] = _value(value)
        status, reply = post(args.control, "/faults" if args.command == "fault" else "/faults/clear", body)
        if args.verbose or status != 200:  # a refusal is one line already: {"error": why}
            print(json.dumps(reply, indent=1))
        else:
            print(said(args.command, body, reply))
        return 0 if status == 200 else 1

    if args.command == "pki":
        return write_pki(args.directory, args.client or ["dso:operator", "console:viewer"])

    try:
        scenario = load_scenario(args.scenario)
        speed = getattr(args, "speed", None)
        if speed is not None and not 0 <= speed <= 100_000:
            raise ConfigError(f"--speed must be within 0..100000, got {speed}")
        if getattr(args, "broker", None) or getattr(args, "broker_tls", None):
            broker = scenario.broker or Broker()
            if args.broker:
                host, sep, port = args.broker.rpartition(":")
                if not sep or not port.isdigit():
                    raise ConfigError(f"--broker must be HOST:PORT, got {args.broker!r}")
                broker = broker.model_copy(update={"host": host, "port": int(port)})
            if args.broker_tls:
                ca, cert, key = args.broker_tls
                broker = broker.model_copy(
                    update={"ca_file": Path(ca), "cert_file": Path(cert), "key_file": Path(key)}
                )
            scenario = scenario.model_copy(update={"broker": broker})
        if getattr(args, "relays_tls", None):
            scenario = with_tls_relays(scenario, *(Path(p) for p in args.relays_tls))
        if args.command == "check":
            from .clock import SimClock
            from .runtime import Simulation

            sim = Simulation(scenario, SimClock(scenario.start_epoch(), 0.0))
            n = sum(len(mg.devices) for mg in sim.microgrids.values()) + len(sim.relays)
            print(f"{args.scenario}: ok, {len(sim.microgrids)} microgrids, {n} devices")
            return 0
    except (ScenarioError, MapError) as exc:
        exit_with_config_error("firmware-sim", ConfigError(f"{args.scenario}: {exc}"))
    except ConfigError as exc:
        exit_with_config_error("firmware-sim", exc)

    from .app import run as run_app

    try:
        return asyncio.run(run_app(scenario, args.speed, args.endpoints_json, args.control_port))
    except (ScenarioError, MapError) as exc:
        exit_with_config_error("firmware-sim", ConfigError(f"{args.scenario}: {exc}"))
    except OSError as exc:
        print(f"firmware-sim: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

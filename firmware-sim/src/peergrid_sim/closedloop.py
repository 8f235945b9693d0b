"""The testbed's closed loop: the configs of the MGMCs and the DSO node, and how the run kept its clock.

Promises: the lab's keys and geneses are `lab_chains`' (`LabChains`, `SettleByBoth`, re-exported here);
`LoopTiming.dayahead` (off by default) turns on the MGMCs' day-ahead session and forward trades
(`market.dayahead`), `LoopTiming.guard` (None by default) their owner guard (`OwnerGuard`: `market.rationality`,
`market.forecast` market, `market.risk_allowance`). With a settle-by-both MGMC genesis the DSO node's config gets its `disputes` section
(where the market intervals lie on the wall clock and how the MGMCs bucket their sealed readings), so it
settles a disputed trade from both parties' PCC readings, and names the lab's `tariff.yaml` (`tariff_file`),
so the DSO node posts each MG's cover prices as `market.tariff`. `edge_config` and `dso_node_config` return
the YAML documents the daemons load (each edge's /metrics on a free loopback port, `lab_metrics`);
`edge_devices` the MGMCs' device entries with each DER's safe state. `quiesced(loop, bed)`, the end of a run,
lives in `quiesce` (re-exported here). The PCC meters sign their readings: `pcc_meter_seeds` gives each MG's
one Modbus meter a `key_seed` (the lab's `lab_meter_seed`, kept beside its keys) and `meter_keys` the public
keys the DSO node's config enrols (`mgs.<mg>.meter_key`), so the DSO counts only meter-signed readings of
those MGs (dso-server `sealed_readings.SigningMeters`). Assumes the controller's scenario reader accepts the
firmware-sim scenario. Starts nothing.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peergrid_ledger.meter_signing import meter_keypair
from peergrid_sim.lab_chains import CREDIT_LIMIT as CREDIT_LIMIT
from peergrid_sim.lab_chains import DSO_ITERATIONS as DSO_ITERATIONS
from peergrid_sim.lab_chains import TARIFF_FILE as TARIFF_FILE
from peergrid_sim.lab_chains import LabChains as LabChains
from peergrid_sim.lab_chains import SettleByBoth as SettleByBoth
from peergrid_sim.lab_chains import write_tariff_file as write_tariff_file
from peergrid_sim.lab_metrics import edge_metrics_settings
from peergrid_sim.quiesce import HALT_FILE as HALT_FILE
from peergrid_sim.quiesce import halt_file as halt_file
from peergrid_sim.quiesce import quiesced as quiesced
from peergrid_sim.quiesce import unsettled_in_records as unsettled_in_records


@dataclass(frozen=True)
class OwnerGuard:
    """The lab edges' intraday individual-rationality guard (edge `market.rationality`, `market.forecast`,
    `market.risk_allowance`; off by default): every MGMC plans on the market's price forecast and keeps its
    owner's day within its conventional cost plus `risk_allowance` (strict) or trades only what the
    conventional alternative would (trades). The edge's config refuses an allowance without strict."""

    rationality: str = "strict"  # "strict" | "trades"
    risk_allowance: float = 0.0  # currency per day, every MG alike

    def market(self) -> dict[str, Any]:
        """The edge config's `market` keys it sets."""
        return {"rationality": self.rationality, "forecast": "market", "risk_allowance": self.risk_allowance}


@dataclass(frozen=True)
class LoopTiming:
    t0: float  # wall time the first interval starts
    interval_s: float
    first_interval: int
    intervals: int
    block_period_ms: int = 200
    # the MGMCs run the day-ahead exchange session before the first interval and trade the intervals its
    # clear closed by their forward trades (edge `market.dayahead`); needs an MGMC genesis with the exchange
    # contract (a lab directory made before it has none: the session is refused there and the MGMCs trade
    # intraday as before)
    dayahead: bool = False
    # the MGMCs' owner guard (`OwnerGuard`); None: the edge's default, rationality off and no forecast
    guard: OwnerGuard | None = None


# The safe state of each DER when no MGMC is in charge (its schedule lapsed, or the daemon died and the device's
# own watchdog, fed every dispatch tick, ran out after `revert_s` device seconds): batteries hold 0 W, gensets
# stop (grid-connected, the feeder carries the load; an unsupervised genset only burns fuel), PV is capped at
# PV_SAFE_SHARE of its rating (the German EEG "70 % rule" for PV that nobody can curtail remotely), and
# sheddable loads stay connected.
PV_SAFE_SHARE = 0.7


def _control(nature: str, params: dict[str, float], revert_s: float = 3600.0) -> dict[str, Any] | None:
    if nature == "pv":
        rating = float(params.get("rating_w", 0.0))
        return {"safe_w": round(PV_SAFE_SHARE * rating) if rating else None, "revert_s": revert_s}
    if nature == "battery":
        return {"safe_w": 0.0, "revert_s": revert_s}
    if nature == "genset":
        return {"min_w": 0.0, "safe_on": False, "revert_s": revert_s}
    if nature == "load":
        return {"sheddable": float(params.get("sheddable_w", 0.0)) > 0, "safe_on": True}
    return None


def edge_devices(
    endpoints: list[dict[str, Any]], scenario: Any, revert_s: float = 3600.0
) -> dict[str, list[dict[str, Any]]]:
    """Per MG, the edge device entries for every device firmware-sim serves (Modbus TCP, RTU, MQTT)."""
    natures = {"pv": "pv", "battery": "battery", "genset": "genset", "load": "load", "meter": "meter"}
    params = {(mg.name, d.name): dict(d.params) for mg in scenario.microgrids for d in mg.devices}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for ep in endpoints:
        nature = natures.get(str(ep.get("kind")))
        if ep.get("mg") is None or nature is None:
            continue
        mg, name = str(ep["mg"]), str(ep["device"])
        entry: dict[str, Any] = {"name": name, "nature": nature, "timeout_s": 0.5}
        if ep.get("protocol") == "modbus-tcp":
            entry.update(
                protocol="modbus-tcp",
                host=ep["host"],
                port=int(ep["port"]),
                unit_id=int(ep.get("unit_id") or 1),
            )
        elif ep.get("protocol") == "modbus-rtu":
            entry.update(protocol="modbus-rtu", serial_port=str(ep["port"]), unit_id=int(ep.get("unit_id") or 1),
                         baudrate=int(ep.get("baudrate") or 19200))  # fmt: skip
        elif ep.get("protocol") == "mqtt":
            entry.update(protocol="mqtt", topic=ep.get("topic"))
        else:
            continue
        control = _control(nature, params.get((mg, name), {}), revert_s)
        if control is not None:
            entry["control"] = {k: v for k, v in control.items() if v is not None}
        grouped.setdefault(mg, []).append(entry)
    return grouped


def dso_wait_s(timing: LoopTiming, mgs: int) -> float:
    """How long the DSO waits for the other injections after the first: an interval, and longer with many MGs
    sharing the lab's cores (at 30 MGs bargaining took up to three intervals, and an injection the DSO does not
    wait for counts as zero). A dead MGMC costs the DSO this much per interval."""
    return max(3.0, timing.interval_s * max(1.0, mgs / 10))


def rebargain_wait_s(timing: LoopTiming, mgs: int) -> float:
    """How long the DSO waits for one re-bargaining (reopen, rounds, close, revised injections): about what
    the first bargaining takes, twice the DSO's injection wait."""
    return 2 * dso_wait_s(timing, mgs) + 5.0


def edge_config(
    chains: LabChains, mg: str, feeder: str, broker: tuple[str, int], data_dir: Path, devices: list[dict[str, Any]],
    scenario_path: Path, timing: LoopTiming, records: Path, dso_api_url: str | None = None,
    meter_key: tuple[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """An MGMC's config; `dso_api_url`: where it posts its sealed PCC readings for a disputed trade;
    `meter_key`: (its PCC meter's device name, the meter's public key in hex, `meter_keys`), given to that
    device so the edge verifies each poll's signed reading and shows its meter's clock offset (/metrics), as the
    DSO enrols it; a device of that name missing from `devices` is an error (the key would go unused)."""
    period = timing.block_period_ms
    poll_s = poll_period_s(timing.interval_s)
    if meter_key is not None and all(d.get("name") != meter_key[0] for d in devices):
        raise ValueError(f"{mg}: no device {meter_key[0]!r} to give the meter key to")
    keyed = {} if meter_key is None else {meter_key[0]: {"meter_key": meter_key[1]}}
    return {
        "node_id": f"mgmc-{mg}",
        "mg": mg,
        "feeder": feeder,
        # back within a phase timeout of its broker (or its cable: test_faults' mg3) returning, not paho's 10 s
        "broker": {
            "host": broker[0],
            "port": broker[1],
            "keepalive_s": 5,
            "reconnect_max_s": phase_timeout_s(timing.interval_s),
        },
        "data_dir": str(data_dir),
        "health_period_s": poll_s,
        "metrics": edge_metrics_settings(),  # each lab edge's /metrics, on loopback (`lab_metrics`)
        "devices": [{**d, "poll_interval_s": poll_s, **keyed.get(str(d.get("name")), {})} for d in devices],
        "dispatch": {
            "period_s": max(0.5, timing.interval_s / 3),
            "schedule_timeout_s": 4 * timing.interval_s + 30,
        },
        "ledger": {
            "key_file": str(chains.root / f"mgmc-{mg}.key"),
            "commit_interval_s": timing.interval_s,
            "halt_file": str(halt_file(records)),
            "replicas": {
                # one disk, processes killed but never the power: a vote's WAL need not be fsynced
                "mgmc": {"genesis": str(chains.mgmc_genesis), "block_period_ms": period, "wal_fsync": False},
                "dso": {"genesis": str(chains.dso_genesis), "block_period_ms": period, "wal_fsync": False},
            },
        },
        "market": {
            "scenario": str(scenario_path),
            "anonym_key_file": str(chains.root / f"anonym-{mg}.key"),
            "t0": timing.t0,
            "interval_s": timing.interval_s,
            "first_interval": timing.first_interval,
            "intervals": timing.intervals,
            "phase_timeout_s": phase_timeout_s(timing.interval_s),
            # the DSO's verdict comes after its injection wait and up to DSO_ITERATIONS re-bargainings
            "dso_timeout_s": dso_wait_s(timing, len(chains.mgs))
            + timing.interval_s
            + 10
            + DSO_ITERATIONS
            * (rebargain_wait_s(timing, len(chains.mgs)) + dso_wait_s(timing, len(chains.mgs))),
            "record_file": str(records / f"mgmc-{mg}.jsonl"),
            **(_dayahead(scenario_path) if timing.dayahead else {}),
            **(timing.guard.market() if timing.guard is not None else {}),
            **({"dso_api_url": dso_api_url} if dso_api_url else {}),
        },
    }


def poll_period_s(interval_s: float) -> float:
    """How often an MGMC polls its devices: a few polls and health reports per interval are plenty on the
    accelerated clock; 30 MGMCs polling every device each second spent their share of two cores on it."""
    return max(1.0, interval_s / 4)


def phase_timeout_s(interval_s: float) -> float:
    """An MGMC's phase timeout (`market.phase_timeout_s`): how long it waits for its peers' moves in a final
    block, and the unit the lab's own waits for the MGMCs and the DSO are counted in."""
    return max(2.0, interval_s / 3)


def settles_by_both(chains: LabChains) -> bool:
    """Whether the lab's MGMC genesis names `settle_by_both` (a lab directory made before it does not)."""
    doc = json.loads(chains.mgmc_genesis.read_text(encoding="utf-8"))
    return bool(doc.get("params", {}).get("settle_by_both"))


def disputes_section(timing: LoopTiming, records: Path) -> dict[str, Any]:
    """The DSO node's `disputes` settings: the MGMCs' market clock and commitment buckets as their configs say
    (`market.t0`, `market.interval_s`, `ledger.commit_interval_s`), and the longest gap between two PCC readings
    that still measures a boundary: three polls, as the MGMCs read their own (edge trader `_max_gap_ms`)."""
    return {
        "t0": timing.t0,
        "interval_s": timing.interval_s,
        "commit_interval_s": timing.interval_s,
        "max_gap_s": 3 * poll_period_s(timing.interval_s),
        # a dispute settle the chain refused or did not take in time is tried again a phase later, as the
        # MGMCs retry theirs (the DSO's default, 30 s, outlasted the lab's end)
        "retry_s": phase_timeout_s(timing.interval_s),
        "record_file": str(records / "disputes.jsonl"),
    }


def _dayahead(scenario_path: Path) -> dict[str, bool]:
    """The MGMCs' day-ahead settings: the session, with the genset phases when any MG of the scenario has a
    genset (a setting every MGMC must share; whether any MG has one is not on the chain)."""
    from peergrid_controller.scenario import load_scenario

    gensets = any(mg.gensets for mg in load_scenario(scenario_path).microgrids)
    return {"dayahead": True, "dayahead_gensets": gensets}


def dso_node_config(
    chains: LabChains, feeder: str, broker: tuple[str, int], data_dir: Path, scenario: Any,
    endpoints_file: Path, timing: LoopTiming, records: Path, case: str = "case33bw", ties: Path | None = None,
    dso_extra: dict[str, Any] | None = None, meter_keys: Mapping[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The DSO node's settings; `meter_keys`: MG -> its signing PCC meter's public key (hex, `meter_keys`),
    enrolled as `mgs.<mg>.meter_key`; each MG's connection capacity (`LabChains.capacity_kw`: its scenario's
    limits, else its devices' rating, `lab_chains.connection_kw`) as `mgs.<mg>.capacity_kw`."""
    buses = {mg.name: mg.bus for mg in scenario.microgrids}
    signing = meter_keys or {}
    return {
        "key_file": str(chains.root / "dso.key"),
        "feeder": feeder,
        "broker_host": broker[0],
        "broker_port": broker[1],
        "dso_chain": {
            "genesis": str(chains.dso_genesis),
            "data_dir": str(data_dir / "dso.db"),
            "block_period_ms": timing.block_period_ms,
            "round_timeout_ms": 1500,
        },
        # the DSO follows the MGMC chain without voting: its `dso` key there reopens intervals (market.reopen)
        "mgmc_chain": {
            "genesis": str(chains.mgmc_genesis),
            "data_dir": str(data_dir / "mgmc.db"),
            "block_period_ms": timing.block_period_ms,
            "round_timeout_ms": 1500,
        },
        "case": case,
        **({"ties": str(ties)} if ties is not None else {}),
        "mgs": {
            mg: {
                "node": chains.nodes[mg].public.hex(),
                "anonym": chains.anonyms[mg].public.hex(),
                "bus": buses[mg],
                **({"meter_key": signing[mg]} if mg in signing else {}),
                **({"capacity_kw": chains.capacity_kw[mg]} if mg in chains.capacity_kw else {}),
            }
            for mg in chains.mgs
        },
        "relays_file": str(endpoints_file),
        "first_interval": timing.first_interval,
        "intervals": timing.intervals,
        "wait_s": dso_wait_s(timing, len(chains.mgs)),
        "max_iterations": DSO_ITERATIONS,
        "rebargain_wait_s": rebargain_wait_s(timing, len(chains.mgs)),
        "record_file": str(records / "dso.jsonl"),
        **({"disputes": disputes_section(timing, records)} if settles_by_both(chains) else {}),
        **(_tariff(chains) if settles_by_both(chains) else {}),
        **(dso_extra or {}),
        "status_file": str(data_dir / "ledger-status.json"),
        "halt_file": str(halt_file(records)),  # it halts with the MGMCs, at the block period
    }


METER_SEED_FILE = "meter-seed"  # in the lab's keys directory: the seed of its PCC meters' keys
METER_SEEDS = 2**53  # firmware-sim's key_seed range (a whole number a YAML float still holds exactly)


def lab_meter_seed(root: Path) -> int:
    """The lab's meter seed, kept in `root` (the lab's keys directory) as one decimal line: made at random the
    first time, read ever after, so a second start of a lab directory signs with the meter keys its DSO
    config enrols, and whoever holds the directory derives them again. A file that holds no whole number in
    0..2**53-1 is refused (`ValueError` naming it), never replaced: the meters would sign with new keys."""
    path = root / METER_SEED_FILE
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{secrets.randbelow(METER_SEEDS)}\n", encoding="ascii")
        os.replace(tmp, path)  # never half a seed: a reader sees the whole line or no file
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not (text.isascii() and text.isdigit() and int(text) < METER_SEEDS):
        raise ValueError(
            f"{path}: the lab's meter seed must be a whole number in 0..2**53-1, not {text[:40]!r}"
        )
    return int(text)


def pcc_meter_seeds(scenario: Any, seed: int) -> dict[str, tuple[str, int]]:
    """MG -> (its PCC meter's device name, the `key_seed` it signs with) for every MG of the firmware-sim
    `scenario` whose PCC meter can sign: its device of kind meter (the scenario allows one), read over Modbus
    (an MQTT meter's telemetry carries no signed reading). Its key_seed is the scenario's own where it gives
    one, else the lab's `seed` (`meter_keypair` mixes in the MG's and the meter's names: one seed, a key per
    meter). A meterless MG is left out: nothing of it signs, and the DSO enrols no key for it."""
    found: dict[str, tuple[str, int]] = {}
    for mg in scenario.microgrids:
        for meter in (d for d in mg.devices if d.kind == "meter" and d.protocol != "mqtt"):
            own = meter.params.get("key_seed")
            found[mg.name] = (meter.name, seed if own is None else int(own))
    return found


def meter_keys(seeds: Mapping[str, tuple[str, int]]) -> dict[str, str]:
    """MG -> its PCC meter's public key (hex) from `pcc_meter_seeds`: the key the emulated meter signs with
    (firmware-sim `meter_signer`, the same derivation), for the DSO node's `mgs.<mg>.meter_key`."""
    return {mg: meter_keypair(seed, mg, device).public.hex() for mg, (device, seed) in seeds.items()}


def _tariff(chains: LabChains) -> dict[str, Any]:
    """The DSO node's cover prices and the interval length its tariff file is checked against."""
    if chains.tariff_file is None:
        return {}
    return {"tariff_file": str(chains.tariff_file), "interval_minutes": chains.interval_minutes}


def slot_of(timing: LoopTiming, t: int) -> float:
    """The wall time interval t's slot starts: t0 + (t - first) * interval_s."""
    return timing.t0 + (t - timing.first_interval) * timing.interval_s


def pacing(timing: LoopTiming, t: int, starts: list[float], switched: float | None) -> dict[str, Any]:
    """Interval t against its slot on the accelerated clock, [t0 + k * interval_s, t0 + (k + 1) * interval_s):
    how late the first MGMC started it, when the DSO's switching was done, and by how much that overran the
    slot's end (0 when it fitted). The loop catches up rather than skips (docs/closed-loop.md)."""
    slot = slot_of(timing, t)
    start = min(starts) if starts else None
    done = None if switched is None else switched - slot
    return {
        "interval": t,
        "slot_start": slot,
        "started_late_s": None if start is None else round(max(0.0, start - slot), 2),
        "switched_after_s": None if done is None else round(done, 2),
        "overrun_s": None if done is None else round(max(0.0, done - timing.interval_s), 2),
    }


def pacing_text(p: dict[str, Any]) -> str:
    """The summary line's pacing part: `on time` or `late +x s`, and `OVERRAN +y s` past the slot's end."""
    late, over = p.get("started_late_s"), p.get("overrun_s")
    text = "on time" if not late or late < 0.05 else f"late +{late:.1f} s"
    if p.get("switched_after_s") is not None:
        text += f", switched at +{p['switched_after_s']:.1f} s"
    return text + (f", OVERRAN +{over:.1f} s" if over else "")

"""review15 M1, the MG's side: the edge watches its own signing meter (`DeviceSettings.meter_key`).

The emulated signing meter over real Modbus TCP on loopback, polled by the edge's own driver through
`polling.poll_device` (the daemon's poll loop): each good poll's signed reading is verified under the key
the config names and counted by result, the meter's signed time is compared with the poll's, and a change of
state is logged once, not per poll. /metrics shows both (`exposition.meter_watch`); without a key nothing is
watched and no such family is shown. A malformed key, or one on a device that carries no signed reading, is
refused at check-config (one line, exit 2).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import edge_settings, run_for
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from peergrid_edge import modbus as edge_modbus
from peergrid_edge.clock import SystemClock
from peergrid_edge.config import DeviceSettings, EdgeSettings
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.exposition import meter_watch
from peergrid_edge.meter_signed import MeterWatch
from peergrid_edge.metrics import render
from peergrid_edge.polling import DeviceHealth, DeviceState, poll_device
from peergrid_ledger.meter_signing import meter_keypair, sign_reading
from peergrid_sim.devices import SunSpecDevice
from peergrid_sim.server import ModbusTcpServer

BIN = Path(sys.executable).parent
SEED, MG, NAME = 13, "mg1", "pcc"
KEY = meter_keypair(SEED, MG, NAME).public.hex()
OTHER_KEY = meter_keypair(SEED + 1, MG, NAME).public.hex()  # a replaced meter's old key, say


def meter(signs: bool = True, clock_off_s: float = 0.0) -> SunSpecDevice:
    params = {"rating_w": 10_000.0, **({"key_seed": float(SEED)} if signs else {})}
    device = SunSpecDevice.create(NAME, MG, "meter", 1, params)
    device.model.export_wh, device.model.import_wh = 1234.0, 56.0
    if device.signer is not None and clock_off_s:
        device.signer.wall = lambda: time.time() + clock_off_s  # the meter's own real-time clock
    return device


def watched_polls(device: SunSpecDevice, n: int, **fields: object) -> DeviceState:
    """`n` polls of `device` through the daemon's poll loop; the device's state at the end."""

    async def run() -> DeviceState:
        server = ModbusTcpServer("127.0.0.1", 0, {1: device})
        port = await server.start()
        config = DeviceSettings.model_validate(
            {
                "name": NAME,
                "nature": "meter",
                "port": port,
                "timeout_s": 2,
                "poll_interval_s": 0.1,  # the fastest PCC meter poll the DSO counts (meter_signing.MIN_POLL_MS)
                **fields,
            }
        )
        driver = edge_modbus.SunSpecModbusDriver(config)
        state = DeviceState(config, DeviceHealth.for_device(config))
        stopping = asyncio.Event()

        def on_poll(state: DeviceState) -> None:
            device.mark_stale()  # a fresh render (and signature) for the next read
            if state.polls >= n:
                stopping.set()

        try:
            await asyncio.wait_for(poll_device(driver, state, SystemClock(), stopping, on_poll), 30)
        finally:
            driver.close()
            await server.close()
        return state

    return asyncio.run(run())


def flipped(signature: str) -> str:
    """The signature with its first byte's bits flipped: a garbled register, never the same signature."""
    return f"{int(signature[:2], 16) ^ 0xFF:02x}" + signature[2:]


def watch_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "peergrid.edge.poll"]


def test_good_polls_count_ok_and_the_offset_is_near_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = watched_polls(meter(), 4, meter_key=KEY)
    assert state.health.errors_total == 0
    assert state.watch is not None
    assert state.watch.counts == {"ok": 4, "bad_signature": 0, "unsigned": 0}
    # signed while the poll ran: after its start (less the meter's ms rounding), within its duration
    assert state.watch.offset_s is not None and -0.001 <= state.watch.offset_s <= state.latencies[-1] + 0.001
    assert not state.watch.off_clock and watch_lines(caplog) == []
    text = render(meter_watch([state]))
    assert 'peergrid_edge_meter_signed_total{device="pcc",result="ok"} 4' in text
    assert 'peergrid_edge_meter_signed_total{device="pcc",result="bad_signature"} 0' in text
    assert 'peergrid_edge_meter_clock_offset_seconds{device="pcc"}' in text


def test_a_wrong_key_counts_bad_signature_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = watched_polls(meter(), 4, meter_key=OTHER_KEY)
    assert state.watch is not None
    assert state.watch.counts == {"ok": 0, "bad_signature": 4, "unsigned": 0}
    assert state.watch.offset_s is None  # no reading verified: nothing said about the meter's clock
    lines = watch_lines(caplog)
    assert len(lines) == 1 and "bad_signature" in lines[0] and "does not verify" in lines[0], lines
    text = render(meter_watch([state]))
    assert 'result="bad_signature"} 4' in text and "meter_clock_offset_seconds{" not in text


def test_a_meter_clock_set_off_shows_its_offset_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = watched_polls(meter(clock_off_s=5.0), 3, meter_key=KEY)
    assert state.watch is not None and state.watch.counts["ok"] == 3
    offset = state.watch.offset_s
    assert offset is not None and 5.0 - 0.001 <= offset <= 5.0 + state.latencies[-1] + 0.001
    lines = watch_lines(caplog)
    assert len(lines) == 1 and "+5.0 s off" in lines[0] and "bound 2 s" in lines[0], lines
    # the bound is the config's: 10 s takes a 5-s offset without a word
    caplog.clear()
    state = watched_polls(meter(clock_off_s=-5.0), 2, meter_key=KEY, meter_time_bound_s=10)
    offset = state.watch.offset_s if state.watch is not None else None
    assert offset is not None and -5.0 - 0.001 <= offset <= -5.0 + state.latencies[-1] + 0.001
    assert state.watch is not None and not state.watch.off_clock and watch_lines(caplog) == []


def test_a_meter_that_does_not_sign_counts_unsigned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = watched_polls(meter(signs=False), 3, meter_key=KEY)
    assert state.watch is not None
    assert state.watch.counts == {"ok": 0, "bad_signature": 0, "unsigned": 3}
    lines = watch_lines(caplog)
    assert len(lines) == 1 and "unsigned" in lines[0] and "64204" in lines[0], lines


def test_without_a_key_nothing_is_watched_and_no_family_is_shown() -> None:
    state = watched_polls(meter(), 2)
    assert state.watch is None and state.polls == 2
    assert meter_watch([state]) == []


def test_each_change_of_state_is_one_line_back_and_forth() -> None:
    """The watch alone, on decoded points: ok -> bad -> bad -> ok logs a warning and an info, nothing more;
    a clock drifting out and back likewise."""
    signer = meter().signer
    assert signer is not None
    now = time.time()

    def points(off_s: float = 0.0, garble: bool = False) -> dict[str, dict[str, object]]:
        signer.wall = lambda: now + off_s
        r = signer.readings({"export_wh": 10.0, "import_wh": 2.0})
        sig = r["signature"] if not garble else flipped(r["signature"])
        block = {"Sig": sig, "MtrId": r["signed_meter"], "Tms": r["signed_ms"]}
        return {"64204": {**block, "TotWhExp": r["signed_export_wh"], "TotWhImp": r["signed_import_wh"]}}

    watch = MeterWatch.from_hex(KEY, 2.0)
    levels = [[level for level, _ in watch.observe(p, now)] for p in
              (points(), points(garble=True), points(garble=True), points(), points(3.0), points(3.5), points())]  # fmt: skip
    assert levels == [[], [logging.WARNING], [], [logging.INFO], [logging.WARNING], [], [logging.INFO]]
    assert watch.counts == {"ok": 5, "bad_signature": 2, "unsigned": 0}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"nature": "meter", "meter_key": KEY.upper()}, "meter_key"),
        ({"nature": "meter", "meter_key": KEY[:-2]}, "meter_key"),
        ({"nature": "pv", "meter_key": KEY}, "meter_key is for a Modbus SunSpec meter"),
        ({"nature": "meter", "protocol": "mqtt", "meter_key": KEY}, "not a meter over mqtt"),
        ({"nature": "meter", "meter_key": KEY, "meter_time_bound_s": 0}, "meter_time_bound_s"),
    ],
)
def test_a_bad_meter_key_is_refused_at_check_config(
    tmp_path: Path, entry: dict[str, object], expected: str
) -> None:
    with pytest.raises(ValidationError, match=expected):
        DeviceSettings.model_validate({"name": "pcc", **entry})
    config = tmp_path / "edge.yaml"
    fields = ", ".join(f"{k}: {json.dumps(v)}" for k, v in entry.items())  # JSON: YAML reads hex as hex
    config.write_text(f"node_id: n1\nmg: mg1\ndevices:\n  - {{name: pcc, {fields}}}\n")
    result = subprocess.run(
        [str(BIN / "peergrid-edge"), "check-config", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr


def test_a_good_meter_key_passes_check_config(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"node_id: n1\nmg: mg1\ndevices:\n  - {{name: pcc, nature: meter, meter_key: '{KEY}'}}\n"
    )
    result = subprocess.run(
        [str(BIN / "peergrid-edge"), "check-config", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_daemon_shows_its_watched_meter_on_metrics(run_sim: Any, tmp_path: Path) -> None:
    """The whole daemon (its own poll loop and /metrics text) on firmware-sim's signing meter: the watched
    meter's families, ok counting up, and no series for the unwatched PV."""
    sim = run_sim(
        [{"name": "pv1", "kind": "pv"}, {"name": "meter", "kind": "meter", "params": {"key_seed": SEED}}]
    )
    base = edge_settings(tmp_path, sim).model_dump(mode="json")
    key = meter_keypair(SEED, "mg1", "meter").public.hex()
    for device in base["devices"]:
        if device["name"] == "meter":
            device["meter_key"] = key
    daemon = EdgeDaemon(EdgeSettings.model_validate(base))

    async def body() -> str:
        watch = daemon.states["meter"].watch
        assert watch is not None and daemon.states["pv1"].watch is None
        for _ in range(100):
            if watch.counts["ok"] >= 2:
                break
            await asyncio.sleep(0.1)
        return daemon.metrics_text()

    try:
        text = asyncio.run(run_for(daemon, body))
    finally:
        daemon.store.close()
    lines = [line for line in text.splitlines() if line.startswith("peergrid_edge_meter_")]
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        'peergrid_edge_meter_signed_total{device="meter",result="ok"}',
        'peergrid_edge_meter_signed_total{device="meter",result="bad_signature"}',
        'peergrid_edge_meter_signed_total{device="meter",result="unsigned"}',
        'peergrid_edge_meter_clock_offset_seconds{device="meter"}',
    ]
    values = [float(line.rsplit(" ", 1)[1]) for line in lines]
    # the offset: signed within the poll, which its own bound ends (timeout_s 0.5 x 4, no retries)
    assert values[0] >= 2 and values[1:3] == [0, 0] and -0.001 <= values[3] <= 2.0, lines


POLL = st.one_of(
    st.tuples(st.just("ok"), st.sampled_from([0.0, 0.5, -1.9, 2.5, -3.0, 3600.0])),
    st.tuples(st.sampled_from(["garbled", "foreign", "unsigned", "no_block"]), st.just(0.0)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(POLL, max_size=12))
def test_the_watch_logs_each_change_of_state_once_whatever_the_polls(polls: list[tuple[str, float]]) -> None:
    """Any sequence of polls: every poll counted under its result; a warning exactly when the result turns
    bad or unsigned or the verified offset passes the bound, an info when either comes back, nothing else;
    the offset is the last verified one's."""
    ours, theirs = meter_keypair(SEED, MG, NAME), meter_keypair(SEED + 1, MG, NAME)
    now = 1_800_000_000.0
    watch = MeterWatch.from_hex(KEY, 2.0)
    result, off, offset = None, False, None
    for kind, off_s in polls:
        signed = sign_reading(
            theirs if kind == "foreign" else ours, "mg1-pcc", round((now + off_s) * 1000), 7, 3
        )
        sig = signed.signature.hex()
        block: dict[str, object] = {"Sig": flipped(sig) if kind == "garbled" else sig, "MtrId": signed.meter,
                                    "Tms": signed.at_ms, "TotWhExp": 7, "TotWhImp": 3}  # fmt: skip
        if kind == "unsigned":
            block["Sig"] = None  # not implemented
        points = {} if kind == "no_block" else {"64204": block}
        got = watch.observe(points, now)
        expect = []
        new = {"ok": "ok", "garbled": "bad_signature", "foreign": "bad_signature"}.get(kind, "unsigned")
        if new != result:
            if new != "ok":
                expect.append(logging.WARNING)
            elif result is not None:
                expect.append(logging.INFO)
            result = new
        if new == "ok":
            offset = off_s
        if offset is not None and (abs(offset) > 2.0) != off:
            off = not off
            expect.append(logging.WARNING if off else logging.INFO)
        assert [level for level, _ in got] == expect, (kind, off_s, got)
        assert (
            watch.offset_s == pytest.approx(offset, abs=0.001)
            if offset is not None
            else watch.offset_s is None
        )
    kinds = [k for k, _ in polls]
    assert watch.counts == {
        "ok": kinds.count("ok"),
        "bad_signature": kinds.count("garbled") + kinds.count("foreign"),
        "unsigned": kinds.count("unsigned") + kinds.count("no_block"),
    }

"""External validation: `mbpoll`, a real Modbus master, reads and writes registers and coils over TCP and RTU."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("mbpoll") is None, reason="mbpoll (Debian package) not installed"
)


def mbpoll(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mbpoll", "-1", "-0", "-o", "2", *args], capture_output=True, text=True, timeout=20
    )


def values(output: str) -> dict[int, int]:
    return {int(a): int(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", output, re.M)}


def test_mbpoll_reads_suns_marker_and_writes_curtailment(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv1", "mg1")
    out = mbpoll("-a", "1", "-r", "40000", "-c", "4", "-p", str(e["port"]), e["host"])
    assert out.returncode == 0, out.stderr
    assert values(out.stdout) == {40000: 0x5375, 40001: 0x6E53, 40002: 1, 40003: 66}

    point = sim.call(lambda: sim.app.sim.device("mg1/pv1").image.by_key["123.WMaxLimPct"].address)
    out = mbpoll("-a", "1", "-r", str(point), "-p", str(e["port"]), e["host"], "55")
    assert out.returncode == 0, out.stderr
    assert sim.call(lambda: sim.app.sim.device("mg1/pv1").model.limit_pct) == 55

    read_only = sim.call(lambda: sim.app.sim.device("mg1/pv1").image.by_key["103.W"].address)
    out = mbpoll("-a", "1", "-r", str(read_only), "-p", str(e["port"]), e["host"], "7")
    assert out.returncode != 0
    assert "Illegal data address" in out.stdout + out.stderr


def test_mbpoll_operates_a_relay_through_its_coils(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("tie33")
    port = ["-a", "1", "-p", str(e["port"]), e["host"]]
    status = mbpoll("-t", "1", "-r", "0", "-c", "6", *port)
    assert values(status.stdout) == {0: 0, 1: 1, 2: 0, 3: 0, 4: 0, 5: 0}  # open, not locked, no interlock

    out = mbpoll("-t", "0", "-r", "0", *port, "1")  # close command coil
    assert out.returncode == 0, out.stderr
    status = mbpoll("-t", "1", "-r", "0", "-c", "2", *port)
    assert values(status.stdout) == {0: 1, 1: 0}
    counter = mbpoll("-t", "3:int", "-B", "-r", "0", *port)
    assert values(counter.stdout) == {0: 1}


def test_mbpoll_reads_an_rtu_device_on_the_pty(run_sim, all_kinds):
    sim = run_sim(all_kinds)
    e = sim.endpoint("pv2", "mg1")
    out = mbpoll(
        "-m", "rtu", "-P", "none", "-b", "19200", "-a", str(e["unit_id"]), "-r", "40000", "-c", "2", e["port"]
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert values(out.stdout) == {40000: 0x5375, 40001: 0x6E53}

"""The README's Modbus/TCP Security commands: `firmware-sim pki` and `run --relays-tls` as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver
from peergrid_dso.drivers.relay_tls import RelayTls, relay_endpoints
from peergrid_dso.services.switching import RelayError
from peergrid_ledger.tied import tied_popen

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios"
CLI = [sys.executable, "-m", "peergrid_sim.cli"]


def test_pki_then_ieee33_with_tls_relays(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    made = subprocess.run(
        [*CLI, "pki", str(pki), "--client", "dso:operator", "--client", "console:viewer"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "CN=dso role=operator" in made.stdout
    assert (pki / "dso.key").stat().st_mode & 0o077 == 0
    endpoints_json = tmp_path / "ep.json"
    proc = tied_popen(
        [*CLI, "run", str(SCENARIOS / "ieee33.yaml"), "--endpoints-json", str(endpoints_json),
         "--relays-tls", str(pki / "ca.crt"), str(pki / "broker.crt"), str(pki / "broker.key")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not endpoints_json.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        entries = json.loads(endpoints_json.read_text())
        relays = [e for e in entries if e["kind"] == "relay"]
        assert len(relays) == 37 and {e["protocol"] for e in relays} == {"modbus-tls"}
        assert {e["protocol"] for e in entries if e["kind"] == "pv"} <= {"modbus-tcp", "modbus-rtu", "mqtt"}
        operator = ModbusRelayDriver(
            relay_endpoints(
                entries, RelayTls(ca_file=pki / "ca.crt", cert_file=pki / "dso.crt", key_file=pki / "dso.key")
            )
        )
        viewer = ModbusRelayDriver(
            relay_endpoints(
                entries,
                RelayTls(ca_file=pki / "ca.crt", cert_file=pki / "console.crt", key_file=pki / "console.key"),
            )
        )
        try:
            assert operator.status(33).closed is False  # a tie line, open
            assert viewer.status(7).closed is True
            with pytest.raises(RelayError, match="Modbus exception 1"):
                viewer.command(7, close=False)
        finally:
            operator.close()
            viewer.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0


def test_relays_tls_with_missing_files_is_a_one_line_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CLI, "run", str(SCENARIOS / "ieee33.yaml"), "--relays-tls", *(str(tmp_path / n) for n in ("a", "b", "c"))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "modbus_tls: cannot load" in out.stderr

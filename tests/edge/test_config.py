"""The edge config: cross-field mistakes are one line and exit 2, like every other config error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peergrid_edge.telemetry import parse_telemetry

BIN = Path(sys.executable).parent
BASE = "node_id: n1\nmg: mg1\n"


@pytest.mark.parametrize(
    "devices,expected",
    [
        ("devices:\n  - {name: pv1, nature: pv, protocol: modbus-rtu}\n", "modbus-rtu needs serial_port"),
        (
            "devices:\n  - {name: a, nature: pv}\n  - {name: a, nature: load}\n",
            "device name 'a' is used twice",
        ),
        ("devices:\n  - {name: b, nature: pv, control: {min_w: 5, max_w: 1}}\n", "min_w 5.0 is above max_w"),
        ("devices:\n  - {name: c, nature: wind}\n", "devices.0.nature"),
        ("broker: {ca_file: /ca.pem, cert_file: /c.pem}\n", "cert_file and key_file go together"),
    ],
)
def test_config_mistakes_exit_2_with_one_line(tmp_path: Path, devices: str, expected: str) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(BASE + devices)
    result = subprocess.run(
        [str(BIN / "peergrid-edge"), "check-config", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr


def test_telemetry_parsing_maps_names_to_quantities_and_refuses_junk() -> None:
    message = (
        b'{"t": 1, "seq": 2, "readings": {"ac_w": 1200.5, "soc_pct": 40, "state": "x", "connected": true}}'
    )
    assert parse_telemetry(message) == {"power_w": 1200.5, "soc_pct": 40.0}
    for junk in (b"[]", b'{"readings": 3}', b"\xff"):
        with pytest.raises((ValueError, UnicodeDecodeError)):
            parse_telemetry(junk)

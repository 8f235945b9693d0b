"""The edge config: cross-field mistakes are one line and exit 2, like every other config error; the trading
agent's rounds per bargaining and their default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from peergrid_controller.moves import BargainingConfig
from peergrid_edge.config import EdgeSettings, MarketSettings
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


# ------------------------------------------------------------------------- the trading agent's rounds (C6)

MARKET = """ledger:
  replicas:
    mgmc: {genesis: m.json, block_period_ms: BLOCK}
    dso: {genesis: d.json}
market: {scenario: s.yaml, anonym_key_file: a.key, t0: 0, interval_s: INTERVAL ROUNDS}
"""


def market_config(interval_s: float, block_ms: int = 200, rounds: str = "") -> str:
    extra = f", max_rounds: {rounds}" if rounds else ""
    return BASE + MARKET.replace("BLOCK", str(block_ms)).replace("INTERVAL", f"{interval_s:g}").replace(
        " ROUNDS", extra
    )


def settings_of(text: str) -> EdgeSettings:
    return EdgeSettings.model_validate(yaml.safe_load(text))


def test_the_default_cap_is_the_simulations_where_the_interval_holds_it_and_what_fits_on_a_fast_clock() -> (
    None
):
    # a real 15-min interval at 200-ms blocks: the simulation's cap (the old default was 12)
    assert settings_of(market_config(900)).market.max_rounds == BargainingConfig().max_rounds == 50
    # the lab's accelerated clock: 6-s intervals, 150-ms blocks, two blocks a round at the fastest
    assert settings_of(market_config(6, 150)).market.max_rounds == 20
    assert (
        settings_of(market_config(0.5, 200)).market.max_rounds == 2
    )  # never fewer than a round and its repeat
    # an owner's explicit cap is kept when the interval can hold it
    assert settings_of(market_config(900, 200, "30")).market.max_rounds == 30
    assert settings_of(market_config(6, 150, "20")).market.max_rounds == 20


def test_market_settings_alone_leave_the_cap_to_the_agent() -> None:
    alone = MarketSettings(scenario=Path("s.yaml"), anonym_key_file=Path("a.key"), t0=0.0, interval_s=900.0)
    assert alone.max_rounds is None  # MarketAgent then takes BargainingConfig's 50
    assert settings_of(BASE).market is None


@pytest.mark.parametrize(
    "interval_s,block_ms,rounds,expected",
    [
        (
            900,
            200,
            "1",
            "greater than or equal to 2",
        ),  # a round that repeats the last cannot be seen: never converges
        (900, 200, "0", "greater than or equal to 2"),
        (900, 200, "-3", "greater than or equal to 2"),
        (900, 200, "500", "less than or equal to 200"),
        (900, 200, "many", "valid integer"),
        (900, 200, "12.5", "fractional part"),
        (
            6,
            150,
            "21",
            "market.max_rounds 21 cannot be played within interval_s 6: a round is at least two "
            "MGMC-chain blocks (block_period_ms 150), so at most 20 fit",
        ),
    ],
)
def test_bad_max_rounds_exit_2_with_one_line(
    tmp_path: Path, interval_s: float, block_ms: int, rounds: str, expected: str
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(market_config(interval_s, block_ms, rounds))
    result = subprocess.run(
        [str(BIN / "peergrid-edge"), "check-config", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    with pytest.raises(ValidationError):
        settings_of(config.read_text())

"""The edge config: cross-field mistakes are one line and exit 2, like every other config error; the trading
agent's rounds per bargaining and their default."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from peergrid_controller.moves import BargainingConfig
from peergrid_edge import cli
from peergrid_edge.config import ROUNDS_SHARE, ControlSettings, EdgeSettings, MarketSettings, rounds_that_fit
from peergrid_edge.telemetry import parse_telemetry
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

BIN = Path(sys.executable).parent
BASE = "node_id: n1\nmg: mg1\n"


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """`peergrid-edge check-config --config CONFIG` in this process: the console script's `cli.main`, its exit
    status and what it wrote. A process of its own took 1.5-3 s to import per case (T10: 20 of them here);
    test_config_mistakes_exit_2_with_one_line runs the installed script itself, so a real process's one line
    and status 2 stay tested."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["check-config", "--config", str(config)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(
        ["peergrid-edge", "check-config"], code, out.getvalue(), err.getvalue()
    )


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
    mgmc: {genesis: GENESIS, block_period_ms: BLOCK}
    dso: {genesis: d.json}
market: {scenario: s.yaml, anonym_key_file: a.key, t0: 0, interval_s: INTERVAL ROUNDS}
"""


def market_config(
    interval_s: float, block_ms: int = 200, rounds: str = "", genesis: Path | None = None
) -> str:
    """An edge config with a market; `genesis`: the MGMC genesis file (default: one that is not there)."""
    extra = f", max_rounds: {rounds}" if rounds else ""
    return BASE + (
        MARKET.replace("GENESIS", str(genesis or "absent-mgmc-genesis.json"))
        .replace("BLOCK", str(block_ms))
        .replace("INTERVAL", f"{interval_s:g}")
        .replace(" ROUNDS", extra)
    )


def mgmc_genesis(tmp_path: Path, max_reopens: int, max_rounds: int = 0) -> Path:
    """A real MGMC genesis allowing `max_reopens` re-bargainings per interval (the lab's has 3) and, with
    `max_rounds`, capping each bargaining's rounds (only on a chain closing quiet books on the clock)."""
    capped = {"settle_by_both": 1, "settle_interval_ms": 900_000, "close_on_clock": 1, "close_quiet_ms": 500,
              "max_rounds": max_rounds} if max_rounds else {}  # fmt: skip
    dso = (Account(Keypair.generate().public, ("dso",)),) if max_rounds else ()  # settle_by_both needs one
    genesis = Genesis(chain="mgmc-t", time=0, authorities=(Keypair.generate().public,), accounts=dso,
                      params=Params(max_reopens=max_reopens, **capped))  # fmt: skip
    path = tmp_path / f"mgmc-genesis-{max_reopens}-{max_rounds}.json"
    path.write_text(json.dumps(genesis.to_json()))
    return path


def settings_of(text: str) -> EdgeSettings:
    return EdgeSettings.model_validate(yaml.safe_load(text))


def rounds_of(text: str) -> int | None:
    market = settings_of(text).market
    assert market is not None
    return market.max_rounds


def test_the_default_cap_is_the_simulations_where_the_interval_holds_it_and_what_fits_on_a_fast_clock(
    tmp_path: Path,
) -> None:
    lab = mgmc_genesis(tmp_path, 3)  # the first bargaining and up to three re-bargainings
    # a real 15-min interval at 200-ms blocks: the simulation's cap (the old default was 12), reopens and all
    assert rounds_of(market_config(900, genesis=lab)) == BargainingConfig().max_rounds == 50
    assert rounds_that_fit(900, 200, 4) == 421
    # the lab's accelerated clock, 6-s intervals at 200-ms blocks: four bargainings of two rounds at two blocks
    # each take 3.2 s, within 3/4 of the interval; before, 15 rounds for the first bargaining alone took it all
    assert rounds_of(market_config(6, 200, genesis=lab)) == 2
    assert rounds_of(market_config(6, 150, genesis=lab)) == 3  # 4 x 3 x 2 x 150 ms = 3.6 s of 4.5
    # a chain without re-bargaining (max_reopens 0) gives the first bargaining the 3/4 alone
    assert rounds_of(market_config(6, 150, genesis=mgmc_genesis(tmp_path, 0))) == 15
    # no genesis there yet (check-config before it is installed): the first bargaining is all it can count
    assert rounds_of(market_config(6, 150)) == 15
    # never fewer than a round and its repeat, even where they cannot fit (that clock overruns its intervals)
    assert rounds_of(market_config(0.5, 200)) == 2
    assert rounds_of(market_config(6, 600, genesis=lab)) == 2
    # an owner's explicit cap is kept when the interval can hold it
    assert rounds_of(market_config(900, 200, "30", lab)) == 30
    assert rounds_of(market_config(6, 150, "3", lab)) == 3


def test_the_default_cap_stays_within_the_chains_max_rounds_and_a_cap_above_it_is_refused(
    tmp_path: Path,
) -> None:
    capped = mgmc_genesis(tmp_path, 3, max_rounds=3)  # the chain refuses any position past round 3
    # a 15-min interval holds the simulation's 50 rounds, but the chain takes 3: the agent plays what it takes
    assert rounds_of(market_config(900, genesis=capped)) == 3
    # a cap below the chain's and the interval's is the owner's to set
    assert rounds_of(market_config(900, 200, "2", capped)) == 2
    # where the interval holds fewer than the chain allows, the interval bounds it as before
    assert rounds_of(market_config(6, 200, genesis=mgmc_genesis(tmp_path, 3, max_rounds=40))) == 2
    with pytest.raises(ValidationError, match="more than the MGMC genesis' max_rounds 3"):
        settings_of(market_config(900, 200, "4", capped))
    # through check-config too: one line, exit 2
    config = tmp_path / "capped.yaml"
    config.write_text(market_config(900, 200, "4", capped))
    result = check_config(config)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "max_rounds 3" in result.stderr, result.stderr


@given(
    st.floats(0.1, 7200, allow_nan=False),
    st.integers(50, 600_000),
    st.integers(1, 201),
)
def test_the_rounds_that_fit_leave_the_interval_its_share_and_no_more_would(
    interval_s: float, block_ms: int, bargainings: int
) -> None:
    fit = rounds_that_fit(interval_s, block_ms, bargainings)
    budget_ms = interval_s * 1000 * ROUNDS_SHARE
    assert fit >= 0
    assert bargainings * fit * 2 * block_ms <= budget_ms * (1 + 1e-12)
    assert bargainings * (fit + 1) * 2 * block_ms > budget_ms * (1 - 1e-12)


def test_market_settings_alone_leave_the_cap_to_the_agent() -> None:
    alone = MarketSettings(scenario=Path("s.yaml"), anonym_key_file=Path("a.key"), t0=0.0, interval_s=900.0)
    assert alone.max_rounds is None  # MarketAgent then takes BargainingConfig's 50
    assert settings_of(BASE).market is None


@pytest.mark.parametrize(
    "interval_s,block_ms,rounds,reopens,expected",
    [
        # a round that repeats the last cannot be seen: never converges
        (900, 200, "1", None, "greater than or equal to 2"),
        (900, 200, "0", None, "greater than or equal to 2"),
        (900, 200, "-3", None, "greater than or equal to 2"),
        (900, 200, "500", None, "less than or equal to 200"),
        (900, 200, "many", None, "must be a number (int), got 'many'"),
        (900, 200, "12.5", None, "fractional part"),
        (
            6,
            150,
            "16",
            None,
            "market.max_rounds 16 cannot be played within interval_s 6: a round is at least two MGMC-chain "
            "blocks (block_period_ms 150), and the first bargaining only (the MGMC genesis is not there to say "
            "how many re-bargainings) may use 75% of the interval (the rest is for closing, the DSO's check and "
            "dispatch), so at most 15 fit",
        ),
        (
            6,
            150,
            "4",
            3,
            "market.max_rounds 4 cannot be played within interval_s 6: a round is at least two MGMC-chain "
            "blocks (block_period_ms 150), and the first bargaining and the 3 re-bargaining(s) the MGMC genesis "
            "allows (max_reopens) may use 75% of the interval (the rest is for closing, the DSO's check and "
            "dispatch), so at most 3 fit",
        ),
        # 201 bargainings of 8 rounds at 400 ms: 643 s of the 675 s
        (
            900,
            200,
            "50",
            200,
            "and the 200 re-bargaining(s) the MGMC genesis allows (max_reopens) may use 75%",
        ),
        (900, 200, "9", 200, "so at most 8 fit"),
    ],
)
def test_bad_max_rounds_exit_2_with_one_line(
    tmp_path: Path, interval_s: float, block_ms: int, rounds: str, reopens: int | None, expected: str
) -> None:
    genesis = None if reopens is None else mgmc_genesis(tmp_path, reopens)
    config = tmp_path / "edge.yaml"
    config.write_text(market_config(interval_s, block_ms, rounds, genesis))
    result = check_config(config)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    with pytest.raises(ValidationError):
        settings_of(config.read_text())


@pytest.mark.parametrize(
    "content,expected",
    [
        (b'{"chain": "mgmc-t"', "not a genesis document"),  # half-written
        (b"[]", "not a genesis document"),
        (None, "cannot read genesis"),  # a directory where the file should be
    ],
)
def test_a_broken_mgmc_genesis_is_named_by_check_config(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    # the rounds check reads the genesis for its re-bargainings: a broken one is the config's error, which the
    # daemon would otherwise only meet when its replica starts
    genesis = tmp_path / "mgmc-genesis.json"
    if content is None:
        genesis.mkdir()
    else:
        genesis.write_bytes(content)
    config = tmp_path / "edge.yaml"
    config.write_text(market_config(900, 200, genesis=genesis))
    result = check_config(config)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr and str(genesis) in result.stderr, result.stderr
    assert genesis.exists()  # read, never touched


@pytest.mark.parametrize(
    "url,expected",
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://dso.example:8443/", "https://dso.example:8443"),  # a trailing slash would double in paths
        ("ftp://127.0.0.1", None),
        ("127.0.0.1:8080", None),
        ("http://", None),
        ("http:///api", None),
        ("http://host name", None),
    ],
)
def test_the_dso_api_url_is_an_http_url_or_a_clear_error(url: str, expected: str | None) -> None:
    # where an MGMC posts its sealed PCC readings for a disputed trade (pcc_readings.py)
    base = {"scenario": Path("s.yaml"), "anonym_key_file": Path("a.key"), "t0": 0.0, "interval_s": 900.0}
    if expected is None:
        with pytest.raises(ValueError, match="expected an http"):
            MarketSettings(**base, dso_api_url=url)  # type: ignore[arg-type]
    else:
        assert MarketSettings(**base, dso_api_url=url).dso_api_url == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_config_float_that_is_not_finite_is_an_error_naming_its_key(bad: float) -> None:
    """Every config model (ledger settings.StrictSettings) refuses NaN and Infinity: a NaN safe_w would be refused
    at every write (an alarm each tick, the device never safe), an infinite max_w bounds nothing."""
    with pytest.raises(ValidationError) as caught:
        ControlSettings(safe_w=bad)
    assert "safe_w" in str(caught.value) and "finite" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "text"), [("interval_s", "yes"), ("interval_s", '"900"'), ("max_rounds", "true")]
)
def test_a_number_spelled_as_a_bool_or_a_string_is_refused_naming_the_key(
    tmp_path: Path, key: str, text: str
) -> None:
    """R16 L1: pydantic's lax mode read YAML `yes` as 1 and a quoted "900" as 900 for a number field, though
    StrictSettings promises no silent coercion; every daemon's config (they share the base) now refuses it."""
    config = tmp_path / "edge.yaml"
    good = market_config(900, 200, "4", None)
    spelled, n = re.subn(rf"\b{key}: [0-9]+", f"{key}: {text}", good)
    assert n == 1, good
    config.write_text(spelled)
    result = check_config(config)
    assert result.returncode == 2
    assert key in result.stderr and "must be a number" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ("devices:\n  - {name: pcc, nature: meter, poll_interval_s: 0.05}\n", "polled every 0.05 s"),
        ("devices:\n  - {name: pcc, nature: meter, poll_interval_s: 0.099}\n", "polled every 0.099 s"),
        ("devices:\n  - {name: pcc, nature: meter, poll_interval_s: 0.1}\n", None),
        # the DSO bounds the PCC meter's readings only
        ("devices:\n  - {name: pv1, nature: pv, poll_interval_s: 0.05}\n", None),
    ],
)
def test_a_pcc_meter_polled_faster_than_the_dso_counts_is_refused_in_one_line(
    tmp_path: Path, devices: str, expected: str | None
) -> None:
    """review16 P1: the DSO refuses an MG whose commitment interval holds more PCC meter readings than one per
    `meter_signing.MIN_POLL_MS` (100 ms) as padding, so a meter polled faster would never count: check-config
    says so in one line naming the DSO's bound (exit 2). At the bound, and any other device, it is fine."""
    config = tmp_path / "edge.yaml"
    config.write_text(BASE + devices)
    result = check_config(config)
    if expected is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert expected in line and "one per 100 ms, peergrid_ledger.meter_signing.MIN_POLL_MS" in line, line
    assert "set poll_interval_s to 0.1 or more" in line

"""NaN and Infinity never get in (review13 F7): MQTT telemetry holding a non-finite number is malformed as a whole,
and the quality check, the plan's split and the ledger's gossip codec hold even so."""

from __future__ import annotations

import json
import logging
import math
import struct
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from peergrid_edge.config import ControlSettings, DeviceSettings
from peergrid_edge.dispatch import DeviceView
from peergrid_edge.planning import schedule_from_plan
from peergrid_edge.quality import implausible
from peergrid_edge.telemetry import MqttTelemetryDriver, NotFinite, loads_finite, parse_telemetry
from peergrid_ledger import keys
from peergrid_ledger.codec import DecodeError, decode, encode
from peergrid_ledger.tx import decode_tx, sign_tx

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "2.5e308"]

# ------------------------------------------------------------------------------------------- the parse


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("where", ["ac_w", "rating_w", "energy_wh", "unknown_reading", "t"])
def test_a_non_finite_number_anywhere_makes_the_message_malformed(literal: str, where: str) -> None:
    readings = '"ac_w": 100, "rating_w": 5000'
    if where == "t":
        raw = f'{{"t": {literal}, "readings": {{{readings}}}}}'
    else:
        raw = f'{{"t": 1, "readings": {{{readings}, "{where}": {literal}}}}}'
    with pytest.raises(ValueError, match="not a finite number"):
        parse_telemetry(raw.encode())


def test_an_integer_beyond_a_float_is_malformed_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="too large for a float"):
        parse_telemetry(b'{"readings": {"ac_w": 1' + b"0" * 400 + b"}}")


@pytest.mark.parametrize("literal", NON_FINITE)
def test_loads_finite_refuses_what_json_loads_takes(literal: str) -> None:
    doc = f'{{"a": [1, {{"b": {literal}}}]}}'
    assert not math.isfinite(json.loads(doc)["a"][1]["b"])  # Python's json takes it
    with pytest.raises(NotFinite, match=f"holds {literal}, not a finite number"):
        loads_finite(doc)
    assert loads_finite('{"a": [1, 2.5, -0.0, 10000000000000000000000]}') == {"a": [1, 2.5, -0.0, 10**22]}


def test_finite_extremes_still_parse() -> None:
    raw = b'{"readings": {"ac_w": -1.7976931348623157e308, "rating_w": 5e-324, "soc_pct": 0}}'
    assert parse_telemetry(raw) == {"power_w": -1.7976931348623157e308, "rating_w": 5e-324, "soc_pct": 0.0}


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=8)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    JSON_SCALARS | FINITE,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
NAMES = st.sampled_from(["ac_w", "rating_w", "soc_pct", "energy_wh", "mode", "other"])


@given(
    st.dictionaries(NAMES, JSON_VALUES, max_size=6),
    st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3),
)
def test_finite_telemetry_parses_to_finite_quantities(
    readings: dict[str, Any], extra: dict[str, Any]
) -> None:
    doc = {**extra, "readings": readings}
    out = parse_telemetry(json.dumps(doc, allow_nan=False).encode())
    assert all(math.isfinite(v) for v in out.values())


@given(
    st.dictionaries(NAMES, JSON_VALUES, max_size=6),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from(["a reading", "an unknown reading", "the time", "nested"]),
)
def test_any_telemetry_with_a_non_finite_number_is_refused_never_crashes(
    readings: dict[str, Any], bad: float, where: str
) -> None:
    doc: dict[str, Any] = {"readings": dict(readings)}
    if where == "a reading":
        doc["readings"]["ac_w"] = bad
    elif where == "an unknown reading":
        doc["readings"]["zz"] = bad
    elif where == "the time":
        doc["t"] = bad
    else:
        doc["meta"] = {"x": [1, {"y": bad}]}
    raw = json.dumps(doc).encode()  # Python writes NaN / Infinity / -Infinity
    with pytest.raises(ValueError, match="not a finite number"):
        parse_telemetry(raw)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_value_error(raw: bytes) -> None:
    try:
        out = parse_telemetry(raw)
    except ValueError:
        return
    assert all(math.isfinite(v) for v in out.values())


# ------------------------------------------------------------------------------------------- the driver


class FakeLink:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def subscribe(self, topic: str, handler: Any) -> None:
        self.handlers[topic] = handler


def test_the_driver_counts_logs_and_drops_non_finite_telemetry(caplog: pytest.LogCaptureFixture) -> None:
    link = FakeLink()
    driver = MqttTelemetryDriver(DeviceSettings(name="b1", nature="battery", protocol="mqtt"), link, "tel/b1")  # type: ignore[arg-type]
    driver._on_telemetry("tel/b1", b'{"readings": {"ac_w": 100, "rating_w": 5000}}')
    assert driver.latest == {"power_w": 100.0, "rating_w": 5000.0} and driver.malformed == 0
    with caplog.at_level(logging.WARNING, logger="peergrid_edge.telemetry"):
        driver._on_telemetry("tel/b1", b'{"readings": {"ac_w": 100, "rating_w": NaN}}')
        driver._on_telemetry("tel/b1", b'{"readings": {"ac_w": Infinity}}')
    assert driver.malformed == 2
    assert driver.latest == {"power_w": 100.0, "rating_w": 5000.0}  # the last good reading stays
    with caplog.at_level(logging.WARNING, logger="peergrid_edge.telemetry"):
        driver._on_telemetry("tel/b1", b"{")
    lines = [r.getMessage() for r in caplog.records if r.name == "peergrid_edge.telemetry"]
    assert len(lines) == 3 and driver.malformed == 3
    assert "b1: dropped malformed telemetry on tel/b1 (1 so far): telemetry holds NaN" in lines[0]
    assert "(2 so far): telemetry holds Infinity" in lines[1]
    assert "(3 so far): telemetry is not JSON: Expecting" in lines[2]


# ------------------------------------------------------------------------------------------- quality


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        ({"power_w": math.nan, "rating_w": 5000.0}, ["power_w nan is not a finite number"]),
        ({"power_w": 100.0, "rating_w": math.nan}, ["rating_w nan is not a finite number"]),
        ({"power_w": 100.0, "rating_w": math.inf}, ["rating_w inf is not a finite number"]),
        ({"energy_wh": -math.inf}, ["energy_wh -inf is not a finite number"]),
        ({"soc_pct": math.nan}, ["soc_pct nan is not a finite number"]),
        ({"power_w": math.inf, "rating_w": 5000.0}, ["power_w inf is not a finite number"]),
        ({"power_w": 100.0, "rating_w": -5000.0}, ["rating_w -5000 below zero"]),
        ({"power_w": 100.0, "rating_w": 0.0, "soc_pct": None}, []),
    ],
)
def test_quality_names_non_finite_quantities(reading: dict[str, float | None], expected: list[str]) -> None:
    assert implausible("battery", reading) == expected


@given(
    st.dictionaries(st.sampled_from(["power_w", "rating_w", "soc_pct", "limit_pct"]), st.floats() | st.none())
)
def test_quality_never_passes_a_non_finite_reading(reading: dict[str, float | None]) -> None:
    problems = implausible("pv", reading)
    for name, value in reading.items():
        if value is not None and not math.isfinite(value):
            assert any(p.startswith(f"{name} ") and "not a finite number" in p for p in problems)


# ------------------------------------------------------------------------------------------- the plan's split


def _view(name: str, nature: str, rating: float | None, max_w: float = 0.0) -> DeviceView:
    reading = {} if rating is None else {"rating_w": rating}
    return DeviceView(name, nature, ControlSettings(max_w=max_w), reading)


class _Plan:
    def __init__(self, battery_kw: float, pv_kw: float) -> None:
        self.battery_kw, self.genset_kw, self.genset_on = (battery_kw,), (0.0,), (False,)
        self.shed_kw, self.pv_used_kw = (0.0,), (pv_kw,)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -5000.0])
def test_one_bad_rating_never_spoils_its_siblings_share(bad: float) -> None:
    views = {v.name: v for v in (_view("b1", "battery", bad), _view("b2", "battery", 5000.0))}
    s = schedule_from_plan(_Plan(4.0, 0.0), 0, views, 1, 0.0, 60.0)
    assert s.setpoints["b1"]["power_w"] == 0.0 and s.setpoints["b2"]["power_w"] == 4000.0
    views = {v.name: v for v in (_view("b1", "battery", bad, max_w=5000.0), _view("b2", "battery", 15000.0))}
    s = schedule_from_plan(_Plan(-8.0, 0.0), 0, views, 1, 0.0, 60.0)
    assert s.setpoints["b1"]["power_w"] == -2000.0 and s.setpoints["b2"]["power_w"] == -6000.0  # b1 by max_w


def test_all_bad_ratings_split_equally_and_pv_limits_stay_finite() -> None:
    views = {v.name: v for v in (_view("pv1", "pv", math.nan), _view("pv2", "pv", math.inf))}
    s = schedule_from_plan(_Plan(0.0, 6.0), 0, views, 1, 0.0, 60.0, pv_available_kw=6.0)
    assert s.setpoints == {"pv1": {"limit_w": 3000.0}, "pv2": {"limit_w": 3000.0}}


@given(st.lists(st.floats() | st.none(), min_size=1, max_size=4), st.floats(-50, 50))
@example(
    ratings=[1.797693134862316e305], battery_kw=1.0
)  # total x rating overflowed to inf (found by Hypothesis)
@example(ratings=[1.7e308, 1.7e308], battery_kw=-3.0)  # so did the ratings' sum
def test_the_split_is_finite_whatever_the_ratings(ratings: list[float | None], battery_kw: float) -> None:
    views = {f"b{i}": _view(f"b{i}", "battery", r) for i, r in enumerate(ratings)}
    s = schedule_from_plan(_Plan(battery_kw, 0.0), 0, views, 1, 0.0, 60.0)
    shares = [sp["power_w"] for sp in s.setpoints.values()]
    assert all(math.isfinite(w) for w in shares)
    assert math.isclose(sum(shares), battery_kw * 1000.0, rel_tol=1e-9, abs_tol=1e-6)


# ------------------------------------------------------------------------------------------- ledger gossip


def _cbor_float(value: float, width: str) -> bytes:
    head = {"e": 0xF9, "f": 0xFA, "d": 0xFB}[width]
    return bytes([head]) + struct.pack(">" + width, value)


@given(st.floats(width=16), st.sampled_from(["e", "f", "d"]))
def test_the_gossip_codec_refuses_every_float(value: float, width: str) -> None:
    with pytest.raises(DecodeError, match="float or simple value"):
        decode(_cbor_float(value, width))
    with pytest.raises(DecodeError):
        decode(encode({"a": 1})[:-1] + _cbor_float(value, width))  # in place of the value 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1.5])
def test_a_transaction_with_a_float_in_its_body_does_not_decode(value: float) -> None:
    tx = sign_tx(keys.Keypair.generate(), "mgmc", "offer", 0, 1000, {"w": 7})
    assert b"aw\x07" in tx.payload
    payload = tx.payload.replace(b"aw\x07", b"aw" + _cbor_float(value, "d"))
    with pytest.raises(DecodeError, match="float or simple value"):
        decode_tx(encode([payload, tx.signature]))

"""The DSO's tariff source (dso-server `tariff.load_tariff_file`, setting `loop.tariff_file`): each MG's retail
and feed-in per interval of the day in currency per kWh, converted once to the chain's micro-units per Wh. A bad
file (missing MG, unknown MG, negative or non-finite price, wrong length, another interval length, not YAML,
missing) is a ConfigError naming the file and key when the DSO node starts, never a silent 0."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.loop_settings import IntervalNodeSettings
from peergrid_dso.tariff import CoverTariff, load_tariff_file, micro_per_wh
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError

MGS = ("mg1", "mg2")
DAY = 96


def tariff_doc(**changes: Any) -> dict[str, Any]:
    """A good file: mg1 retail 0.14 at night, 0.30 from interval 68, feed-in 0.05; mg2 its own, 0.2 and 0.04."""
    doc: dict[str, Any] = {
        "interval_minutes": 15,
        "mgs": {
            "mg1": {"retail": [0.14] * 68 + [0.30] * 28, "feed_in": [0.05] * DAY},
            "mg2": {"retail": [0.2] * DAY, "feed_in": [0.04] * DAY},
        },
    }
    doc.update(changes)
    return doc


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "tariff.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_a_good_file_gives_each_mgs_prices_in_micro_units_per_wh(tmp_path: Path) -> None:
    tariff = load_tariff_file(write(tmp_path, tariff_doc()), MGS, 15.0)
    assert tariff.per_day == DAY
    retail, feed_in = tariff.prices["mg1"]
    assert (retail[0], retail[68], feed_in[0]) == (140, 300, 50)  # 0.14 per kWh = 140 micro-units per Wh
    assert tariff.prices["mg2"][0][0] == 200 and tariff.prices["mg2"][1][95] == 40
    # chain interval t is interval t mod 96 of the day: a run over midnight wraps
    body = tariff.body("mg1", b"a" * 32, range(94, 98))
    assert body == {"account": b"a" * 32, "first_interval": 94, "retail": [300, 300, 140, 140],
                    "feed_in": [50] * 4}  # fmt: skip


def test_the_conversion_is_the_mgmcs_tick() -> None:
    from peergrid_controller.market import micro_per_wh as controller_tick

    for price in (0.0, 0.05, 0.14, 0.22, 0.30, 0.2535, 1.0, 12.3456):
        assert micro_per_wh(price) == controller_tick(price)


def without(doc: dict[str, Any], mg: str) -> dict[str, Any]:
    return {**doc, "mgs": {k: v for k, v in doc["mgs"].items() if k != mg}}


def with_entry(mg: str, side: str, values: Any) -> dict[str, Any]:
    doc = tariff_doc()
    doc["mgs"][mg] = {**doc["mgs"][mg], side: values}
    return doc


BAD = {
    "missing MG": (without(tariff_doc(), "mg2"), "'mgs': no prices for mg2"),
    "unknown MG": (
        {**tariff_doc(), "mgs": {**tariff_doc()["mgs"], "mg9": tariff_doc()["mgs"]["mg2"]}},
        "mg9 is not an MG of the loop",
    ),
    "negative price": (with_entry("mg1", "feed_in", [0.05] * 95 + [-0.01]), "'mgs.mg1.feed_in.95': -0.01 is negative"),
    "short list": (with_entry("mg2", "retail", [0.2] * 95), "'mgs.mg2.retail': expected 96 prices"),
    "long list": (with_entry("mg2", "retail", [0.2] * 97), "got 97"),
    "scalar, not a list": (with_entry("mg2", "feed_in", 0.04), "expected 96 prices (one per interval), got float"),
    "not a number": (with_entry("mg1", "retail", ["cheap"] * DAY), "'cheap' is not a price"),
    "not finite": (with_entry("mg1", "retail", [math.inf] * DAY), "inf is not a price"),
    "a bool": (with_entry("mg1", "retail", [True] * DAY), "True is not a price"),
    "beyond the chain": (with_entry("mg1", "retail", [2e9] * DAY), "beyond the chain's largest price"),
    "a side missing": ({**tariff_doc(), "mgs": {**tariff_doc()["mgs"], "mg1": {"retail": [0.1] * DAY}}},
                       "'mgs.mg1': expected exactly retail and feed_in"),
    "other intervals": (tariff_doc(interval_minutes=30), "'interval_minutes': 30, but the loop's intervals are 15"),
    "no interval length": ({"mgs": tariff_doc()["mgs"]}, "expected the keys interval_minutes and mgs"),
    "a list at the top": ([1, 2], "expected the keys interval_minutes and mgs, got list"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_a_clear_error_naming_the_file_and_key(tmp_path: Path, case: str) -> None:
    doc, says = BAD[case]
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as raised:
        load_tariff_file(path, MGS, 15.0)
    assert str(path) in str(raised.value) and says in str(raised.value), str(raised.value)


def test_an_unreadable_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_tariff_file(tmp_path / "nope.yaml", MGS, 15.0)
    broken = tmp_path / "broken.yaml"
    broken.write_text("mgs: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_tariff_file(broken, MGS, 15.0)


def settings(tmp_path: Path, tariff_file: Path | None, mgmc: bool = True) -> IntervalNodeSettings:
    chain = {"genesis": str(tmp_path / "g.json"), "data_dir": str(tmp_path / "db")}
    mgs = {mg: {"node": Keypair.generate().public.hex(), "anonym": Keypair.generate().public.hex(), "bus": 2 + i}
           for i, mg in enumerate(MGS)}  # fmt: skip
    doc: dict[str, Any] = {"key_file": str(tmp_path / "dso.key"), "dso_chain": chain, "mgs": mgs,
                           "first_interval": 36, "intervals": 3}  # fmt: skip
    if mgmc:
        doc["mgmc_chain"] = chain
    if tariff_file is not None:
        doc["tariff_file"] = str(tariff_file)
    return IntervalNodeSettings.model_validate(doc)


def dso_loop(s: IntervalNodeSettings, mgmc: Any) -> DsoLoop:
    none: Any = None
    return DsoLoop(s, none, none, none, none, none, none, none, Keypair.generate(), none, none, mgmc=mgmc)


def test_the_dso_node_reads_the_file_when_it_starts_and_stops_on_a_bad_one(tmp_path: Path) -> None:
    good = write(tmp_path, tariff_doc())
    mgmc = SimpleNamespace(chain="mgmc")
    s = settings(tmp_path, good)
    pricer = dso_loop(s, mgmc).pricer
    assert pricer is not None and isinstance(pricer.tariff, CoverTariff)
    assert pricer.accounts == {mg: bytes.fromhex(e.anonym) for mg, e in s.mgs.items()}  # the anonyms trade
    assert (pricer.first, pricer.end) == (36, 39)
    good.write_text(yaml.safe_dump(without(tariff_doc(), "mg1")), encoding="utf-8")
    with pytest.raises(ConfigError, match="no prices for mg1"):
        dso_loop(s, mgmc)
    assert dso_loop(settings(tmp_path, None), mgmc).pricer is None  # no file: no prices


def test_a_tariff_file_needs_the_mgmc_chain(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tariff_file: the DSO prices the cover on the MGMC chain"):
        settings(tmp_path, tmp_path / "t.yaml", mgmc=False)

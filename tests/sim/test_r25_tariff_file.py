"""R25 F8/F7 for the DSO's tariff file (the lab's DSO prices the cover from it): an MG's prices given twice,
or text that is not UTF-8, is a one-line `ConfigError` naming the file, not the second prices taken silently
or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from peergrid_dso.tariff import load_tariff_file
from peergrid_ledger.settings import ConfigError

PER_DAY = 96  # 15-minute intervals


def prices(retail: float, feed_in: float) -> str:
    return f"{{retail: {[retail] * PER_DAY}, feed_in: {[feed_in] * PER_DAY}}}"


def test_an_mg_priced_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "tariff.yaml"
    path.write_text(
        "interval_minutes: 15\nmgs:\n"
        f"  mg1: {prices(0.25, 0.05)}\n  mg2: {prices(0.25, 0.05)}\n  mg1: {prices(0.02, 0.01)}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_tariff_file(path, ["mg1", "mg2"], 15.0)
    assert str(caught.value) == f"loop.tariff_file: {path}: key 'mg1' given twice, lines 3 and 5"


def test_a_tariff_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "tariff.yaml"
    path.write_bytes(b"# \xa3 per kWh\ninterval_minutes: 15\n")
    with pytest.raises(ConfigError) as caught:
        load_tariff_file(path, ["mg1"], 15.0)
    assert str(caught.value) == f"loop.tariff_file: {path}: not UTF-8 text at byte 2 (line 1)"

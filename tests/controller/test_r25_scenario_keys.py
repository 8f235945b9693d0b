"""R25 F5/F7/F8: the controller's scenario loader refuses a key it does not know in its own `market` section
(and in a device's params, a key neither it nor firmware-sim's physics takes), a key given twice, and text that
is not UTF-8 — each a `ScenarioError` naming the file and the key. Before, `cap_prise` ran without the buyer's
cap and the buyer paid 14 % more."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from peergrid_controller.cli import main
from peergrid_controller.scenario import ScenarioError, load_scenario, load_scenario_file

ROOT = Path(__file__).resolve().parents[2]
TWO_MG = ROOT / "controller/scenarios/two-mg.yaml"


def two_mg() -> dict[str, Any]:
    doc = yaml.safe_load(TWO_MG.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_a_misspelt_cap_is_refused_naming_its_path_and_the_right_key(tmp_path: Path) -> None:
    doc = two_mg()
    doc["market"]["mg_rules"]["buyer"] = {"cap_prise": 0.20}
    path = write(tmp_path, doc)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == (
        f"{path}: unknown key 'market.mg_rules.buyer.cap_prise' (it takes cap_price, clean_only, clean_premium,"
        " floor_price, max_quantity_kwh); did you mean 'cap_price'?"
    )


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda m: m["mg_rules"]["seller"].update(floor=0.08), "market.mg_rules.seller.floor"),
        (lambda m: m.update(rules={"clean": True}), "market.rules.clean"),
        (lambda m: m.update(interval_minute=30), "market.interval_minute"),
        (lambda m: m.update(feedin=0.04), "market.feedin"),
        (lambda m: m.update(risk_allowence=2.0), "market.risk_allowence"),
    ],
)
def test_any_unknown_key_in_the_market_section_is_refused(tmp_path: Path, mutate: Any, where: str) -> None:
    doc = two_mg()
    mutate(doc["market"])
    with pytest.raises(ScenarioError, match=rf"unknown key '{where}'"):
        load_scenario(write(tmp_path, doc))


def test_a_device_param_neither_the_controller_nor_the_lab_takes_is_refused(tmp_path: Path) -> None:
    doc = two_mg()
    load = next(d for d in doc["microgrids"][1]["devices"] if d["kind"] == "load")
    load["params"]["sheddable"] = 20000
    index = next(i for i, d in enumerate(doc["microgrids"][1]["devices"]) if d is load)
    with pytest.raises(
        ScenarioError, match=rf"unknown key 'microgrids\.1\.devices\.{index}\.params\.sheddable'"
    ) as e:
        load_scenario(write(tmp_path, doc))
    assert str(e.value).endswith("did you mean 'sheddable_w'?")


def test_the_labs_own_params_and_keys_outside_market_still_load(tmp_path: Path) -> None:
    doc = two_mg()
    lab = copy.deepcopy(doc)
    lab["relays"] = [{"name": "r1", "branch": 33}]  # firmware-sim's, ignored here
    lab["broker"] = {"host": "127.0.0.1"}
    pv = next(d for d in lab["microgrids"][0]["devices"] if d["kind"] == "pv")
    pv["params"].update(
        dc_rating_w=11000, noct_c=45
    )  # firmware-sim's physics reads these; the controller not
    pv["protocol"] = "modbus-tcp"
    assert load_scenario(write(tmp_path, lab)) == load_scenario(write(tmp_path, doc))


def test_a_scenario_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    text = TWO_MG.read_text(encoding="utf-8")
    path.write_text(text + "market: {feed_in: 0.01}\n", encoding="utf-8")
    first = 1 + next(i for i, line in enumerate(text.splitlines()) if line.startswith("market:"))
    last = len(text.splitlines()) + 1
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: key 'market' given twice, lines {first} and {last}"


def test_a_scenario_that_is_not_utf8_names_the_byte_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_bytes(b"name: caf\xe9\n" + TWO_MG.read_bytes())
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(path)
    assert str(caught.value) == f"{path}: not UTF-8 text at byte 9 (line 1)"
    assert main(["simulate", "--scenario", str(path), "--intervals", "1", "--venue", "memory"]) == 2
    assert "not UTF-8 text at byte 9" in capsys.readouterr().err


def test_every_scenario_file_in_the_repo_still_loads() -> None:
    files = sorted([TWO_MG, *(ROOT / "firmware-sim/scenarios").glob("*.yaml")])
    assert len(files) >= 4
    for path in files:
        assert load_scenario(path).microgrids, path

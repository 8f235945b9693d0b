"""U5: a researcher's typo outside `market:` ran silently. `markets:` dropped every owner's rule and the tariff,
`irradience:` the sun, `kind: batery` the battery, `devics:` a microgrid's devices; `floor_price: yes` was a floor
of 1.0 and `interval_minutes: 7` a day of 206 intervals (1442 minutes). Each is now a `ScenarioError` naming the
key, while every key firmware-sim takes (relays, a bus, temperature, protocols...) is still accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_r25_scenario_keys import two_mg, write

from peergrid_controller.scenario import ScenarioError, load_scenario


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.__setitem__("markets", d.pop("market")),
            r"unknown key 'markets' \(a scenario takes .*\); did you mean 'market'\?",
        ),
        (
            lambda d: d["profiles"]["flat"].__setitem__(
                "irradience", d["profiles"]["flat"].pop("irradiance")
            ),
            r"unknown key 'profiles\.flat\.irradience' .*did you mean 'irradiance'\?",
        ),
        (
            lambda d: d["microgrids"][0].__setitem__("devics", d["microgrids"][0].pop("devices")),
            r"unknown key 'microgrids\.0\.devics' .*did you mean 'devices'\?",
        ),
        (
            lambda d: d["microgrids"][0]["devices"][0].__setitem__("kind", "pvv"),
            r"'microgrids\.0\.devices\.0\.kind': no device kind 'pvv' .*did you mean 'pv'\?",
        ),
        (
            lambda d: d["microgrids"][0]["devices"][0].__setitem__("parms", {}),
            r"unknown key 'microgrids\.0\.devices\.0\.parms' .*did you mean 'params'\?",
        ),
        (lambda d: d["market"]["mg_rules"]["seller"].__setitem__("floor_price", True), "floor_price"),
        (lambda d: d["market"]["mg_rules"]["buyer"].__setitem__("cap_price", "0.20"), "cap_price"),
        (lambda d: d["microgrids"][0]["devices"][0]["params"].__setitem__("rating_w", "40000"), "rating_w"),
        (
            lambda d: d["market"].__setitem__("interval_minutes", 7),
            "must divide the day's 1440 minutes, got 7",
        ),
    ],
)
def test_a_typo_outside_the_market_section_is_refused_naming_the_key(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    doc = two_mg()
    mutate(doc)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write(tmp_path, doc))


def test_every_key_firmware_sim_takes_is_still_accepted(tmp_path: Path) -> None:
    doc = two_mg()
    doc.update(
        feeder="ieee33", speed=60, start="2026-06-21T00:00:00Z", broker={"host": "127.0.0.1", "port": 1883}
    )
    doc["relays"] = [{"name": "sw1", "branch": 1}]
    doc["profiles"]["flat"].update(temperature=[[0, 15], [24, 15]], clouds=0.5, seed=3)
    doc["microgrids"][0]["bus"] = 18
    doc["microgrids"][0]["devices"][0].update(protocol="mqtt", period_s=1.0)
    doc["market"]["interval_minutes"] = 30
    scenario = load_scenario(write(tmp_path, doc))
    assert scenario.intervals == 48 and len(scenario.microgrids) == 2

"""An owner sets its MG's contract rules in the lab through the scenario's `market:` section, and a lab directory
that already ran is refused at the start (U4).

Before: firmware-sim's scenario reader refused `market:` ("unknown key 'market'"), so the lab could not run any
owner's rules although the controller's reader and the lab's genesis take them from that very file; and a second
start in a directory that had run halted its chains at the old heights, showed the old day's intervals as done
and wrote a report whose checks all passed, trading nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peergrid_controller.scenario import ScenarioError
from peergrid_controller.scenario import load_scenario as load_market_scenario
from peergrid_ledger.genesis import Genesis
from peergrid_sim.scenario import load_scenario
from peergrid_sim.testbed import build_parser, lab_loop, run_before

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
RULES = """
market:
  mg_rules:
    mg5: {floor_price: 0.15, cap_price: 0.25, max_quantity_kwh: 15, clean_only: false, clean_premium: 0.02}
"""


def _with(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "owner.yaml"
    path.write_text(IEEE33.read_text(encoding="utf-8") + section, encoding="utf-8")
    return path


def _start(workdir: Path, scenario: Path) -> object:
    args = build_parser().parse_args(["--scenario", str(scenario), "--intervals", "3"])
    return lab_loop(args, workdir, load_scenario(scenario))


def test_the_lab_takes_an_owners_rules_and_presets_them_on_the_chain(tmp_path: Path) -> None:
    scenario = _with(tmp_path, RULES)
    assert load_scenario(scenario).microgrids  # firmware-sim runs the file (its devices never read `market:`)
    assert _start(tmp_path / "lab", scenario) is not None
    genesis = Genesis.from_json(json.loads((tmp_path / "lab" / "keys" / "mgmc-genesis.json").read_text()))
    ruled = [a.rules for a in genesis.accounts if "anonym" in a.roles and a.rules and a.rules["floor_price"]]
    assert ruled == [
        {
            "floor_price": 150,
            "cap_price": 250,
            "max_quantity": 15000,
            "clean_only": False,
            "clean_premium": 20,
        }
    ]


def test_a_misspelt_rule_is_still_the_controllers_error(tmp_path: Path) -> None:
    scenario = _with(tmp_path, RULES.replace("cap_price", "cap_prise"))
    load_scenario(scenario)  # not firmware-sim's to judge
    with pytest.raises(ScenarioError, match="cap_prise"):
        load_market_scenario(scenario)


def test_a_directory_that_ran_is_named_and_refused(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    assert run_before(workdir) == ""
    assert _start(workdir, IEEE33) is not None  # keys and geneses written: not a run yet
    assert run_before(workdir) == ""
    (workdir / "records").mkdir()
    (workdir / "records" / "dso.jsonl").write_text('{"interval": 44}\n')
    assert run_before(workdir) == "its interval records, records/dso.jsonl"
    (workdir / "control").mkdir()
    (workdir / "control" / "halt.json").write_text("{}")
    assert run_before(workdir) == "its chains halted, control/halt.json"
    with pytest.raises(SystemExit, match=r"holds an earlier run \(its chains halted.*use a new --workdir"):
        _start(workdir, IEEE33)

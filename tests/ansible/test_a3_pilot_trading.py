"""The pilot's step 6 (ansible/README.md "Step 6: start trading"): the README's genesis command lines, run with
keys made here, write the two geneses; its inventory variables make the edge role install them and the MG's
scenario and render `ledger.replicas` and `market:` into an edge.yaml the daemon's strict model and
`peergrid-edge check-config` take. Without those variables edge.yaml is byte for byte what the role rendered
before step 6 existed (test_a3_before_*.yaml, rendered at 684a206, plus the broker's TLS lines since U7); a half-set inventory fails the play with its
one line before anything is copied. Real Ansible templating and the real ledger CLI; the pilot inventory.
"""

from __future__ import annotations

import grp
import json
import os
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from peergrid_ansible_harness import ANSIBLE_DIR, HERE, VENV_BIN, needs_root, run_tool

from peergrid_edge.config import EdgeSettings, OwnerRules
from peergrid_ledger import keys
from peergrid_ledger.consensus.node_cli import load_genesis
from peergrid_ledger.settings import load_settings

PILOT = ANSIBLE_DIR / "inventories" / "pilot-example"
LAB = ANSIBLE_DIR / "inventories" / "lab"
SCENARIO = HERE / "test_a3_pilot_scenario.yaml"
README = (ANSIBLE_DIR / "README.md").read_text(encoding="utf-8")
STEP6 = README.split("## Step 6: start trading (pilot)", 1)[1].split("\n## ", 1)[0]
EPOCH = 1_798_761_600


def step6_blocks() -> tuple[str, dict[str, Any]]:
    """The step's genesis command lines (shell) and its inventory variables (one YAML mapping)."""
    shell, inventory = (textwrap.dedent(block) for block in re.findall(r"```\n(.*?)```", STEP6, re.S))
    return shell, yaml.safe_load(inventory)


def render(
    tmp_path: Path, inventory: Path, host: dict[str, Any]
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The play (the role's trading and owner's-rules tasks, then edge.yaml) from `inventory`'s group vars and
    `host` (the host's own vars, over them); its result and the rendered file."""
    out, extra = tmp_path / "edge.yaml", tmp_path / "extra.json"
    doc = {"inventory_vars": [str(inventory / "group_vars" / "all.yml"), str(inventory / "group_vars" / "edge.yml")],
           "inventory_dir": str(inventory), **host}  # fmt: skip
    extra.write_text(json.dumps(doc))
    playbook = HERE / "test_a3_pilot_trading.yml"
    result = run_tool(
        ["ansible-playbook", str(playbook), "-e", f"out_file={out}", "-e", f"@{extra}"], tmp_path
    )
    return result, out


def make_geneses(tmp_path: Path) -> dict[str, keys.Keypair]:
    """Runs the README's genesis command lines in tmp_path with fresh keys in their shell variables."""
    made = {name: keys.Keypair.generate() for name in ("DSO", "SCHOOL_NODE", "SCHOOL_ANONYM", "DEPOT_NODE",
                                                        "DEPOT_ANONYM")}  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           **{name: pair.public.hex() for name, pair in made.items()}}  # fmt: skip
    shell, _ = step6_blocks()
    result = subprocess.run(["bash", "-euc", shell], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return made


def test_the_readme_geneses_and_inventory_make_an_mgmc_that_trades(tmp_path: Path) -> None:
    needs_root()  # the role installs the files owned by root
    made = make_geneses(tmp_path)
    mgmc, dso = load_genesis(tmp_path / "mgmc-genesis.json"), load_genesis(tmp_path / "dso-genesis.json")
    nodes = {made["SCHOOL_NODE"].public, made["DEPOT_NODE"].public}
    anonyms = {made["SCHOOL_ANONYM"].public, made["DEPOT_ANONYM"].public}
    assert set(mgmc.authorities) == nodes
    assert set(dso.authorities) == nodes | {made["DSO"].public}
    roles = {a.key: a.roles for a in mgmc.accounts}
    assert roles == {made["DSO"].public: ("dso",), **dict.fromkeys(nodes, ("mgmc",)),
                     **dict.fromkeys(anonyms, ("anonym",))}  # fmt: skip
    school = next(a for a in mgmc.accounts if a.key == made["SCHOOL_ANONYM"].public)
    assert school.rules is not None and school.rules["floor_price"] == 150
    params = mgmc.params
    assert (params.settle_by_both, params.settle_epoch_ms, params.settle_interval_ms) == (
        1,
        EPOCH * 1000,
        900_000,
    )
    assert (params.anonyms_only, params.max_reopens, params.max_rounds) == (1, 3, 50)

    _, inventory = step6_blocks()
    assert inventory["peergrid_market_epoch"] == EPOCH
    assert inventory["edge_mgmc_genesis_src"] == "{{ peergrid_mgmc_genesis }}"
    etc = tmp_path / "etc"
    host = {**inventory, "peergrid_mgmc_genesis": str(tmp_path / "mgmc-genesis.json"),
            "peergrid_dso_genesis": str(tmp_path / "dso-genesis.json"), "edge_market_scenario_src": str(SCENARIO),
            "peergrid_mg_id": "mg-school", "edge_devices": [], "edge_rules_floor_price": 0.16,
            "edge_config_dir": str(etc), "edge_group": grp.getgrgid(os.getgid()).gr_name}  # fmt: skip
    result, out = render(tmp_path, PILOT, host)
    assert result.returncode == 0, result.stdout + result.stderr

    market_dir = etc / "market"
    assert market_dir.stat().st_mode & 0o777 == 0o750
    for name, source in (("mgmc-genesis.json", tmp_path / "mgmc-genesis.json"),
                         ("dso-genesis.json", tmp_path / "dso-genesis.json"), ("scenario.yaml", SCENARIO)):  # fmt: skip
        installed = market_dir / name
        assert installed.read_bytes() == source.read_bytes()
        assert (installed.stat().st_uid, installed.stat().st_mode & 0o777) == (0, 0o644)
    check = subprocess.run([str(VENV_BIN / "peergrid-edge"), "check-config", "--config", str(out)],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    settings = load_settings(out, EdgeSettings)
    replicas, market = settings.ledger.replicas, settings.market
    assert replicas is not None and replicas.dso is not None and market is not None
    assert (replicas.mgmc.genesis, replicas.dso.genesis) == (market_dir / "mgmc-genesis.json",
                                                             market_dir / "dso-genesis.json")  # fmt: skip
    assert market.scenario == market_dir / "scenario.yaml"
    assert (
        market.anonym_key_file == settings.anonym_key_file() == Path("/var/lib/peergrid/edge/keys/anonym.key")
    )
    assert (market.t0, market.interval_s, market.first_interval) == (EPOCH, 900, 0)
    assert market.days is None  # day after day on the same chain (P4)
    assert market.record_file == Path("/var/lib/peergrid/edge/market.jsonl")
    assert market.dso_api_url == "https://10.20.0.2:8443"  # the enrolment URL's server (pilot all.yml)
    assert market.rules == OwnerRules(floor_price=0.16)  # the owner's rules, as E3 renders them
    assert market.max_rounds == 50  # within the installed genesis' cap, read by the model
    assert settings.mg in {mg["name"] for mg in yaml.safe_load(SCENARIO.read_text())["microgrids"]}


@pytest.mark.parametrize(
    ("inventory", "host", "before"),
    [
        (PILOT, {"peergrid_mg_id": "mg-school", "edge_devices": [{"name": "pv1", "nature": "pv", "port": 502}]},
         "test_a3_before_pilot.yaml"),
        (LAB, {"peergrid_mg_id": "mg01"}, "test_a3_before_lab.yaml"),
    ],
)  # fmt: skip
def test_without_the_trading_variables_edge_yaml_is_as_before(
    tmp_path: Path, inventory: Path, host: dict[str, Any], before: str
) -> None:
    result, out = render(tmp_path, inventory, {**host, "edge_config_dir": str(tmp_path / "etc")})
    assert result.returncode == 0, result.stdout + result.stderr
    expected = (HERE / before).read_text().replace("/etc/peergrid/", f"{tmp_path}/etc/")
    assert out.read_text() == expected
    assert not (tmp_path / "etc" / "market").exists()


GENESES = {"edge_mgmc_genesis_src": "/srv/pki/mgmc-genesis.json", "edge_dso_genesis_src": "/srv/pki/dso.json"}
TRADES = {**GENESES, "edge_market_scenario_src": str(SCENARIO), "peergrid_market_epoch": EPOCH}


@pytest.mark.parametrize(
    ("host", "line"),
    [
        ({**TRADES, "edge_market_scenario_src": ""},
         "a chain genesis (edge_mgmc_genesis_src, edge_dso_genesis_src) without a scenario (edge_market_scenario_src)"),
        ({**TRADES, "edge_dso_genesis_src": ""},
         "edge_market_scenario_src without both chain geneses (edge_mgmc_genesis_src and edge_dso_genesis_src)"),
        ({**TRADES, "peergrid_market_epoch": ""},
         "edge_market_t0 missing: set peergrid_market_epoch (wall s when market interval 0 of the feeder starts)"),
        ({**TRADES, "edge_market_t0": "tomorrow"}, "edge_market_t0 tomorrow is not a time in s since the epoch"),
        ({**TRADES, "edge_market_interval_s": 0}, "edge_market_interval_s 0 is not a positive number of seconds"),
        ({**TRADES, "edge_market_interval_s": -900}, "edge_market_interval_s -900 is not a positive number"),
    ],
)  # fmt: skip
def test_a_half_set_inventory_fails_the_play_with_its_line(
    tmp_path: Path, host: dict[str, Any], line: str
) -> None:
    etc = tmp_path / "etc"
    result, out = render(
        tmp_path, PILOT, {**host, "peergrid_mg_id": "mg-school", "edge_config_dir": str(etc)}
    )
    assert result.returncode != 0
    assert f"localhost: {line}" in result.stdout + result.stderr
    assert not etc.exists() and not out.exists()

"""The edge role renders the MG owner's contract rules (edge_rules_*) into edge.yaml's `market.rules`, which the
daemon's strict model loads and the edge posts on the chain (U4 F2); the defaults mean no rule; a rule set where
there is no trading agent to keep it fails the play naming why. Real Ansible templating, the pilot inventory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from peergrid_ansible_harness import ANSIBLE_DIR, HERE, run_tool

from peergrid_controller.dayrules import chain_rules
from peergrid_edge.config import EdgeSettings, OwnerRules
from peergrid_edge.rules_poster import contract_rules
from peergrid_ledger.contracts.market_state import NO_RULES
from peergrid_ledger.settings import ConfigError, load_settings

PILOT = ANSIBLE_DIR / "inventories" / "pilot-example"
# a trading agent's section, as an operator adds it to edge_settings (the role renders none by itself)
MARKET = {"scenario": "/etc/peergrid/mg.yaml", "anonym_key_file": "/var/lib/peergrid/edge/keys/anonym.key",
          "t0": 1_800_000_000, "interval_s": 900}  # fmt: skip
REPLICAS = {
    "mgmc": {"genesis": "/etc/peergrid/mgmc-genesis.json"},
    "dso": {"genesis": "/etc/peergrid/dso-genesis.json"},
}
SCHOOL = {"edge_rules_floor_price": 0.15, "edge_rules_cap_price": 0.25, "edge_rules_max_quantity_kwh": 15,
          "edge_rules_clean_premium": 0.02}  # fmt: skip


def render(tmp_path: Path, host: dict[str, Any], market: dict[str, Any] | None = MARKET) -> Any:
    """The play's result and edge.yaml, from the pilot's group vars and `host` (the host's own vars); `market`:
    the edge_settings' market section (None: the role's edge_settings, which has none)."""
    out, extra = tmp_path / "edge.yaml", tmp_path / "extra.json"
    doc = {"inventory_vars": [str(PILOT / "group_vars" / "all.yml"), str(PILOT / "group_vars" / "edge.yml")],
           "peergrid_mg_id": "mg-school", "inventory_dir": str(PILOT), "edge_devices": [], **host}  # fmt: skip
    if market is not None:
        doc["edge_settings"] = {"node_id": "mgmc-school", "mg": "mg-school", "feeder": "feeder-1", "market": market,
                                "ledger": {"replicas": REPLICAS}}  # fmt: skip
    extra.write_text(json.dumps(doc))
    playbook = HERE / "test_e3_owner_rules.yml"
    result = run_tool(
        ["ansible-playbook", str(playbook), "-e", f"out_file={out}", "-e", f"@{extra}"], tmp_path
    )
    return result, out


def readme_example() -> dict[str, Any]:
    """The host entry ansible/README.md's "The owner's contract rules" shows."""
    text = (ANSIBLE_DIR / "README.md").read_text().split("## The owner's contract rules", 1)[1]
    return yaml.safe_load(re.findall(r"```\n(.*?)```", text, re.S)[0])["mgmc-school"]


def test_the_owners_rules_render_into_market_rules_and_load(tmp_path: Path) -> None:
    assert readme_example() == {**SCHOOL, "edge_rules_clean_only": False}
    result, out = render(tmp_path, readme_example())
    assert result.returncode == 0, result.stdout + result.stderr
    market = load_settings(out, EdgeSettings).market
    assert market is not None and market.rules == OwnerRules(floor_price=0.15, cap_price=0.25, max_quantity_kwh=15,
                                                             clean_premium=0.02)  # fmt: skip
    assert chain_rules(contract_rules(market.rules)) == {
        "floor_price": 150, "cap_price": 250, "max_quantity": 15000, "clean_only": False, "clean_premium": 20,
    }  # fmt: skip


def test_the_defaults_mean_no_rule(tmp_path: Path) -> None:
    result, out = render(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    market = load_settings(out, EdgeSettings).market
    assert market is not None and market.rules == OwnerRules()
    assert chain_rules(contract_rules(market.rules)) == dict(NO_RULES)


def test_a_rule_without_a_trading_agent_fails_the_play_and_none_renders_nothing(tmp_path: Path) -> None:
    result, _ = render(tmp_path, {"edge_rules_clean_only": True}, market=None)
    assert result.returncode != 0
    assert (
        "edge_settings has no market section (the trading agent that keeps and posts them)" in result.stdout
    )
    result, out = render(tmp_path, {}, market=None)  # the pilot as it was: no market, no rules, no failure
    assert result.returncode == 0, result.stdout + result.stderr
    assert load_settings(out, EdgeSettings).market is None


def test_a_bad_rule_is_refused_by_the_daemons_model_naming_it(tmp_path: Path) -> None:
    result, out = render(tmp_path, {"edge_rules_floor_price": -0.1})
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(ConfigError, match=r"market\.rules\.floor_price.*greater than or equal to 0"):
        load_settings(out, EdgeSettings)

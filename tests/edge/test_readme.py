"""The config example in edge/README.md is a valid edge config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from peergrid_edge.config import EdgeSettings

README = Path(__file__).resolve().parents[2] / "edge" / "README.md"


def test_readme_config_example_validates() -> None:
    block, _closed_loop = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    settings = EdgeSettings.model_validate(yaml.safe_load(block))
    assert {d.nature for d in settings.devices} == {"pv", "battery", "genset", "load", "meter"}
    assert {d.protocol for d in settings.devices} == {"modbus-tcp", "modbus-rtu", "mqtt"}


def test_readme_replica_and_market_example_validates() -> None:
    block, closed_loop = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    full, extra = yaml.safe_load(block), yaml.safe_load(closed_loop)
    full["ledger"].update(extra["ledger"])
    full["market"] = extra["market"]
    settings = EdgeSettings.model_validate(full)
    assert settings.ledger.replicas is not None and settings.ledger.replicas.dso is not None
    assert settings.market is not None and settings.market.interval_s == 900

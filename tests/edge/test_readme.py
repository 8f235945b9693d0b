"""The config example in edge/README.md is a valid edge config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from peergrid_edge.config import EdgeSettings

README = Path(__file__).resolve().parents[2] / "edge" / "README.md"


def test_readme_config_example_validates() -> None:
    (block,) = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    settings = EdgeSettings.model_validate(yaml.safe_load(block))
    assert {d.nature for d in settings.devices} == {"pv", "battery", "genset", "load", "meter"}
    assert {d.protocol for d in settings.devices} == {"modbus-tcp", "modbus-rtu", "mqtt"}

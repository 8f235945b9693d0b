"""The README's examples are real: its config snippets validate and its commands exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from peergrid_dso.config import DsoSettings
from peergrid_edge.config import EdgeSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_config_examples_validate() -> None:
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README, flags=re.S)]
    edge = [b for b in blocks if "devices" in b]
    dso = [b for b in blocks if "http" in b]
    assert edge and dso
    for block in edge:
        EdgeSettings.model_validate(block)
    for block in dso:
        DsoSettings.model_validate(block)


def test_commands_named_in_the_readme_are_installed() -> None:
    named = set(re.findall(r"\.venv/bin/([a-z-]+)", README))
    assert named
    missing = [n for n in named if not (Path(sys.executable).parent / n).exists()]
    assert not missing

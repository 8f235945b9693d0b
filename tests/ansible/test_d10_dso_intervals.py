"""D10: the dso_server role renders the DSO loop's `intervals` from `dso_server_intervals`, null by default: the node
checks every interval for as long as it runs, as the edges trade (`edge_market_days` null). Before, the role
rendered 35040 (a year), and a node restarted after it found every interval finished and checked none again
(review R45, finding 6). Real Ansible: the role's template with its defaults and the pilot inventory
(`render-dso.yml`); the rendered file loads with the server's strict model, as `peergrid-dso serve` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from peergrid_ansible_harness import render_dso

from peergrid_dso.config import DsoSettings
from peergrid_ledger.settings import load_settings

MGS = {"mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18}}
GENESES = {"peergrid_dso_genesis": "/srv/pki/dso-genesis.json", "peergrid_mgmc_genesis": "/srv/pki/mgmc.json"}


def rendered(tmp_path: Path, extra: dict[str, Any]) -> tuple[dict[str, Any], DsoSettings]:
    out = render_dso(tmp_path, {"dso_server_mgs": MGS} | GENESES | extra)
    return yaml.safe_load(out.read_text())["loop"], load_settings(out, DsoSettings)


def test_the_role_renders_no_last_interval_by_default(tmp_path: Path) -> None:
    raw, settings = rendered(tmp_path, {})
    assert "intervals" in raw and raw["intervals"] is None  # `intervals: null` (before: 35040)
    assert settings.loop is not None and settings.loop.intervals is None


def test_a_count_the_inventory_gives_is_rendered_as_a_number(tmp_path: Path) -> None:
    raw, settings = rendered(
        tmp_path, {"dso_server_intervals": "672"}
    )  # as `-e dso_server_intervals=672` gives it
    assert raw["intervals"] == 672
    assert settings.loop is not None and settings.loop.intervals == 672

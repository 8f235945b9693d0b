"""The edge role renders the MGMC's enrolment section (U3-8): from the pilot inventory the daemon's strict model
loads it (the DSO's https URL, the token where flash.yml's user-data writes it, the operator's CA where the flash
and the role put it); from the lab inventory there is none (the lab's edges never ask). Real Ansible templating."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from peergrid_ansible_harness import ANSIBLE_DIR, HERE, run_tool

from peergrid_edge.config import EdgeSettings
from peergrid_ledger.settings import load_settings


def render(tmp_path: Path, inventory: str, mg: str) -> EdgeSettings:
    folder = ANSIBLE_DIR / "inventories" / inventory / "group_vars"
    out, extra = tmp_path / "edge.yaml", tmp_path / "extra.json"
    extra.write_text(json.dumps({
        "inventory_vars": [str(folder / "all.yml"), str(folder / "edge.yml")], "peergrid_mg_id": mg,
        "inventory_dir": str(ANSIBLE_DIR / "inventories" / inventory), "edge_devices": [],
    }))  # fmt: skip
    result = run_tool(
        ["ansible-playbook", str(HERE / "render-edge.yml"), "-e", f"out_file={out}", "-e", f"@{extra}"],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return load_settings(out, EdgeSettings)


@pytest.mark.parametrize(("inventory", "mg"), [("pilot-example", "mg-school"), ("lab", "mg01")])
def test_the_edge_role_renders_the_enrolment_the_flash_feeds(tmp_path: Path, inventory: str, mg: str) -> None:
    settings = render(tmp_path, inventory, mg)
    assert settings.mg == mg
    if inventory == "lab":
        assert settings.enrolment is None
        return
    e = settings.enrolment
    assert e is not None and e.url == "https://10.20.0.2:8443"
    user_data = (ANSIBLE_DIR / "playbooks" / "templates" / "user-data.j2").read_text()
    written = re.findall(r"- path: (\S+)", user_data)
    assert str(e.token_file) == "/etc/peergrid/enrolment-token" and str(e.token_file) in written
    assert str(e.ca_file) == "/etc/peergrid/tls/ca.crt" and str(e.ca_file) in written
    assert settings.anonym_key_file() == Path("/var/lib/peergrid/edge/keys/anonym.key")  # beside node.key


def test_the_pilot_inventory_names_the_real_command() -> None:
    text = (ANSIBLE_DIR / "inventories" / "pilot-example" / "group_vars" / "edge.yml").read_text()
    assert "peergrid-dso enrolment token create --config /etc/peergrid/dso.yaml" in text
    from peergrid_dso.cli import build_parser

    args = build_parser().parse_args(
        ["enrolment", "token", "create", "--config", "/etc/peergrid/dso.yaml", "--label", "mg-school"]
    )
    assert (args.command, args.enrolment_command, args.token_command, args.label) == (
        "enrolment", "token", "create", "mg-school",
    )  # fmt: skip

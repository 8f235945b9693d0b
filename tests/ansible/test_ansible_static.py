"""Static checks of ansible/: ansible-lint (production profile, offline), syntax of every playbook against
every inventory, and the rendered systemd units (systemd-analyze verify and security --offline)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from peergrid_ansible_harness import ANSIBLE_DIR, HERE, render_dso, run_tool

PLAYBOOKS = sorted(p.name for p in (ANSIBLE_DIR / "playbooks").glob("*.yml"))
INVENTORIES = sorted(p.name for p in (ANSIBLE_DIR / "inventories").iterdir() if p.is_dir())
MAX_EDGE_EXPOSURE = 2.0


def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    result = run_tool(["ansible-lint", "--profile", "production", "--offline"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_lint_config_is_production_and_offline() -> None:
    config = (ANSIBLE_DIR / ".ansible-lint").read_text(encoding="utf-8")
    assert re.search(r"^profile: production$", config, re.M)
    assert re.search(r"^offline: true$", config, re.M)


@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(playbook: str, inventory: str, tmp_path: Path) -> None:
    result = run_tool(
        [
            "ansible-playbook",
            "--syntax-check",
            "-i",
            f"inventories/{inventory}/hosts.yml",
            f"playbooks/{playbook}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rendered_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("units")
    units = tmp / "units"
    units.mkdir()
    result = run_tool(["ansible-playbook", str(HERE / "render-units.yml"), "-e", f"units_dir={units}"], tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return units


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_edge_unit_exposure_is_at_most_2(rendered_units: Path) -> None:
    assert exposure(rendered_units / "peergrid-edge.service") <= MAX_EDGE_EXPOSURE


@pytest.mark.parametrize(
    "unit", ["peergrid-edge-keygen.service", "peergrid-dso.service", "peergrid-firmware-sim.service"]
)
def test_other_units_are_hardened_too(rendered_units: Path, unit: str) -> None:
    assert exposure(rendered_units / unit) <= MAX_EDGE_EXPOSURE


def test_edge_unit_has_the_supervision_and_hardening_the_pi_needs(rendered_units: Path) -> None:
    text = (rendered_units / "peergrid-edge.service").read_text(encoding="utf-8")
    for line in [
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "User=peergrid-edge",
        "SupplementaryGroups=dialout",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyUSB rw",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecStart=/opt/peergrid/edge/current/venv/bin/peergrid-edge run --config /etc/peergrid/edge.yaml",
    ]:
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def test_verify_catches_what_it_does_not_fail_on(tmp_path: Path) -> None:
    """Why the converge test fails on any output: verify exits 0 on a misspelt Type= (ARCHITECTURE.md notes)."""
    unit = tmp_path / "typo.service"
    unit.write_text("[Service]\nType=notifyy\nExecStart=/bin/true\n", encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert "notifyy" in result.stdout + result.stderr


def test_flash_without_a_base_image_fails_and_names_the_device(tmp_path: Path) -> None:
    """A device whose image cannot be attached fails the run by name and leaves no half-built image."""
    out = tmp_path / "images"
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(
        "all:\n  children:\n    edge:\n      hosts:\n        mgmc-x:\n"
        f"          flash_base_image: {tmp_path}/missing.img\n          flash_output_dir: {out}\n",
        encoding="utf-8",
    )
    result = run_tool(["ansible-playbook", "-i", str(hosts), "playbooks/flash.yml"], tmp_path)
    assert result.returncode != 0
    assert "images not built" in result.stdout and "mgmc-x" in result.stdout
    assert not out.exists() or not any(out.glob("*.img"))


MGS = {
    "mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18},
    "mg-depot": {"node": "33" * 32, "anonym": "44" * 32, "bus": 25},
}
RELAYS = [{"kind": "relay", "protocol": "modbus-tcp", "branch": 33, "host": "10.20.2.33", "port": 502}]


def test_rendered_dso_settings_are_accepted_by_the_server(tmp_path: Path) -> None:
    """The DSO server rejects unknown keys (exit 2): the dso.yaml the role renders from the pilot inventory
    (real Ansible templating; one run, Ansible is slow on a loaded machine) loads with the server's strict
    model, its `loop:` section and broker TLS included."""
    from peergrid_dso.config import DsoSettings
    from peergrid_ledger.settings import load_settings

    geneses = {
        "peergrid_dso_genesis": "/srv/pki/dso-genesis.json",
        "peergrid_mgmc_genesis": "/srv/pki/mgmc.json",
    }
    out = render_dso(tmp_path, {"dso_server_mgs": MGS, "dso_server_relays": RELAYS} | geneses)
    settings = load_settings(out, DsoSettings)
    assert settings.broker.port == 8883 and settings.console.users_file is not None
    tls = settings.broker.tls()
    assert tls is not None and str(tls.ca_file) == "/etc/peergrid/dso-tls/ca.crt"
    assert tls.cert_file is not None and tls.key_file is not None  # the DSO's certificate from the PKI dir
    loop = settings.loop
    assert loop is not None and loop.mgmc_chain is not None
    assert {mg: (e.node, e.anonym, e.bus) for mg, e in loop.mgs.items()} == {
        mg: (e["node"], e["anonym"], e["bus"]) for mg, e in MGS.items()
    }
    assert str(loop.key_file) == "/var/lib/peergrid/dso/dso.key"
    assert str(loop.dso_chain.genesis) == "/etc/peergrid/dso-genesis.json"
    assert loop.dso_chain.data_dir != loop.mgmc_chain.data_dir
    assert str(loop.relays_file) == "/etc/peergrid/dso-relays.json" and loop.interval_minutes == 15
    assert loop.auto_enrol is False  # the pilot: an operator approves each enrolment
    assert loop.exchange_fee is None  # off unless the inventory names one: the chain's standing fee stays


def test_an_exchange_fee_the_inventory_names_is_rendered_as_the_server_takes_it(tmp_path: Path) -> None:
    """F5: `dso_server_exchange_fee` becomes the loop's `exchange_fee` (the DSO posts it as `market.fee`), its
    integers and MG names as the server's strict model reads them."""
    from peergrid_dso.config import DsoSettings
    from peergrid_ledger.settings import load_settings

    fee = {"fee": 2_000_000, "fund_cap": 50_000, "coordinators": ["mg-school"]}
    out = render_dso(tmp_path, {
        "dso_server_mgs": MGS, "dso_server_exchange_fee": fee,
        "peergrid_dso_genesis": "/srv/pki/dso-genesis.json", "peergrid_mgmc_genesis": "/srv/pki/mgmc.json",
    })  # fmt: skip
    loop = load_settings(out, DsoSettings).loop
    assert loop is not None and loop.exchange_fee is not None
    assert loop.exchange_fee.model_dump() == fee


def test_an_https_certificate_the_inventory_names_is_rendered_as_the_servers_http_tls(tmp_path: Path) -> None:
    """E2: `dso_server_https_cert_src` / `_key_src` (the DSO host's server certificate of the operator's CA, for
    the MGMCs' enrolment over the site's network) become `http.cert_file` / `http.key_file` at the copies the role
    installs; without them `http` is host and port alone (the test above). The server checks both files exist
    when it loads, so the rendered section is read as YAML here (the role copies them before it renders)."""
    import yaml

    out = render_dso(tmp_path, {
        "dso_server_mgs": MGS, "dso_server_https_cert_src": "/srv/pki/dso-https.crt",
        "dso_server_https_key_src": "/srv/pki/dso-https.key",
        "peergrid_dso_genesis": "/srv/pki/dso-genesis.json", "peergrid_mgmc_genesis": "/srv/pki/mgmc.json",
    })  # fmt: skip
    http = yaml.safe_load(out.read_text(encoding="utf-8"))["http"]
    assert http["cert_file"] == "/etc/peergrid/dso-tls/https.crt"
    assert http["key_file"] == "/etc/peergrid/dso-tls/https.key"
    assert isinstance(http["port"], int)

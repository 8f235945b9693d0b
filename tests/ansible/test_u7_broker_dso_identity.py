"""The broker role lets the DSO server publish beyond its own subtree under the CN its certificate has: by default
the hosts of the inventory's `dso` group, as the dso_server role names its client certificate
(`<pki>/<inventory name>.crt`). Why: U7's pilot: the ACL granted only the CN 'dso' while the pilot's DSO host,
dso-1, connected as 'dso-1', so Mosquitto dropped every verdict the DSO node published (no error on either
side); each MGMC waited out its DSO timeout and then three intervals for the verdict before every interval, and
the pilot fell behind the clock for good. Real Ansible templating of the role's ACL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from peergrid_ansible_harness import ANSIBLE_DIR, HERE, run_tool


def acl(tmp_path: Path, *args: str) -> str:
    conf = tmp_path / "mosquitto"
    conf.mkdir()
    result = run_tool(["ansible-playbook", str(HERE / "render-broker.yml"), "-e", f"broker_config_dir={conf}",
                       "-e", "peergrid_feeder=feeder-1", *args], tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return (conf / "peergrid.acl").read_text()


@pytest.mark.parametrize(("inventory", "user"), [("pilot-example", "dso-1"), ("lab", "lab-host")])
def test_the_dso_group_s_hosts_are_the_dso_identities(tmp_path: Path, inventory: str, user: str) -> None:
    text = acl(tmp_path, "-i", str(ANSIBLE_DIR / "inventories" / inventory / "hosts.yml"))
    assert f"\nuser {user}\ntopic readwrite peergrid/feeder-1/#\n" in text
    assert "\nuser dso\n" not in text


def test_without_a_dso_group_the_identity_is_dso(tmp_path: Path) -> None:
    assert "\nuser dso\ntopic readwrite peergrid/feeder-1/#\n" in acl(tmp_path, "-i", ",")

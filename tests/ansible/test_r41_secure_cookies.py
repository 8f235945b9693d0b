"""A DSO the role serves over HTTPS sets the console's session cookie Secure (review41 R41-7): 2ac2e42 rendered
`http.cert_file` / `http.key_file` but left `console.secure_cookies` at its default, false, so the pilot's console
cookie was sent by a browser to plain http:// at the same host too. Without a certificate the server speaks plain
HTTP and the cookie stays as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from peergrid_ansible_harness import ANSIBLE_DIR, HERE, run_tool

MGS = {"mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18}}


@pytest.mark.parametrize(("https", "secure"), [(True, True), (False, False)])
def test_the_console_cookie_is_secure_where_the_dso_serves_https(
    tmp_path: Path, https: bool, secure: bool
) -> None:
    out, inventory = tmp_path / "dso.yaml", ANSIBLE_DIR / "inventories" / "pilot-example"
    extra = {
        "dso_server_mgs": MGS,
        "peergrid_dso_genesis": "/srv/pki/dso-genesis.json",
        "peergrid_mgmc_genesis": "/srv/pki/mgmc.json",
    }
    if https:
        extra |= {
            "dso_server_https_cert_src": "/srv/pki/dso-https.crt",
            "dso_server_https_key_src": "/srv/pki/k",
        }
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    result = run_tool(
        ["ansible-playbook", str(HERE / "render-dso.yml"), "-e", f"out_file={out}", "-e", f"@{extra_file}",
         "-e", f"inventory_vars={inventory / 'group_vars' / 'all.yml'}", "-e", f"inventory_dir={inventory}"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["console"].get("secure_cookies", False) is secure

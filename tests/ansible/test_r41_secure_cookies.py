"""A DSO the role serves over HTTPS sets the console's session cookie Secure (review41 R41-7): 2ac2e42 rendered
`http.cert_file` / `http.key_file` but left `console.secure_cookies` at its default, false, so the pilot's console
cookie was sent by a browser to plain http:// at the same host too. Without a certificate the server speaks plain
HTTP and the cookie stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from peergrid_ansible_harness import render_dso

MGS = {"mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18}}


@pytest.mark.parametrize(("https", "secure"), [(True, True), (False, False)])
def test_the_console_cookie_is_secure_where_the_dso_serves_https(
    tmp_path: Path, https: bool, secure: bool
) -> None:
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
    out = render_dso(tmp_path, extra)
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["console"].get("secure_cookies", False) is secure

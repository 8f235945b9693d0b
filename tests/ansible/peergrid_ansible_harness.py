"""Helpers for the Ansible tests: paths, and running the venv's Ansible tools from ansible/ with its ansible.cfg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("PEERGRID_CACHE", "/var/cache/peergrid"))


def ansible_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp / "ansible-local")
    env["ANSIBLE_HOME"] = str(tmp / "ansible-home")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


def run_tool(args: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Runs an Ansible tool from ansible/ (so ansible.cfg applies) and returns its output for asserts."""
    return subprocess.run(
        args,
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def render_dso(tmp: Path, extra: dict[str, Any]) -> Path:
    """Renders the role's dso.yaml (`render-dso.yml`) from the pilot inventory with `extra` as extra vars; asserts
    the playbook ran and returns the rendered file."""
    out, extra_file = tmp / "dso.yaml", tmp / "extra.json"
    inventory = ANSIBLE_DIR / "inventories" / "pilot-example"
    extra_file.write_text(json.dumps(extra))
    result = run_tool(
        ["ansible-playbook", str(HERE / "render-dso.yml"), "-e", f"out_file={out}", "-e", f"@{extra_file}",
         "-e", f"inventory_vars={inventory / 'group_vars' / 'all.yml'}", "-e", f"inventory_dir={inventory}"],
        tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot and debootstrap); make test runs as root in CI")

"""The dso_server role and the DSO's cover prices (`loop.tariff_file`): with `peergrid_tariff_file` (a path on the
operator's machine) the role copies the file to the host and names the copy in dso.yaml's `loop:` section, so
the node prices the cover; without it, dso.yaml names none. Real Ansible: the role's template rendered with its
defaults and the pilot inventory (`render-dso.yml`), and the role's own `loop.yml` tasks run on this machine
into tmp_path; the rendered config then loads with the server's strict model and its tariff file with the
node's reader (`tariff.load_tariff_file`), as `peergrid-dso serve`'s preflight does.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from pathlib import Path
from typing import Any

import yaml
from peergrid_ansible_harness import ANSIBLE_DIR, needs_root, render_dso, run_tool

from peergrid_dso.config import DsoSettings
from peergrid_dso.tariff import load_tariff_file
from peergrid_ledger.settings import load_settings

MGS = {
    "mg-school": {"node": "11" * 32, "anonym": "22" * 32, "bus": 18},
    "mg-depot": {"node": "33" * 32, "anonym": "44" * 32, "bus": 25},
}
GENESES = {"peergrid_dso_genesis": "/srv/pki/dso-genesis.json", "peergrid_mgmc_genesis": "/srv/pki/mgmc.json"}
DAY = 96


def tariff_file(path: Path) -> Path:
    doc = {
        "interval_minutes": 15,
        "mgs": {mg: {"retail": [0.25] * DAY, "feed_in": [0.05 + i / 100] * DAY} for i, mg in enumerate(MGS)},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def render(tmp_path: Path, extra: dict[str, Any]) -> DsoSettings:
    return load_settings(render_dso(tmp_path, {"dso_server_mgs": MGS} | GENESES | extra), DsoSettings)


def test_without_a_tariff_file_dso_yaml_names_none(tmp_path: Path) -> None:
    loop = render(tmp_path, {}).loop
    assert loop is not None and loop.mgmc_chain is not None and loop.tariff_file is None


def test_the_role_copies_the_tariff_file_and_dso_yaml_names_the_copy(tmp_path: Path) -> None:
    needs_root()  # the role's copy makes the file root's (group: the DSO's)
    (tmp_path / "operator").mkdir()
    source = tariff_file(tmp_path / "operator" / "tariff.yaml")
    host = tmp_path / "host"
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    host_vars = {
        "peergrid_tariff_file": str(source),
        "dso_server_tariff_file": str(host / "etc" / "dso-tariff.yaml"),
        "dso_server_state_dir": str(host / "state"),
        "dso_server_dso_genesis": str(host / "etc" / "dso-genesis.json"),
        "dso_server_mgmc_genesis": str(host / "etc" / "mgmc-genesis.json"),
        "dso_server_user": user,
        "dso_server_group": group,
    }
    settings = render(tmp_path, host_vars)
    loop = settings.loop
    assert loop is not None and loop.tariff_file == host / "etc" / "dso-tariff.yaml"

    # the role's loop tasks, run here (no key made: the image-build switch), into tmp_path
    (host / "etc").mkdir(parents=True)
    for name in ("dso-genesis.json", "mgmc.json"):
        (tmp_path / "operator" / name).write_text("{}")
    playbook = tmp_path / "loop-tasks.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "The dso_server role's loop tasks",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars_files": [str(ANSIBLE_DIR / "roles" / "dso_server" / "defaults" / "main.yml")],
                    "tasks": [
                        {
                            "name": "Run loop.yml",
                            "ansible.builtin.import_tasks": str(
                                ANSIBLE_DIR / "roles" / "dso_server" / "tasks" / "loop.yml"
                            ),
                        }
                    ],
                    "handlers": [
                        {"name": "Restart peergrid-dso", "ansible.builtin.debug": {"msg": "restart notified"}}
                    ],
                }
            ]
        )
    )
    extra = host_vars | {
        "peergrid_image_build": True,
        "peergrid_dso_genesis": str(tmp_path / "operator" / "dso-genesis.json"),
        "peergrid_mgmc_genesis": str(tmp_path / "operator" / "mgmc.json"),
    }
    (tmp_path / "run.json").write_text(json.dumps(extra))
    result = run_tool(["ansible-playbook", str(playbook), "-e", f"@{tmp_path / 'run.json'}"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Install the cover prices" in result.stdout and "restart notified" in result.stdout
    copied = host / "etc" / "dso-tariff.yaml"
    assert copied.read_bytes() == source.read_bytes()
    assert oct(copied.stat().st_mode & 0o777) == "0o640"  # root and the DSO's group: the service reads it
    # what the node will read at start (and preflight before it): every MG of the loop priced
    tariff = load_tariff_file(loop.tariff_file, loop.mgs, loop.interval_minutes)
    assert set(tariff.prices) == set(MGS) and tariff.prices["mg-depot"][1][0] == 60

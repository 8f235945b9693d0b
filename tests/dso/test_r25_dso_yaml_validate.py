"""review25 F10: the dso_server role renders dso.yaml only over a config the release's own check accepts
(`validate: peergrid-dso check-config --config %s`) and keeps the file it replaced (`backup: true`).

Real Ansible runs the role's own "Render dso.yaml" task (read from tasks/main.yml, its arguments unchanged but
for owner and group) on this machine into tmp_path, with the role's defaults and a `dso_server_current` whose
venv/bin/peergrid-dso is this venv's. Before (5ed2237, /work/notes/r25/f_ansible_validate.out) a wrong inventory
value replaced a working dso.yaml and only the handler's restart failed.
"""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from peergrid_dso.config import DsoSettings
from peergrid_ledger import keys
from peergrid_ledger.genesis import Account, Genesis
from peergrid_ledger.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "dso_server"
VENV_BIN = Path(sys.executable).parent
TASK = "Render dso.yaml from the inventory"


def render_task() -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text(encoding="utf-8"))
    task: dict[str, Any] = next(t for t in tasks if t.get("name") == TASK)
    return task


def playbook(tmp_path: Path) -> Path:
    task = render_task()
    args = dict(task["ansible.builtin.template"])
    args |= {"src": str(ROLE / "templates" / args["src"]), "owner": str(os.getuid()),
             "group": grp.getgrgid(os.getgid()).gr_name}  # fmt: skip
    path = tmp_path / "render.yml"
    path.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "The dso_server role's dso.yaml task",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults" / "main.yml")],
                    "tasks": [{"name": TASK, "ansible.builtin.template": args, "notify": task["notify"]}],
                    "handlers": [
                        {"name": "Restart peergrid-dso", "ansible.builtin.debug": {"msg": "restart notified"}}
                    ],
                }
            ]
        )
    )
    return path


def host(tmp_path: Path) -> dict[str, Any]:
    """A DSO host in tmp_path: its release (this venv), key, geneses and relays as the loop tasks leave them."""
    etc, current = tmp_path / "etc", tmp_path / "current"
    (current / "venv" / "bin").mkdir(parents=True)
    (current / "venv" / "bin" / "peergrid-dso").symlink_to(VENV_BIN / "peergrid-dso")
    etc.mkdir()
    dso, mgmc, anonym = keys.Keypair.generate(), keys.Keypair.generate(), keys.Keypair.generate()
    keys.write_keyfile(tmp_path / "dso.key", dso)
    genesis = Genesis(
        chain="dso-ansible", time=int(time.time() * 1000), authorities=(dso.public,),
        accounts=(Account(dso.public, ("dso",), "dso"), Account(mgmc.public, ("mgmc",), "mg-school")),
    )  # fmt: skip
    (etc / "dso-genesis.json").write_text(json.dumps(genesis.to_json()))
    relays = [{"kind": "relay", "protocol": "modbus-tcp", "branch": b, "host": "10.0.0.7", "port": 502}
              for b in range(1, 38)]  # fmt: skip
    (etc / "dso-relays.json").write_text(json.dumps(relays))
    return {
        "inventory_hostname": "dso1",
        "peergrid_feeder": "pilot",
        "peergrid_broker_host": "127.0.0.1",
        "peergrid_broker_port": 9,  # check-config never connects
        "peergrid_dso_genesis": "/operator/dso-genesis.json",  # turns the loop on
        "dso_server_current": str(current),
        "dso_server_config_file": str(etc / "dso.yaml"),
        "dso_server_state_dir": str(tmp_path / "state"),
        "dso_server_key_file": str(tmp_path / "dso.key"),
        "dso_server_dso_genesis": str(etc / "dso-genesis.json"),
        "dso_server_relays_file": str(etc / "dso-relays.json"),
        "dso_server_relays": relays,
        "dso_server_mgs": {
            "mg-school": {"node": mgmc.public.hex(), "anonym": anonym.public.hex(), "bus": 18}
        },
    }


def run(tmp_path: Path, book: Path, variables: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ) | {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        ["ansible-playbook", str(book), "-e", f"@{extra}"], cwd=REPO / "ansible", env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_role_validates_dso_yaml_and_keeps_the_one_it_replaced(tmp_path: Path) -> None:
    task = render_task()["ansible.builtin.template"]
    assert task["backup"] is True and "peergrid-dso check-config --config %s" in task["validate"]
    book, variables = playbook(tmp_path), host(tmp_path)
    config = Path(variables["dso_server_config_file"])
    working = "# the working dso.yaml\nnode_id: dso1\n"
    config.write_text(working)

    # a wrong inventory value (an MG on a bus the feeder does not have): refused, the working file untouched
    wrong = variables | {
        "dso_server_mgs": {"mg-school": variables["dso_server_mgs"]["mg-school"] | {"bus": 99}}
    }
    refused = run(tmp_path, book, wrong)
    assert refused.returncode != 0 and "loop.mgs: case33bw: no bus 99" in refused.stdout, refused.stdout
    assert "restart notified" not in refused.stdout
    assert config.read_text() == working  # (Ansible may leave a backup copy of it even so)

    done = run(tmp_path, book, variables)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restart notified" in done.stdout
    loop = load_settings(config, DsoSettings).loop
    assert loop is not None and loop.relays_file == config.parent / "dso-relays.json"
    backups = list(config.parent.glob("dso.yaml.*~"))
    assert backups and all(b.read_text() == working for b in backups)  # the one it replaced, kept

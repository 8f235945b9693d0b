"""A pytest killed with SIGKILL in the middle of a test (as pytest-timeout's thread method or a CI job's
timeout ends it) leaves none of the processes its fixtures started: they are tied to it (`peergrid_ledger.tied`).

The pytest under test runs a real test of the suite whose fixture starts Mosquitto itself (the Ansible role's
broker, tests/ansible/test_ansible_broker.py); a plugin stops it inside the test, with every fixture up, and
reports ready. Then it is killed, and every process below it must end. Last session such orphans sat at
30-68 % CPU under every later test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_tied import cleaned_up, descendants, kill_and_find_no_survivor

from peergrid_ledger.tied import tied_popen

REPO = Path(__file__).resolve().parents[2]
TARGET = "tests/ansible/test_ansible_broker.py::test_client_without_certificate_is_refused"

# Holds the test with its fixtures up: the moment a timeout or an impatient operator kills pytest.
PAUSE_PLUGIN = """
import os, time
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    open(os.environ["PEERGRID_PAUSED"], "w").close()
    time.sleep(600)
    yield
"""


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")
def test_a_killed_pytest_leaves_no_process_its_fixtures_started(tmp_path: Path) -> None:
    (tmp_path / "peergrid_pause_plugin.py").write_text(PAUSE_PLUGIN)
    paused = tmp_path / "paused"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "PEERGRID_PAUSED": str(paused),
    }
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
            "-p", "peergrid_pause_plugin", f"--basetemp={tmp_path / 'inner'}", TARGET]  # fmt: skip
    with (tmp_path / "pytest.log").open("w") as log:
        pytest_run = tied_popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    with cleaned_up(pytest_run) as pids:
        deadline = time.monotonic() + 120  # the fixture renders the role with ansible-playbook first
        while not paused.exists():
            assert pytest_run.poll() is None, (tmp_path / "pytest.log").read_text()
            assert time.monotonic() < deadline, "the test never started"
            time.sleep(0.1)
        pids |= {f"{command} ({pid})": pid for pid, command in descendants(pytest_run.pid).items()}
        assert any(command.startswith("mosquitto -c") for command in pids), pids
        kill_and_find_no_survivor(pytest_run, pids)

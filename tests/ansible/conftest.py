"""Fixtures for the Ansible tests: a cached Debian root and the edge wheelhouse.

The pristine Debian bookworm root is built once by build-root.sh (debootstrap, about a minute) into
/var/cache/peergrid (PEERGRID_CACHE overrides) and extracted into each test's temp dir, so every converge
starts from a clean root. Needs root (chroot, debootstrap), as `make test` runs in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from peergrid_ansible_harness import ANSIBLE_DIR, CACHE, HERE, needs_root


@pytest.fixture(scope="session")
def debian_root_tar() -> Path:
    """A pristine amd64 bookworm root as a tar, built once and kept in the cache between runs."""
    needs_root()
    subprocess.run([str(HERE / "build-root.sh"), "amd64", str(CACHE)], check=True, timeout=900)
    return CACHE / "bookworm-amd64.tar"


@pytest.fixture(scope="session")
def edge_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding edge-<arch>/: this checkout's ledger, controller and edge wheels plus their deps."""
    parent = tmp_path_factory.mktemp("wheelhouse")
    machine = os.uname().machine
    subprocess.run(
        [
            sys.executable,
            str(ANSIBLE_DIR / "scripts" / "build-wheelhouse"),
            "--role",
            "edge",
            "--arch",
            machine,
            "--out",
            str(parent / f"edge-{machine}"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return parent

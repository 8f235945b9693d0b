"""The edge image stays small: the MGMC daemon and the packages it installs never load the DSO's stack."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("pandapower", "pandas", "fastapi", "uvicorn", "starlette")


def test_edge_imports_none_of_the_dso_stack() -> None:
    probe = (
        "import importlib, json, pkgutil, sys\n"
        "import peergrid_edge.cli, peergrid_edge.daemon, peergrid_ledger, peergrid_controller\n"
        "for pkg in (peergrid_ledger, peergrid_controller, peergrid_edge):\n"
        "    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(mod.name)\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert not loaded & set(FORBIDDEN), f"edge loaded {sorted(loaded & set(FORBIDDEN))}"

"""The edge daemon without a market does not load the controller's bargaining or numpy.

bench/results/edge.md: a top-level import of peergrid_controller.moves in peergrid_edge.config (33ac144) put
numpy in every daemon, 12 MB of its resident memory, though only a trading daemon uses it.
"""

from __future__ import annotations

import subprocess
import sys


def test_daemon_import_leaves_out_numpy_and_the_bargaining() -> None:
    # a fresh interpreter: this test process has imported numpy already through other tests
    code = (
        "import sys, peergrid_edge.cli, peergrid_edge.daemon; "
        "print(sorted(m for m in ('numpy', 'peergrid_controller.moves') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

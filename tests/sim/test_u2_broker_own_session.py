"""The lab's broker outlives a Ctrl-C at the terminal: SIGINT to the process group of the process that started
it does not reach it, so the testbed can stop it last. Before, Mosquitto shared the testbed's group and died
with the Ctrl-C, and every MGMC and the DSO logged 'lost broker ... reconnecting with back-off' as they
stopped (U2's lab, 06:14 UTC 2026-12-07: seven such WARNINGs 65 ms before each 'stopping')."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers_proc import alive

from peergrid_sim.broker import wait_for_port

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")

# A stand-in for the testbed: starts a broker, takes SIGINT as the testbed does (its own handler), and stops
# the broker when its stdin closes.
STARTER = textwrap.dedent(
    """
    import json, signal, sys
    from pathlib import Path
    from peergrid_sim.broker import MosquittoBroker

    signal.signal(signal.SIGINT, lambda *_: None)
    broker = MosquittoBroker(Path(sys.argv[1])).start()
    print(json.dumps({"pid": broker.process.pid, "port": broker.port}), flush=True)
    sys.stdin.read()
    broker.stop()
    """
)


def test_a_ctrl_c_to_the_starters_group_leaves_its_broker_up(tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path / "broker")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own group, as a terminal's foreground job
        text=True,
    )
    try:
        assert starter.stdout is not None and starter.stdin is not None
        broker = json.loads(starter.stdout.readline())
        os.killpg(starter.pid, signal.SIGINT)  # what Ctrl-C does
        time.sleep(1.0)  # Mosquitto ends on SIGINT at once (within milliseconds) where it gets it
        assert alive(broker["pid"]), "the broker died with the starter's Ctrl-C"
        assert wait_for_port("127.0.0.1", broker["port"], 1)
        starter.stdin.close()
        assert starter.wait(timeout=10) == 0
        assert not alive(broker["pid"])  # the starter's stop ended it
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(timeout=10)

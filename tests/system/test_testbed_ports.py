"""The testbed against the port race that failed CI runs, provoked deterministically.

Before, a test picked a port with `free_port()` and passed it to `--http-port`; another pytest worker could
bind it before the DSO server did, and the run failed ("the DSO server did not start") - or, worse, the
testbed took the other worker's listener for its DSO. Here the test holds a port bound and listening before
the testbed starts and makes the broker's first pick return exactly that port: the testbed still comes up,
on ports its own processes listen on, and says which (`ports.json`). Asking for a port someone holds fails
with a clear message instead of pointing at the other process's server.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_sim import broker as broker_module
from peergrid_sim.broker import LOOPBACK
from peergrid_sim.testbed import main

pytestmark = [pytest.mark.system, pytest.mark.xdist_group("system")]


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.create_server((LOOPBACK, 0)) as holder:
        yield int(holder.getsockname()[1])


def test_the_testbed_comes_up_although_the_picked_port_is_taken(
    tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    picks = iter([held_port])
    real = broker_module.free_port
    monkeypatch.setattr(broker_module, "free_port", lambda host=LOOPBACK: next(picks, None) or real(host))
    workdir = tmp_path / "bed"
    answers: list[dict[str, object]] = []
    ports: dict[str, int] = {}  # ports.json as the running testbed wrote it (its stop removes it)

    def ask_the_dso() -> None:  # while the testbed runs: its DSO server answers on the port it names
        ports_file = workdir / "ports.json"
        for _ in range(600):
            try:  # not yet written, or already removed by the stop (then the DSO never answered)
                ports.update(json.loads(ports_file.read_text()))
            except FileNotFoundError:
                pass
            if "dso_http" in ports:
                port = ports["dso_http"]
                try:
                    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/api/health", timeout=2) as r:
                        answers.append(json.loads(r.read()))
                        return
                except OSError:
                    pass
            threading.Event().wait(0.1)

    asker = threading.Thread(target=ask_the_dso)
    asker.start()
    status = main(["--http-port", "0", "--duration", "4", "--workdir", str(workdir), "--no-market"])
    asker.join(70)
    out = capsys.readouterr()
    assert status == 0, out.out + out.err
    assert ports and not (workdir / "ports.json").exists()
    assert held_port not in (ports["dso_http"], ports["broker"])
    assert f"DSO console:  http://{LOOPBACK}:{ports['dso_http']}/" in out.out
    assert f"mqtt://{LOOPBACK}:{ports['broker']}" in out.out
    assert answers, "the DSO server never answered on the port the testbed named"
    assert "peergrid testbed stopped (--duration)" in out.out  # what ended it (R41-6)
    log = (workdir / "broker" / "mosquitto.log").read_text()
    assert "Address already in use" in log  # the first pick really was taken


def test_a_fixed_http_port_someone_holds_is_a_clear_error(
    tmp_path: Path, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "bed"
    status = main(
        ["--http-port", str(held_port), "--duration", "4", "--workdir", str(workdir), "--no-market"]
    )
    out = capsys.readouterr()
    assert status == 1
    assert f"port {held_port} is taken by another process" in out.err
    assert "testbed running" not in out.out  # never the other process's server passed off as ours
    assert not (workdir / "ports.json").exists()

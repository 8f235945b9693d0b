"""`peergrid-edge run` as systemd runs it: notifications on a fake NOTIFY_SOCKET, metrics over HTTP, SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from edge_helpers import edge_settings

from peergrid_edge.metrics import Family, Histogram, render
from peergrid_edge.notify import setup_logging
from peergrid_ledger.tied import tied_popen
from peergrid_sim.ports import wait_for_listener

BIN = Path(sys.executable).parent


def _read_all(sock: socket.socket, until: str, timeout: float) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(until in m for m in messages):
            break
    return messages


def test_notify_ready_watchdog_status_stopping_and_metrics(run_sim, tmp_path: Path) -> None:
    sim = run_sim([{"name": "pv1", "kind": "pv"}, {"name": "bess1", "kind": "battery"}])
    # port 0: the daemon binds what the kernel gives it and we read that from its own socket (a port picked
    # here and bound there could be taken in between by another worker's child)
    settings = edge_settings(tmp_path, sim, {"bess1": {"safe_w": 0}}, metrics={"port": 0})
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "INVOCATION_ID": "0123456789abcdef"}
    daemon = tied_popen(
        [str(BIN / "peergrid-edge"), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = _read_all(sock, "WATCHDOG=1", 20)
        ready = [m for m in messages if "READY=1" in m]
        assert ready, messages
        assert "STATUS=2 devices: 2 ok" in ready[0]
        assert any(m == "WATCHDOG=1" for m in messages)
        port = wait_for_listener(daemon, 0, 10)  # type: ignore[arg-type]
        assert port is not None, "the daemon does not listen for metrics"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'peergrid_edge_device_errors_total{device="pv1"} 0' in text
        assert "peergrid_edge_poll_latency_seconds_count" in text
        assert 'peergrid_edge_dispatch_mode{mode="safe"} 1' in text
        assert "peergrid_edge_ledger_queued_txs" in text
        assert "peergrid_edge_broker_subscriptions_refused_total 0" in text
        assert 'peergrid_edge_schedules_ignored_total{reason="not_json"} 0' in text  # the daemon's intake
        daemon.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in m for m in _read_all(sock, "STOPPING=1", 10))
        _, stderr = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        sock.close()
    assert daemon.returncode == 0, stderr


def test_logs_go_to_journald_under_systemd_and_to_stderr_otherwise(monkeypatch) -> None:
    from systemd.journal import JournalHandler

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        monkeypatch.delenv("INVOCATION_ID", raising=False)
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert setup_logging("INFO") == "stderr"
        monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
        assert setup_logging("INFO") == "journald"
        (handler,) = root.handlers
        assert isinstance(handler, JournalHandler)
        assert handler.formatter is not None and handler.formatter._fmt == "%(message)s"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_histogram_and_exposition_format() -> None:
    h = Histogram(buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    text = render(
        [
            Family("lat_seconds", "histogram", "Latency.", h.samples("lat_seconds")),
            Family("errs_total", "counter", "Errors.", [("errs_total", {"device": 'a"b\\c'}, 3)]),
        ]
    )
    assert 'lat_seconds_bucket{le="0.1"} 1\n' in text
    assert 'lat_seconds_bucket{le="1.0"} 2\n' in text
    assert 'lat_seconds_bucket{le="+Inf"} 3\n' in text
    assert "lat_seconds_count 3\n" in text and "lat_seconds_sum 5.55" in text
    assert 'errs_total{device="a\\"b\\\\c"} 3' in text
    assert text.startswith("# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n")

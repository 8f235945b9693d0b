"""A stopped testbed leaves no pids.json or ports.json in its workdir: after a clean stop and after the stop
that follows a failed start. While it runs both are there; what it ended is kept in logs/stopped-pids.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_proc import alive

from peergrid_sim import processes
from peergrid_sim.broker import MosquittoBroker


def _bed(workdir: Path) -> processes.Testbed:
    return processes.Testbed(workdir, Path("unused.yaml"), None, 0, 60.0)  # type: ignore[arg-type]


def test_a_clean_stop_removes_the_files_naming_live_processes_and_ports(tmp_path: Path) -> None:
    bed = _bed(tmp_path)
    bed.broker = MosquittoBroker(tmp_path / "broker").start()
    try:
        bed.spawn("first", ["sleep", "600"])
        bed.spawn("second", ["sleep", "600"])
        bed._write_ports()
        running = json.loads((tmp_path / "pids.json").read_text())
        assert set(running) == {"first", "second", "mosquitto"}
        assert json.loads((tmp_path / "ports.json").read_text())["broker"] == bed.broker.port
    finally:
        bed.stop()
    assert not (tmp_path / "pids.json").exists()
    assert not (tmp_path / "ports.json").exists()
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads((tmp_path / "logs" / "stopped-pids.json").read_text()) == running
    bed.stop()  # a second stop (R37-11) keeps the record whole: the broker it forgot is still named
    assert json.loads((tmp_path / "logs" / "stopped-pids.json").read_text()) == running
    assert not [name for name, pid in running.items() if alive(pid)]


def test_the_stop_after_a_failed_start_removes_pids_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """firmware-sim exits at once: `start` raises with pids.json written, and the stop removes it."""
    fakes = {"firmware-sim": "#!/bin/sh\nexit 3\n", "peergrid-dso": "#!/bin/sh\ncat >/dev/null\n"}
    for name, script in fakes.items():
        (tmp_path / name).write_text(script)
        (tmp_path / name).chmod(0o755)
    monkeypatch.setattr(processes, "tool", lambda name: str(tmp_path / name))
    workdir = tmp_path / "bed"
    workdir.mkdir()
    bed = _bed(workdir)
    try:
        with pytest.raises(processes.TestbedError, match="firmware-sim exited with 3"):
            bed.start()
        assert "firmware-sim" in json.loads((workdir / "pids.json").read_text())
    finally:
        bed.stop()
    assert not (workdir / "pids.json").exists()
    assert not (workdir / "ports.json").exists()
    assert "firmware-sim" in json.loads((workdir / "logs" / "stopped-pids.json").read_text())

"""The edge's log leaves out pymodbus's own ERROR lines, each with the last 20 Modbus frames of every device of
the process appended as hex, at any level above DEBUG (U4: one PV that stopped answering put 160 frame lines
of the healthy battery, load and meter into the owner's log in 50 s; the poll already names the device, its
quarantine and its return). At DEBUG they are kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pymodbus.logging import Log

from peergrid_edge.notify import setup_logging


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Kept]:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root, quiet = logging.getLogger(), logging.getLogger("pymodbus")
    saved = (root.handlers[:], root.level, quiet.level)
    handler = _Kept()
    try:
        yield handler
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        quiet.setLevel(saved[2])


def _silent_device(level: str, kept: _Kept) -> list[str]:
    setup_logging(level)
    logging.getLogger().addHandler(kept)
    Log.transport_dump(Log.SEND_DATA, b"\x00\x01\x00\x00\x00\x06\x01\x03\x9c\x40\x00\x02", b"")
    Log.error("No response received after {} retries, continue with next request", 0)
    logging.getLogger("peergrid.edge.poll").warning("device pv1 quarantined for 5 s")
    return kept.lines


def test_pymodbus_errors_and_their_frames_stay_out_of_an_info_log(kept: _Kept) -> None:
    lines = _silent_device("INFO", kept)
    assert lines == ["peergrid.edge.poll WARNING device pv1 quarantined for 5 s"]


def test_at_debug_pymodbus_says_what_it_says(kept: _Kept) -> None:
    lines = _silent_device("DEBUG", kept)
    assert any(line.startswith("pymodbus.logging ERROR No response received") for line in lines)
    assert lines[-1] == "peergrid.edge.poll WARNING device pv1 quarantined for 5 s"

"""H7 (session 18, review30 R30-7): `peergrid-dso check-config` on the console state file of a running server.

check-config judges a copy of the file and its write-ahead log. A server that checkpoints between the two
copies (the main file copied before the checkpoint, the log after it) leaves a copy that reads as malformed
although the file is sound: R30 saw 6 of 557 checks refuse a sound file that way, with ConsoleDb's advice to
move it aside, and Ansible's validate fails the host. Now a copy counts only if neither file moved while it
was copied, a refusal only if the next copy is the same bytes and refused too, and a file that never stands
still is "not judged" (exit 0, one warning) rather than "damaged". A damaged file that stands still is refused
as before (tests/dso/test_h5_check_config_console_state.py). The tears here are the real one, made at the
moment it happens (inside the copy), not by chance: a writer commits and checkpoints between the two copies.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_dso import check_config, cli
from peergrid_dso.auth.store import ConsoleDb

from .test_h5_check_config_console_state import UNTOUCHED, a_console_db, config, files, refused


class Server:
    """A running console's writer on the state file: audit entries, then a checkpoint that resets the log."""

    def __init__(self, state: Path) -> None:
        self.db = a_console_db(state, 30)
        self.state = state
        self.entries = 30

    def writes_and_checkpoints(self) -> None:
        for _ in range(5):
            self.entries += 1
            self.db.add_audit(float(self.entries), {"action": "operate", "pad": "y" * 1500})
        checkpointer = sqlite3.connect(self.state)
        try:
            checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            checkpointer.close()
        for _ in range(5):
            self.entries += 1
            self.db.add_audit(float(self.entries), {"action": "approve", "pad": "z" * 1500})


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, Path, Server]]:
    path, state = config(tmp_path)
    server = Server(state)
    try:
        yield path, state, server
    finally:
        server.db.close()


def copies(monkeypatch: pytest.MonkeyPatch, after_main: Callable[[int, str], None]) -> list[str]:
    """check-config's copies, each made by shutil; `after_main(n, target)` runs right after the n-th copy of
    the main file (0-based), before the log is copied: where a running server's checkpoint tears a copy."""
    made: list[str] = []

    def copyfile(source: str, target: str) -> str:
        shutil.copyfile(source, target)
        made.append(Path(source).name)
        if not str(source).endswith("-wal"):
            after_main(made.count(Path(source).name) - 1, target)
        return target

    monkeypatch.setattr(check_config, "shutil", SimpleNamespace(copyfile=copyfile, rmtree=shutil.rmtree))
    return made


def passed(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """check-config run on `path`, its exit 0, its (stdout, stderr)."""
    assert cli.main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    return out, err


def test_a_checkpoint_between_the_two_copies_is_copied_again_not_refused(
    running: tuple[Path, Path, Server],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, state, server = running

    def server_checkpoints(n: int, _target: str) -> None:
        if n < 3:  # the first three copies torn (before: copied twice, both refused, exit 2)
            server.writes_and_checkpoints()

    made = copies(monkeypatch, server_checkpoints)
    assert passed(path, capsys) == (f"{path}: ok (no loop section)\n", "")
    assert made.count(state.name) == 4  # three that moved, then one that stood still
    # what the check saw is the server's file as it is now: every entry it wrote
    assert len(server.db.audit(limit=100)) == server.entries == 60


def test_a_file_written_throughout_is_not_judged_one_warning_exit_0(
    running: tuple[Path, Path, Server],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, state, server = running
    monkeypatch.setattr(check_config, "SETTLE_PAUSES_S", (0.0, 0.0, 0.0, 0.0))
    made = copies(monkeypatch, lambda _n, _target: server.writes_and_checkpoints())
    out, err = passed(path, capsys)
    assert out == f"{path}: ok (no loop section, 1 warning)\n"
    assert err == (
        f"peergrid-dso: WARNING: {state}: the console state file was being written throughout 4 copies over "
        "0.00 s (a server running on it?): not judged; `serve` judges it when it starts\n"
    )
    assert "move it aside" not in err and made.count(state.name) == 4


def test_a_tear_the_files_times_do_not_show_is_refused_only_when_two_copies_agree(
    running: tuple[Path, Path, Server],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # on a filesystem whose timestamps are coarser than the writes, a copy may be torn with every size and
    # time as before: here each of the first three copies of the main file comes out torn differently (its
    # audit pages overwritten) while the file itself stands still; each is refused, none twice the same
    path, state, server = running
    server.db.close()
    server.db = ConsoleDb.open(state)  # closed and reopened: the log checkpointed away, the file at rest
    before = files(state.parent)

    def torn_in_the_copy(n: int, target: str) -> None:
        if n < 3:
            raw = bytearray(Path(target).read_bytes())
            raw[3 * 4096 : 6 * 4096] = bytes([0xA0 + n]) * (3 * 4096)
            Path(target).write_bytes(bytes(raw))

    made = copies(monkeypatch, torn_in_the_copy)
    assert passed(path, capsys) == (f"{path}: ok (no loop section)\n", "")
    assert made.count(state.name) == 4 and files(state.parent) == before


def test_a_damaged_file_that_stands_still_is_refused_on_two_equal_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = config(tmp_path)
    a_console_db(state, 40).close()
    raw = bytearray(state.read_bytes())
    raw[3 * 4096 : 6 * 4096] = b"\xa5" * (3 * 4096)
    state.write_bytes(bytes(raw))
    made = copies(monkeypatch, lambda _n, _target: None)
    line = refused(path, capsys)
    assert line.startswith(f"peergrid-dso: config error: {state}: ") and line.endswith(UNTOUCHED)
    assert made == [state.name, state.name]  # judged twice, the same bytes: no waiting out the pauses


def test_the_log_removed_as_the_server_stops_mid_copy_is_copied_again(
    running: tuple[Path, Path, Server],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the last connection's close checkpoints and removes the -wal between check-config's two copies
    path, state, server = running
    wal = state.with_name(state.name + "-wal")
    assert wal.is_file()

    def server_stops(n: int, _target: str) -> None:
        if n == 0:
            server.db.close()

    made = copies(monkeypatch, server_stops)
    assert passed(path, capsys) == (f"{path}: ok (no loop section)\n", "")
    assert not wal.exists() and made == [state.name, state.name]
    server.db = ConsoleDb.open(state)  # (for the fixture's close) every entry kept
    assert len(server.db.audit(limit=100)) == 30

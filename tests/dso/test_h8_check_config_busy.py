"""H8 (review31 R31-6, R31-7): `peergrid-dso check-config` on the console state file of a server that commits
every few milliseconds.

R31-6: a copy counted only if neither the main file nor its write-ahead log moved while copied, so a truly
damaged file whose server committed faster than a copy took was never judged: 'not judged', exit 0, 10 of 10
times at a commit every 2-10 ms (r31/check_config_damaged_busy.py). Commits only append to the log, and SQLite
reads a log up to its last whole commit: a log that grew while copied, beside a main file that did not move,
is a consistent copy; only a main file that moved (a checkpoint) or a log replaced or cut short is copied
again. R31-7: every attempt's copy stayed in the temporary directory until the check returned (104.7 MB for
a 20.6-MB file); each is now removed once judged. Tears are made inside the copy, as in test_h7's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from peergrid_dso import check_config, cli

from .test_h5_check_config_console_state import UNTOUCHED, a_console_db, config, refused
from .test_h7_check_config_torn import copies

PAGE = 4096


class Committer:
    """A server's connection that commits into the log and never checkpoints (a commit every few ms)."""

    def __init__(self, state: Path) -> None:
        self.db = sqlite3.connect(state, isolation_level=None)
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.db.execute("CREATE TABLE IF NOT EXISTS h8 (v BLOB)")
        self.commits = 0

    def commit(self) -> None:
        self.db.execute("INSERT INTO h8 VALUES (randomblob(3000))")
        self.commits += 1


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[tuple[Path, Path, Committer]]:
    """A console state file damaged in one table's b-tree (its root's right child points past the file, as a
    bad sector would leave it) while the rest of the file, and a server's commits into it, go on working."""
    path, state = config(tmp_path)
    a_console_db(state, 5).close()
    raw = sqlite3.connect(state, isolation_level=None)
    raw.execute("CREATE TABLE junk (x BLOB)")
    raw.executemany("INSERT INTO junk VALUES (randomblob(200))", [()] * 400)
    (root,) = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'junk'").fetchone()
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    with state.open("r+b") as f:
        f.seek((root - 1) * PAGE + 8)
        f.write(b"\x0f\xff\xff\xff")
    server = Committer(state)
    try:
        yield path, state, server
    finally:
        server.db.close()


def test_a_damaged_file_a_server_commits_into_throughout_is_refused(
    damaged: tuple[Path, Path, Committer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state, server = damaged
    made = copies(monkeypatch, lambda _n, _target: server.commit())  # the log grows during every copy
    line = refused(path, capsys)  # before: 'not judged', a warning and exit 0
    assert line.startswith(f"peergrid-dso: config error: {state}: ") and line.endswith(UNTOUCHED)
    assert "damaged" in line or "malformed" in line, line
    assert made == [state.name, state.name + "-wal"] * 2 and server.commits == 2  # two copies, one main file


def test_a_sound_file_a_server_commits_into_throughout_is_judged_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = config(tmp_path)
    db = a_console_db(state, 30)
    try:
        monkeypatch.setattr(check_config, "SETTLE_PAUSES_S", (0.0, 0.0, 0.0, 0.0))
        made = copies(monkeypatch, lambda _n, _target: db.add_audit(99.0, {"action": "operate"}))
        assert cli.main(["check-config", "--config", str(path)]) == 0
        assert capsys.readouterr() == (f"{path}: ok (no loop section)\n", "")  # before: 'not judged'
        assert made.count(state.name) == 1
    finally:
        db.close()


def test_a_main_file_that_moved_or_a_log_cut_short_while_copied_is_copied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # steady_copy's rule on plain files: the log may grow; a main file that moved means a checkpoint came
    # between the two copies, and a log cut short, come or gone is copied again too (to be cautious)
    path = tmp_path / "state"
    wal = tmp_path / "state-wal"
    path.write_bytes(b"main" * 100)
    changes = {
        "grew": lambda: wal.write_bytes(wal.read_bytes() + b"frame"),
        "cut short": lambda: wal.write_bytes(b"l"),
        "went": lambda: wal.unlink(),
        "main moved": lambda: path.write_bytes(b"MAIN" * 101),
    }
    seen = {}
    for what, change in changes.items():
        path.write_bytes(b"main" * 100)
        wal.write_bytes(b"log" * 40)
        copies(monkeypatch, lambda _n, _target, change=change: change())
        target = tmp_path / what / "copy"
        target.parent.mkdir()
        seen[what] = check_config.steady_copy(path, target)
    assert seen.pop("grew") is not None
    assert seen == {"cut short": None, "went": None, "main moved": None}
    wal.unlink()  # and a log that came
    copies(monkeypatch, lambda _n, _target: wal.write_bytes(b"log"))
    (tmp_path / "came").mkdir()
    assert check_config.steady_copy(path, tmp_path / "came" / "copy") is None


def test_each_copy_is_removed_once_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = config(tmp_path)
    db = a_console_db(state, 30)
    scratch: list[list[str]] = []

    def checkpoints(_n: int, target: str) -> None:  # every copy torn: a checkpoint moves the main file
        scratch.append(sorted(p.name for p in Path(target).parent.parent.iterdir()))
        db.add_audit(99.0, {"action": "operate", "pad": "z" * 1500})
        checkpointer = sqlite3.connect(state)
        checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpointer.close()

    try:
        monkeypatch.setattr(check_config, "SETTLE_PAUSES_S", (0.0, 0.0, 0.0, 0.0))
        copies(monkeypatch, checkpoints)
        assert cli.main(["check-config", "--config", str(path)]) == 0
        assert "not judged" in capsys.readouterr().err
        assert scratch == [["0"], ["1"], ["2"], ["3"]]  # before: ["0"], ["0", "1"], ...: every copy kept
        assert len(db.audit(limit=100)) == 34  # every entry the server wrote meanwhile kept
    finally:
        db.close()

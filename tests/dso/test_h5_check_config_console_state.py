"""H5 (session 18): `peergrid-dso check-config` judges the console state file (sessions, security log, the
operators' audit trail, kept beside the users file) as `serve` does: one that `serve` would refuse - not SQLite,
damaged, another program's database - is named in one line, exit 2, and nothing in the data dir is written,
created or removed, a sound one too (before, check-config said ok and `serve` then stopped on it)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from peergrid_dso import cli
from peergrid_dso.auth.store import ConsoleDb

UNTOUCHED = (
    "; the file was left untouched - restore it from a backup, or move it aside to start with no sessions "
    "and an empty security log"
)


def config(tmp_path: Path) -> tuple[Path, Path]:
    """A config whose console keeps its state in tmp_path/data (no loop: nothing else to read)."""
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "dso.yaml"
    path.write_text(f"console:\n  users_file: {data / 'users.yaml'}\n", encoding="utf-8")
    return path, data / "console-state.sqlite"


def files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def refused(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["check-config", "--config", str(path)])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    return err.rstrip("\n")


def a_console_db(path: Path, entries: int) -> ConsoleDb:
    db = ConsoleDb.open(path)
    for n in range(entries):
        db.add_audit(float(n), {"action": "approve and execute", "plan": f"plan-{n}", "pad": "x" * 1500})
    return db


def test_a_file_that_is_not_sqlite_is_named_and_left_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = config(tmp_path)
    state.write_bytes(b"peergrid console state, restored from the wrong backup\n" * 40)
    before = files(state.parent)
    line = refused(path, capsys)
    assert line == (
        f"peergrid-dso: config error: {state}: not a readable SQLite database (file is not a database)"
        + UNTOUCHED
    )
    assert files(state.parent) == before


def test_another_programs_database_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, state = config(tmp_path)
    other = sqlite3.connect(state)
    other.execute("CREATE TABLE readings (at REAL, kw REAL)")
    other.commit()
    other.close()
    before = files(state.parent)
    line = refused(path, capsys)
    expected = "not a peergrid console state file (expected peergrid-console-state-v1)"
    assert line == f"peergrid-dso: config error: {state}: {expected}{UNTOUCHED}"
    assert files(state.parent) == before


def test_a_damaged_console_database_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, state = config(tmp_path)
    a_console_db(state, 40).close()
    raw = bytearray(state.read_bytes())
    page = 4096
    assert len(raw) > 8 * page
    raw[3 * page : 6 * page] = b"\xa5" * (3 * page)  # three pages of the audit table's tree overwritten
    state.write_bytes(bytes(raw))
    before = files(state.parent)
    line = refused(path, capsys)
    assert line.startswith(f"peergrid-dso: config error: {state}: ") and line.endswith(UNTOUCHED)
    assert "damaged" in line or "malformed" in line
    assert files(state.parent) == before


def test_a_sound_console_state_file_passes_and_nothing_is_made_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = config(tmp_path)
    a_console_db(state, 3).close()
    before = files(state.parent)
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok (no loop section)\n"
    assert files(state.parent) == before  # no -wal, no -shm (a read-only sqlite3 open makes both)
    # a server running on it: its write-ahead log holds the newest entries; judged with them, nothing touched
    running = a_console_db(state, 5)
    try:
        assert (state.parent / "console-state.sqlite-wal").is_file()
        before = files(state.parent)
        assert cli.main(["check-config", "--config", str(path)]) == 0
        assert files(state.parent) == before
    finally:
        running.close()


def test_no_console_state_file_yet_passes_and_none_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = config(tmp_path)
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert list(state.parent.iterdir()) == []
    state.write_bytes(b"")  # what a first start cut off leaves: `serve` makes it
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert files(state.parent) == {state.name: hashlib.sha256(b"").hexdigest()}

"""`peergrid-edge run` over an edge store it cannot open (review21 F9): LevelDB finds it damaged (an empty
CURRENT, as a torn write on an SD card leaves it) or another process holds it. The daemon ends with one line
naming the store's path and what is wrong, exit status 2 (a config error's: the unit's Restart= cannot mend it),
no traceback, and the store's files untouched: its readings and outbox are still there once CURRENT is mended
as edge/README.md's "A damaged store" says. Before, plyvel's own words came in a traceback with no path."""

from __future__ import annotations

import os
from pathlib import Path

import plyvel
import pytest

from peergrid_edge import cli
from peergrid_edge.daemon import EdgeDaemon
from peergrid_edge.store import EdgeStore, StoreMissing, open_store
from peergrid_ledger.settings import ConfigError


def config(tmp_path: Path) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(f"node_id: n1\nmg: mg1\ndata_dir: {tmp_path / 'data'}\n")
    return path


def stored(path: Path) -> None:
    """A store with an interval sealed (its commitment queued in the outbox) and one still open."""
    store = EdgeStore(path)
    for i in range(20):
        store.add_reading(7, b"leaf-%d" % i)
    store.seal(7)
    store.add_reading(8, b"leaf-x")
    store.close()


def contents(path: Path) -> tuple[list[int], int, int]:
    store = EdgeStore(path)
    try:
        return store.open_intervals(), len(store.leaves(7)), store.queued()
    finally:
        store.close()


def run_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """`peergrid-edge run` must stop with exit 2 before the daemon runs; its stderr."""

    async def never(self: EdgeDaemon) -> None:
        raise AssertionError("the daemon ran over a store it could not open")

    monkeypatch.setattr(EdgeDaemon, "run", never)
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--config", str(config(tmp_path))])
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_an_empty_current_stops_the_daemon_with_one_line_naming_the_store_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data" / "edge.db"
    stored(path)
    before = contents(path)
    (path / "CURRENT").write_bytes(b"")
    files = sorted(os.listdir(path))
    err = run_fails(tmp_path, monkeypatch, capsys)
    assert err.splitlines() == [
        f"peergrid-edge: config error: {path}: the edge store is damaged (Corruption: CURRENT file does not "
        'end with newline); see "A damaged store" in the edge README'
    ]
    assert "Traceback" not in err
    assert sorted(os.listdir(path)) == files and (path / "CURRENT").read_bytes() == b""  # nothing touched
    # the README's mend: CURRENT names the newest MANIFEST again; every reading and the outbox are back
    (manifest,) = [name for name in files if name.startswith("MANIFEST-")]
    (path / "CURRENT").write_text(manifest + "\n")
    assert contents(path) == before == ([8], 20, 1)


def test_a_store_another_process_holds_stops_the_daemon_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data" / "edge.db"
    stored(path)
    holder = EdgeStore(path)  # LevelDB's LOCK: one process (here: one open) at a time
    try:
        err = run_fails(tmp_path, monkeypatch, capsys)
    finally:
        holder.close()
    (line,) = err.splitlines()
    assert line.startswith(
        f"peergrid-edge: config error: {path}: the edge store cannot be opened (IO error: "
    )
    assert "LOCK" in line and line.endswith(
        "is another peergrid-edge (or its prove command) using this data_dir?"
    )
    assert contents(path) == ([8], 20, 1)


def test_a_missing_current_stops_the_daemon_and_the_store_is_not_started_afresh_over_its_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """review25 F1: before, the store was opened with create_if_missing on every start, so a store whose
    CURRENT was gone (a torn rename, or an operator who deleted an empty one) started as a new store and
    LevelDB deleted the old tables: the readings and the queued commitment gone, exit 0, no word."""
    path = tmp_path / "data" / "edge.db"
    store = EdgeStore(path)
    for i in range(2000):
        store.add_reading(7, b"reading-%06d" % i)
    store.seal(7)
    store.add_reading(8, b"leaf-x")
    store.db.compact_range()  # the readings in a table file, as hours of polling leave them
    store.close()
    before = contents(path)
    (path / "CURRENT").unlink()
    files = {name: (path / name).read_bytes() for name in os.listdir(path) if name not in ("LOG", "LOCK")}
    assert any(name.endswith(".ldb") for name in files)
    err = run_fails(tmp_path, monkeypatch, capsys)
    assert err.splitlines() == [
        f"peergrid-edge: config error: {path}: the edge store is damaged (its CURRENT file is missing beside "
        f'{len(os.listdir(path))} other files; a new store there would delete them); see "A damaged store" '
        "in the edge README"
    ]
    assert not (path / "CURRENT").exists()
    assert {name: (path / name).read_bytes() for name in files} == files  # every table and log file as it was
    (manifest,) = [name for name in files if name.startswith("MANIFEST-")]
    (path / "CURRENT").write_text(manifest + "\n")
    assert contents(path) == before == ([8], 2000, 1)


def test_a_store_is_created_only_where_the_folder_is_missing_or_empty(tmp_path: Path) -> None:
    """The daemon's first start still makes its store (a missing folder, or an empty one an image ships);
    a reader (`create=False`) makes nothing, not even the folder."""
    for path in (tmp_path / "new" / "edge.db", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        EdgeStore(path).close()
        assert (path / "CURRENT").exists()
    reader = tmp_path / "absent"
    with pytest.raises(StoreMissing, match="there is no store here"):
        EdgeStore(reader, create=False)
    assert not reader.exists()
    EdgeStore(tmp_path / "empty", create=False).close()  # an existing store opens for a reader too
    (tmp_path / "bare").mkdir()
    with pytest.raises(StoreMissing, match="there is no store here"):
        EdgeStore(tmp_path / "bare", create=False)
    assert os.listdir(tmp_path / "bare") == []


def first_open_cut_off(path: Path, *, tries: int) -> list[str]:
    """The folder a power cut in LevelDB's first open leaves: LOCK and the info log LOG (LOG.old too after a
    second try), written before MANIFEST-000001 and CURRENT (built from a real first open, its store files
    removed)."""
    path.mkdir(parents=True)
    for _ in range(tries):
        plyvel.DB(str(path), create_if_missing=True).close()
    for name in os.listdir(path):
        if name not in ("LOCK", "LOG", "LOG.old"):
            (path / name).unlink()
    return sorted(os.listdir(path))


@pytest.mark.parametrize("tries", [1, 2])
def test_a_first_start_cut_off_before_the_store_was_made_starts_afresh_at_the_next(
    tmp_path: Path, tries: int
) -> None:
    """R27-3: the folder holds no data, yet the daemon refused it at every start ("its CURRENT file is missing
    beside 2 other files; a new store there would delete them") until someone moved it away by hand."""
    path = tmp_path / "data" / "edge.db"
    assert first_open_cut_off(path, tries=tries) == ["LOCK", "LOG", "LOG.old"][: tries + 1]
    with pytest.raises(StoreMissing, match="there is no store here"):
        EdgeStore(path, create=False)  # a reader still finds no store in it
    store = open_store(path)
    store.add_reading(7, b"leaf")
    store.seal(7)
    store.close()
    assert (path / "CURRENT").exists()
    assert contents(path) == ([], 1, 1)


@pytest.mark.parametrize("kept", ["MANIFEST-", ".ldb", ".log"])
def test_a_folder_with_a_manifest_a_table_or_a_log_beside_lock_and_log_is_still_refused(
    tmp_path: Path, kept: str
) -> None:
    """Only LOCK, LOG and LOG.old make a folder fresh: one store file more, and it is a store whose CURRENT is
    missing, left as it is (a new store there would delete that file as obsolete, review25 F1)."""
    path = tmp_path / "data" / "edge.db"
    store = EdgeStore(path)
    for i in range(2000):
        store.add_reading(7, b"reading-%06d" % i)
    store.db.compact_range()  # a table file, beside the log the next reading goes to
    store.add_reading(8, b"leaf-x")
    store.close()
    for name in os.listdir(path):
        if name not in ("LOCK", "LOG", "LOG.old") and kept not in name:
            (path / name).unlink()
    files = {name: (path / name).read_bytes() for name in os.listdir(path)}
    assert any(kept in name for name in files) and len(files) >= 3
    with pytest.raises(ConfigError, match="its CURRENT file is missing beside"):
        open_store(path)
    assert {name: (path / name).read_bytes() for name in os.listdir(path)} == files

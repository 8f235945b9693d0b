"""The WAL file: a write the engine does not sync goes beside the synced record, never over it, so losing it
(a power cut) or finding it torn leaves the synced record readable; the newest intact record wins."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from peergrid_ledger.consensus import wal_file
from peergrid_ledger.consensus.wal_file import FileWal


def test_an_unsynced_record_never_replaces_the_synced_one(tmp_path: Path) -> None:
    wal = FileWal(tmp_path / "c.wal")
    assert wal.load() is None
    wal.save(b"commit", sync=True)
    wal.save(b"prepare", sync=False)
    assert wal.load() == b"prepare" and wal.syncs == 1 and wal.writes == 2
    assert FileWal(tmp_path / "c.wal").load() == b"prepare"  # what a restarted process reads
    wal.side.unlink()  # the power went before the kernel wrote it
    assert FileWal(tmp_path / "c.wal").load() == b"commit"
    wal.save(b"prepare again", sync=False)
    wal.side.write_bytes(wal.side.read_bytes()[:-3])  # torn
    assert FileWal(tmp_path / "c.wal").load() == b"commit"
    wal.save(b"next commit", sync=True)
    wal.save(b"later prepare", sync=False)
    wal.save(b"round change", sync=True)  # newer than the side file it leaves behind
    assert FileWal(tmp_path / "c.wal").load() == b"round change"


def test_short_writes_complete_and_a_synced_record_syncs_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write, real_fsync = os.write, os.fsync
    synced: list[str] = []
    monkeypatch.setattr(
        wal_file.os, "write", lambda fd, data: real_write(fd, bytes(data[:5]))
    )  # disk nearly full
    monkeypatch.setattr(
        wal_file.os,
        "fsync",
        lambda fd: (synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"), real_fsync(fd)),
    )
    wal = FileWal(tmp_path / "c.wal")
    wal.save(b"a commit vote and its lock", sync=True)
    assert synced == ["file", "dir"]  # the record, then the rename that puts it in place
    wal.save(b"a prepare", sync=False)
    assert synced == ["file", "dir"]
    monkeypatch.undo()
    assert FileWal(tmp_path / "c.wal").load() == b"a prepare"
    wal.side.unlink()
    assert FileWal(tmp_path / "c.wal").load() == b"a commit vote and its lock"


def test_a_wal_written_before_records_were_numbered_still_loads(tmp_path: Path) -> None:
    (tmp_path / "c.wal").write_bytes(b"an old record")
    wal = FileWal(tmp_path / "c.wal")
    assert wal.load() == b"an old record"
    wal.save(b"new", sync=False)
    assert FileWal(tmp_path / "c.wal").load() == b"new"


def test_without_fsync_every_record_goes_to_the_one_file(tmp_path: Path) -> None:
    wal = FileWal(tmp_path / "c.wal", fsync=False)
    wal.save(b"a", sync=True)
    wal.save(b"b", sync=False)
    assert wal.load() == b"b" and wal.syncs == 0 and not wal.side.exists()


def test_the_labs_wal_writes_what_must_survive_and_drops_a_prepare_alone(tmp_path: Path) -> None:
    from peergrid_edge.replicas import ProcessSafeWal

    wal = ProcessSafeWal(tmp_path / "c.wal")
    wal.save(b"commit", sync=True)
    wal.save(b"prepare", sync=False)  # lost, as in a power cut: the engine withholds it after a restart
    assert ProcessSafeWal(tmp_path / "c.wal").load() == b"commit" and wal.writes == 1 and wal.syncs == 0


def test_the_edge_chain_spec_is_built_by_name_and_gets_the_heartbeat() -> None:
    from peergrid_edge.replicas import ChainSpec
    from peergrid_ledger.consensus.engine import HEARTBEAT_MS

    with pytest.raises(TypeError):  # by position, a field added in the middle shifted the daemon's values
        ChainSpec("mgmc", Path("g.json"), Path("mgmc.db"), 500, 1500, False)  # type: ignore[misc]
    spec = ChainSpec(name="mgmc", genesis=Path("g.json"), data_dir=Path("mgmc.db"), wal_fsync=False)
    assert spec.wal_fsync is False and spec.heartbeat_ms == HEARTBEAT_MS

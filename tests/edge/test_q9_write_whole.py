"""The edge's whole-file writer uses a new temporary each time (closing23's noticed; Q8 found it for the DSO's
files). Before, `files.write_whole` wrote `<name>.tmp` and the ledger status `ledger-status.tmp`: a root command in
the MGMC's data folder opened a link its owner planted at that name with O_TRUNC (overwriting the link's target),
two writers of one file shared the one temporary (the second's rename found it gone), and a failure left it
behind. Each writer here (write_whole itself, the enrolment state, the ledger status) is driven with a planted
link, a failure and a writer that comes in just before the rename."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers_planted import ROOTS, planted_link

from peergrid_edge import files
from peergrid_edge.enrolment import Enroller
from peergrid_edge.files import write_whole
from peergrid_edge.replicas import EdgeLedger
from peergrid_ledger import keys


def enrolment_state(state_file: Path) -> None:
    """What `Enroller._record` writes, on a stand-in enroller (no DSO, no daemon)."""
    me = SimpleNamespace(
        identity=keys.Keypair.generate(), label="mg1", url="http://127.0.0.1:1", state_file=state_file
    )
    Enroller._record(me, "pending", "waiting for an operator", None)  # type: ignore[arg-type]


def ledger_status(status_file: Path) -> None:
    """What `EdgeLedger.write_status` writes, on a stand-in ledger with no replicas."""
    me = SimpleNamespace(status_file=status_file, keypair=keys.Keypair.generate(), replicas={})
    EdgeLedger.write_status(me)  # type: ignore[arg-type]


# writer, the file it writes in its folder, the temporary's name before
WRITERS = {
    "write_whole": (
        lambda path: write_whole(path, '{"whole": true}'),
        "checkpoint.json",
        "checkpoint.json.tmp",
    ),
    "enrolment": (enrolment_state, "enrolment.json", "enrolment.json.tmp"),
    "ledger status": (ledger_status, "ledger-status.json", "ledger-status.tmp"),
}


def _write(kind: str, folder: Path) -> Path:
    writer, name, _ = WRITERS[kind]
    writer(folder / name)
    return folder / name


@pytest.mark.parametrize("kind", list(WRITERS))
def test_a_link_planted_at_the_old_temporary_name_is_not_followed(
    kind: str, tmp_path: Path, as_root: list[int]
) -> None:
    data, victim = planted_link(tmp_path, WRITERS[kind][2])
    path = _write(kind, data)
    assert victim.read_text() == ROOTS  # before: the file's text
    assert json.loads(path.read_text())
    assert as_root == [path.stat().st_ino]  # only the file it made is given to the folder's owner
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in data.iterdir()) == sorted([path.name, WRITERS[kind][2]])


@pytest.mark.parametrize("failing", ["fsync", "replace"])
@pytest.mark.parametrize("kind", list(WRITERS))
def test_a_failure_leaves_the_old_file_and_no_temporary(
    kind: str, failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(kind, tmp_path)
    before = path.read_bytes()

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    if failing == "fsync" and kind == "ledger status":
        pytest.skip("the ledger status is not synced")
    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError, match="No space left"):
        _write(kind, tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # before: the .tmp stayed


def test_a_second_writer_before_the_rename_does_not_take_the_first_ones_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "salts.json"
    replace = os.replace
    calls: list[str] = []

    def second_writer_first(src: str, dst: str) -> None:
        if not calls:  # the first writer, about to rename: another write of the same file comes in
            calls.append("first")
            write_whole(path, "second")
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", second_writer_first)
    write_whole(path, "first")  # before: FileNotFoundError, the second had renamed the shared temporary
    assert path.read_text() == "first"  # the last rename's, whole
    assert [p.name for p in tmp_path.iterdir()] == ["salts.json"]

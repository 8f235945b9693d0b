"""Q11: `peergrid-edge day` reads the replica through a copy while the daemon holds its lock; a copy that cannot
be taken is one line on stderr and exit 2, never a traceback (before: the OSError of shutil.copytree escaped).

The store is the ledger's demo chain, held open as the running daemon holds it; what cannot be copied is real,
not a stand-in: a named pipe in the store's folder (copytree refuses special files, as root too), or a
temporary folder that does not exist.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from peergrid_edge.cli import main
from peergrid_ledger.cli import main as ledger_main
from peergrid_ledger.store import BlockStore

# an interval record with no trades (the fields the summary reads)
RECORD = {"interval": 0, "day": "1/1", "anonym": "aa" * 32, "role": "idle", "trades": [], "p2p_money": 0.0,
          "cost_p2p": 0.0, "cost_conventional": 0.0}  # fmt: skip


@pytest.fixture
def held(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """A replica (mgmc.db: the ledger's demo chain) the daemon holds open, and a record file beside it."""
    ledger = tmp_path / "mgmc.db"
    assert ledger_main(["demo", "--db", str(ledger), "--blocks", "2"]) == 0
    records = tmp_path / "mgmc-s.jsonl"
    records.write_text(json.dumps(RECORD) + "\n")
    capsys.readouterr()
    with BlockStore.open(ledger):
        yield records, ledger


def test_a_store_that_cannot_be_copied_is_one_line(
    held: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    records, ledger = held
    os.mkfifo(ledger / "stray.fifo")
    assert main(["day", "--records", str(records), "--ledger", str(ledger)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"peergrid-edge day: {ledger}: cannot copy the store (stray.fifo: ")
    assert "named pipe" in err and "while the daemon holds its lock" in err


def test_no_temporary_folder_to_copy_to_is_one_line(
    held: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    records, ledger = held
    monkeypatch.setattr(tempfile, "tempdir", str(ledger.parent / "no-such-folder"))
    assert main(["day", "--records", str(records), "--ledger", str(ledger)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no temporary folder to copy the store to" in err


def test_the_copy_is_read_and_removed(held: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The way that works stays as it was, and leaves no copy behind."""
    records, ledger = held
    before = set(Path(tempfile.gettempdir()).glob("peergrid-copy-*"))
    assert main(["day", "--records", str(records), "--ledger", str(ledger), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flags"] == []
    assert set(Path(tempfile.gettempdir()).glob("peergrid-copy-*")) == before

"""A chain store read through a copy while a running node holds it locked (LevelDB admits one process).

Promises: `opened_copy(db)` copies the store folder `db`, all but its LOCK file, into a temporary folder, opens
the copy as a `BlockStore` for the caller to read, and removes the copy when the `with` ends (a copy that cannot
be removed is left in the temporary folder rather than failing the read). A copy that cannot be taken - the
temporary folder not writable, `db` missing or unreadable, a file gone from under the copy - raises `CopyError`,
one line naming the store and why. A copy taken while the node compacts may not open: that is
`BlockStore.open`'s `StoreError` as it is, which a fresh copy may cure (the caller decides). Never writes to
`db`. The ledger CLI (`verify --copy`, `rules --copy`) and the edge's `peergrid-edge day` read through it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .store import BlockStore, StoreError


class CopyError(StoreError):
    """The store could not be copied to be read (`opened_copy`): the message says which and why, in one line."""


@contextmanager
def opened_copy(db: str | Path) -> Iterator[BlockStore]:
    """The store at `db` opened from a fresh copy of its folder, for as long as the `with` lasts (module)."""
    source = Path(db)
    try:
        scratch = tempfile.TemporaryDirectory(prefix="peergrid-copy-", ignore_cleanup_errors=True)
    except OSError as exc:
        raise CopyError(f"{source}: no temporary folder to copy the store to ({_why(exc)})") from None
    with scratch:
        copy = Path(scratch.name) / (source.name or "db")
        try:
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("LOCK"))
        except OSError as exc:
            raise CopyError(f"{source}: cannot copy the store ({_why(exc)})") from None
        with BlockStore.open(copy) as store:
            yield store


def _why(exc: OSError) -> str:
    """An OSError in a few words: its own (`No such file or directory`), or for `shutil.Error` (every file
    copytree could not copy, as a list) the first file's and how many more."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        failed = exc.args[0]
        src, _, reason = failed[0]
        more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
        return f"{Path(src).name}: {reason}{more}"
    return exc.strerror or str(exc)

"""Small files an MGMC must never find half written (its day-ahead checkpoint, its sealed statements' salts, its
enrolment state, its ledger status).

Promises: `write_whole(path, text)` leaves at `path` either the old file or the whole new one, never a part: the
text goes to a new temporary beside it (made here by `tempfile.mkstemp`: O_EXCL and O_NOFOLLOW, mode 0600, so
never an existing file or a link planted at its name, and never the same name as another writer's at the same
time), is synced, then renamed over it; with `sync_folder` the folder is synced too, so the rename itself
survives a power cut; `sync=False` skips the file's sync, for a file rewritten every second whose loss costs
nothing (the ledger status). A failure removes the temporary; a crash may leave one (`.<name>.*.tmp`), never
read. Run as root (a command run by hand in the MGMC's data folder), the new file is given to the folder's
owner, so the daemon's user can still read and replace it. Mode 0600 is what the edge's unit (UMask=0077) gave
these files before.
Why: the fixed `<name>.tmp` was shared by two writers of one file at once (each could rename the other's half),
and a root command opened it with O_TRUNC through any link the folder's owner had put there (Q8, closing23).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_whole(path: Path, text: str, *, sync_folder: bool = False, sync: bool = True) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "wb") as out:  # closes fd
            if os.geteuid() == 0:
                folder = os.stat(path.parent)
                os.fchown(fd, folder.st_uid, folder.st_gid)
            out.write(text.encode("utf-8"))
            out.flush()
            if sync:
                os.fsync(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if sync_folder:
        folder_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)

"""Writing the DSO's own files in its data directory, also from a command run as root by hand.

Promises: `write_replacing(path, body)` writes `body` to a new temporary beside `path` (made here with O_EXCL, mode
0600, so never an existing file or a link), syncs it, renames it over `path` and syncs the folder: a crash leaves
the old file or the new one, never a part, and a failure leaves no temporary. `open_lock(path)` opens a lock file
for writing, never through a symbolic link (OSError, ELOOP, on a link). Run as root, a file made by these calls
takes the owner of its folder, so the server's user can still read and replace it; a file found there is never
given away.
Why: the data directory belongs to the server's user, who may plant a link or a file in it; a root command that
followed such a link, or chowned what it found, would hand root's files to that user (review41 R41-1).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_replacing(path: Path, body: bytes) -> None:
    """`path` now holds `body`, written by a new temporary renamed over it (then the folder synced)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            give_to_folder_owner(fd, path.parent)
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def open_lock(path: Path) -> int:
    """The lock file open for writing, never through a symbolic link; given the folder's owner (run as root) only
    when made by this call, never a file found there."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        give_to_folder_owner(fd, path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def give_to_folder_owner(fd: int, folder: Path) -> None:
    """Run as root, give a file this process made the owner of its folder (the DSO's data directory belongs to
    its user)."""
    if os.geteuid() == 0:
        st = os.stat(folder)
        os.fchown(fd, st.st_uid, st.st_gid)

"""Writing the DSO's own files in its data directory, also from a command run as root by hand.

Promises: `write_replacing(path, body)` writes `body` to a new temporary beside `path` (made here with O_EXCL, mode
0600, so never an existing file or a link), syncs it, renames it over `path` and syncs the folder: a crash leaves
the old file or the new one, never a part, and a failure leaves no temporary. `open_lock(path)` opens a lock file
for writing, never through a symbolic link (OSError, ELOOP, on a link); `locked_beside(path, ...)` holds an
exclusive `flock` of `<path>.lock` (opened so) for a block, one that cannot be opened being the caller's error.
`read_entries(path, ...)` reads one of these files back: the entries of its JSON document of our type, None when
there is none, and the caller's error in the same words for each file for one it cannot read or that is not ours.
Run as root, a file made by these calls takes the owner of its folder, so the server's user can still read and
replace it; a file found there is never given away.
Why: the data directory belongs to the server's user, who may plant a link or a file in it; a root command that
followed such a link, or chowned what it found, would hand root's files to that user (review41 R41-1).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


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
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """A name made or replaced in `folder` is durable once the folder is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_entries(
    path: Path, file: str, file_type: str, entries: str, shape: type, refuse: Callable[[str], Exception]
) -> Any:
    """The `entries` member (a `shape`: list or dict) of the JSON object at `path` whose "type" is `file_type`;
    None when there is no file. A file that cannot be read, is not JSON or is not that object raises
    `refuse(why)`, `why` naming the `file` ("enrolment file"): the caller adds the path and what to do, and never
    reads such a file as an empty one. Without a lock: these files are only ever replaced whole by a rename."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise refuse(f"cannot read the {file} ({exc.strerror})") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise refuse("not a JSON document (damaged)") from None
    if not isinstance(doc, dict) or doc.get("type") != file_type or not isinstance(doc.get(entries), shape):
        raise refuse(f"not a peergrid {file} (expected {file_type})")
    return doc[entries]


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


@contextlib.contextmanager
def locked_beside(path: Path, file: str, holds: str, refuse: Callable[[str], Exception]) -> Iterator[None]:
    """An exclusive `flock` of `<path>.lock` beside `path` (its folder made if missing) for the block, so one
    process's read-modify-write of `path` cannot lose another's. A lock that cannot be opened (a link planted as
    it) raises `refuse(message)`, the message naming the lock, the `file` it guards ("user file") and what that
    file `holds` ("user")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    try:
        fd = open_lock(lock)
    except OSError as exc:
        raise refuse(
            f"{lock}: cannot open the {file}'s lock ({exc.strerror}; never through a symbolic link): "
            f"remove it, it holds no {holds}, and look into who put it there"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (closing releases the flock)


def give_to_folder_owner(fd: int, folder: Path) -> None:
    """Run as root, give a file this process made the owner of its folder (the DSO's data directory belongs to
    its user)."""
    if os.geteuid() == 0:
        st = os.stat(folder)
        os.fchown(fd, st.st_uid, st.st_gid)

"""Small files an MGMC must never find half written (its day-ahead checkpoint, its sealed statements' salts).

Promises: `write_whole(path, text)` leaves at `path` either the old file or the whole new one, never a part: the
text goes to a temporary file beside it (`<name>.tmp`), is synced, then renamed over it; with `sync_folder` the
folder is synced too, so the rename itself survives a power cut. A crash leaves at most the `.tmp` file, which
the next write replaces.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: Path, text: str, *, sync_folder: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    if sync_folder:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

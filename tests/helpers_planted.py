"""A link planted in a data folder, for the tests that a command run as root (`as_root`, tests/conftest.py) never
writes through a link the folder's owner planted at a name it uses (a temporary, a lock): the link points at a
file of root's, whose text must survive."""

from __future__ import annotations

from pathlib import Path

ROOTS = "root's\n"  # the text of the file the link points at


def planted_link(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """`tmp_path/data`, made, with a link at `name` to `tmp_path/shadow` (a file of root's): (folder, target)."""
    data = tmp_path / "data"
    data.mkdir()
    victim = tmp_path / "shadow"
    victim.write_text(ROOTS)
    (data / name).symlink_to(victim)
    return data, victim

"""The console's user file written by `peergrid-dso user add` run as root in the DSO's data directory, which
belongs to the server's user (review41, its note on auth/users.py; the rule of R41-1's token store): a link that
user planted at the temporary's name was opened with O_TRUNC and its target (any root file) overwritten. Now the
temporary is a new name made by the call (the same `data_files` helper as the token store), and only that file is
given to the folder's owner."""

from __future__ import annotations

import json
from pathlib import Path

from argon2 import PasswordHasher
from helpers_planted import ROOTS, planted_link

from peergrid_dso.auth.users import UserStore


def _quick() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_a_link_planted_as_the_temporary_is_not_written_through(tmp_path: Path, as_root: list[int]) -> None:
    data, victim = planted_link(tmp_path, "console-users.json.tmp")  # the name used before
    store = UserStore(data / "console-users.json", hasher=_quick())
    store.add("admin", "admin", "a long enough password")
    assert victim.read_text() == ROOTS  # before: the user file, hashes and all
    assert victim.stat().st_ino not in as_root
    users = json.loads((data / "console-users.json").read_text())["users"]
    assert list(users) == ["admin"]
    # the files it made (the user file and, since Q9, its lock), given to the folder's owner
    made = {(data / name).stat().st_ino for name in ("console-users.json", "console-users.json.lock")}
    assert set(as_root) == made
    assert oct((data / "console-users.json").stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in data.iterdir()) == [
        "console-users.json",
        "console-users.json.lock",
        "console-users.json.tmp",
    ]


def test_the_user_file_replaced_by_the_cli_is_read_by_the_server(tmp_path: Path) -> None:
    path = tmp_path / "data" / "console-users.json"
    UserStore(path, hasher=_quick()).add("viewer1", "viewer", "a long enough password")
    server = UserStore(path, hasher=_quick())
    UserStore(path, hasher=_quick()).add("operator1", "operator", "another long password")
    assert server.get("operator1") is not None and [u.name for u in server.users()] == [
        "operator1",
        "viewer1",
    ]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

"""Two `peergrid-dso user add` at once both land (closing23's noticed: the console user file had no lock). Each
command read the file when it started and wrote back the users it had read plus its own, so the second to write
lost the first's user. Now add and remove read, change and write the file under an exclusive flock of
`<file>.lock` beside it, opened as the enrolment token store opens its lock (`data_files.open_lock`: never through
a link, given to the folder's owner only when made by the call)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from helpers_planted import ROOTS, planted_link

from peergrid_dso.auth.users import UserError, UserStore

PASSWORD = "a long enough password"


def _quick() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _names(path: Path) -> list[str]:
    return sorted(json.loads(path.read_text())["users"])


def test_two_commands_that_read_the_file_before_either_wrote_both_land(tmp_path: Path) -> None:
    path = tmp_path / "data" / "console-users.json"
    UserStore(path, hasher=_quick()).add("admin", "admin", PASSWORD)
    first, second = UserStore(path, hasher=_quick()), UserStore(path, hasher=_quick())  # both started
    first.add("viewer1", "viewer", PASSWORD)
    second.add("operator1", "operator", PASSWORD)  # before: wrote admin and operator1, viewer1 lost
    assert _names(path) == ["admin", "operator1", "viewer1"]
    with pytest.raises(UserError, match="user 'viewer1' already exists"):
        second.add("viewer1", "admin", PASSWORD)  # seen on disk though this store never read it
    first.remove("operator1")  # never read by `first` either
    assert _names(path) == ["admin", "viewer1"]
    with pytest.raises(UserError, match="no user 'operator1'"):
        second.remove("operator1")


def _add_after(barrier: multiprocessing.synchronize.Barrier, path: Path, name: str) -> None:
    store = UserStore(path, hasher=_quick())
    barrier.wait()  # every process has read the file: they add at once
    store.add(name, "viewer", PASSWORD)


def test_concurrent_adds_from_processes_all_land(tmp_path: Path) -> None:
    path = tmp_path / "data" / "console-users.json"
    UserStore(path, hasher=_quick()).add("admin", "admin", PASSWORD)
    names = [f"viewer{k}" for k in range(4)]
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(names))
    adding = [context.Process(target=_add_after, args=(barrier, path, name)) for name in names]
    for process in adding:
        process.start()
    for process in adding:
        process.join(60)  # a bound against hanging, not a figure tested
    assert [p.exitcode for p in adding] == [0] * len(names)
    assert _names(path) == ["admin", *names]


def test_a_bad_file_is_refused_not_written_over(tmp_path: Path) -> None:
    path = tmp_path / "console-users.json"
    store = UserStore(path, hasher=_quick())
    store.add("admin", "admin", PASSWORD)
    path.write_text('{"type": "something else"}')  # changed by hand since the store read it
    with pytest.raises(UserError, match=r"not a peergrid user file \(expected peergrid-console-users-v1\)"):
        store.add("viewer1", "viewer", PASSWORD)
    assert path.read_text() == '{"type": "something else"}'


def test_a_link_planted_as_the_lock_is_refused_not_followed(tmp_path: Path, as_root: list[int]) -> None:
    data, victim = planted_link(tmp_path, "console-users.json.lock")
    store = UserStore(data / "console-users.json", hasher=_quick())
    with pytest.raises(UserError, match=r"console-users\.json\.lock: cannot open the user file's lock"):
        store.add("admin", "admin", PASSWORD)
    assert victim.read_text() == ROOTS and victim.stat().st_ino not in as_root
    assert not (data / "console-users.json").exists()
    (data / "console-users.json.lock").unlink()
    store.add("admin", "admin", PASSWORD)  # the lock and the file made here: both given to the folder's owner
    made = {(data / name).stat().st_ino for name in ("console-users.json.lock", "console-users.json")}
    assert set(as_root) == made

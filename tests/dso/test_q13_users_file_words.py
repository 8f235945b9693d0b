"""The console's user file is read back by `data_files.read_entries`, as the enrolment and token files are
(Q13): a file that cannot be read, is not JSON or is not a user file is refused naming its path in the same
words as those files, never read as an empty one and never written over; a missing file is no users."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from peergrid_dso.auth.users import UserError, UserStore

PASSWORD = "a long test password"


def quick() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"type": "peergrid-console-us', "not a JSON document (damaged)"),
        (b"\xff\xfe\x00garbage", "not a JSON document (damaged)"),
        (b'{"type": "peergrid-enrolments-v1", "enrolments": []}',
         "not a peergrid user file (expected peergrid-console-users-v1)"),
        (b'{"type": "peergrid-console-users-v1", "users": []}',
         "not a peergrid user file (expected peergrid-console-users-v1)"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_user_file_is_refused_by_path_and_left_untouched(
    tmp_path: Path, body: bytes, words: str
) -> None:
    path = tmp_path / "console-users.json"
    store = UserStore(path, hasher=quick())
    store.add("admin", "admin", PASSWORD)
    path.write_bytes(body)  # changed by hand since the store read it
    with pytest.raises(UserError) as refused:
        store.add("viewer1", "viewer", PASSWORD)
    assert str(refused.value) == f"{path}: {words}"
    with pytest.raises(UserError) as at_start:
        UserStore(path, hasher=quick())
    assert str(at_start.value) == str(refused.value)
    assert path.read_bytes() == body


def test_an_unreadable_file_is_refused_and_not_written_over(tmp_path: Path) -> None:
    """A folder in the file's place: 'cannot read the user file (Is a directory)', for `add` too."""
    path = tmp_path / "console-users.json"
    path.mkdir()
    with pytest.raises(UserError) as refused:
        UserStore(path, hasher=quick())
    assert str(refused.value) == f"{path}: cannot read the user file (Is a directory)"
    store = UserStore(None, hasher=quick())
    store.path = path  # as if the folder appeared after the store read its file
    with pytest.raises(UserError, match=r"cannot read the user file \(Is a directory\)"):
        store.add("admin", "admin", PASSWORD)
    assert path.is_dir() and not any(path.iterdir())


def test_a_missing_file_is_no_users_and_add_makes_it(tmp_path: Path) -> None:
    path = tmp_path / "console-users.json"
    store = UserStore(path, hasher=quick())
    assert len(store) == 0
    store.add("admin", "admin", PASSWORD)
    assert [u.name for u in UserStore(path, hasher=quick()).users()] == ["admin"]

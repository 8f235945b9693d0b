"""R42 on c3957f7: the DSO node's own name on the DSO chain ('dso-node') was refused only when a user was added. A
user file that already held it (written before c3957f7, or by hand) was read, and that user signed in and acted
under the node's name: the Operations view's audit trail then mixed its actions with the node's. Now the name
never signs in nor holds a session; it is still listed, so that an admin can remove it."""

from __future__ import annotations

import json
from pathlib import Path

from argon2 import PasswordHasher

from peergrid_dso.auth.users import FILE_TYPE, NODE_NAME, UserStore

PASSWORD = "a long enough password"


def test_a_user_file_that_names_the_node_never_signs_it_in(tmp_path: Path) -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    path = tmp_path / "console-users.json"
    users = {name: {"role": "operator", "hash": hasher.hash(PASSWORD)} for name in (NODE_NAME, "olga")}
    path.write_text(json.dumps({"type": FILE_TYPE, "users": users}))
    store = UserStore(path, hasher=hasher)
    assert store.authenticate(NODE_NAME, PASSWORD) is None  # before: User('dso-node', 'operator')
    assert store.get(NODE_NAME) is None  # a session under it is dropped at its next request
    assert store.authenticate("olga", PASSWORD) is not None
    assert [u.name for u in store.users()] == [NODE_NAME, "olga"]  # listed: an admin sees it and removes it
    store.remove(NODE_NAME)
    assert [u.name for u in store.users()] == ["olga"]

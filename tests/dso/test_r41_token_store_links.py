"""The enrolment token store run as root (`peergrid-dso enrolment token create` by hand) in the DSO's data
directory, which belongs to the server's user (review41 R41-4): a symbolic link that user planted there as the lock
file or the temporary was followed, and its target (any root file) given to that user, or truncated and
overwritten. Now the lock file is never opened through a link, only a file made by the call is given away, and the
temporary is a new name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers_planted import ROOTS, planted_link

from peergrid_dso.services.enrolment_tokens import TokenStore, TokenStoreError


def test_a_link_planted_as_the_lock_file_is_refused_not_followed(tmp_path: Path, as_root: list[int]) -> None:
    data, victim = planted_link(tmp_path, "enrolment-tokens.json.lock")
    store = TokenStore(data / "enrolment-tokens.json")
    # before: followed, and the link's target given to the folder's owner
    with pytest.raises(TokenStoreError, match="cannot open the enrolment token file's lock"):
        store.issue("a-token", "mg1")
    assert victim.stat().st_ino not in as_root and victim.read_text() == ROOTS
    (data / "enrolment-tokens.json.lock").unlink()
    store.issue("a-token", "mg1")  # the lock and the file made here: both given to the folder's owner
    made = {(data / name).stat().st_ino for name in ("enrolment-tokens.json.lock", "enrolment-tokens.json")}
    assert set(as_root) == made
    store.issue("another-token")  # a lock found there is not given again
    assert len(as_root) == 3 and store.get("a-token") is not None


def test_a_link_planted_as_the_temporary_is_not_written_through(tmp_path: Path, as_root: list[int]) -> None:
    data, victim = planted_link(tmp_path, f".enrolment-tokens.json.{os.getpid()}.tmp")  # the name used before
    TokenStore(data / "enrolment-tokens.json").issue("a-token", "mg1")
    assert victim.read_text() == ROOTS and victim.stat().st_ino not in as_root  # before: the token file
    assert [p.name for p in data.iterdir() if p.name.endswith(".tmp")] == [
        f".enrolment-tokens.json.{os.getpid()}.tmp"
    ]

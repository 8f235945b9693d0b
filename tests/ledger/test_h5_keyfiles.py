"""H5 (session 18): a key write refused because another writer's key took the name between its check and its
link (or rename) removes the temporaries power cuts left, as a write refused at its first check does; before,
they stayed (a copy of a private seed each) until some later write of that key."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from peergrid_ledger import keys
from peergrid_ledger.keys import KeyFileError, Keypair, read_keyfile, write_keyfile


def key_text(keypair: Keypair) -> str:
    seed = bytes(keypair._signing).hex()
    return json.dumps({"type": keys.KEYFILE_TYPE, "public": keypair.public.hex(), "seed": seed}) + "\n"


def put_key(path: Path, keypair: Keypair) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key_text(keypair))


def left_by_power_cuts(directory: Path) -> list[Path]:
    lost = [directory / ".node.key.0123456789ab.tmp", directory / ".node.key.ba5eba11c0de.tmp"]
    for path in lost:
        put_key(path, Keypair.generate())
    (directory / ".anonym.key.0123456789ab.tmp").write_text("another key's: not this write's to remove")
    return lost


def other_writer_first(path: Path, theirs: Keypair, then: Callable[..., object]) -> Callable[..., object]:
    """`then` (link or rename) after another writer put its key under `path`: after every check of ours."""

    def racing(*args: object, **kwargs: object) -> object:
        put_key(path, theirs)
        return then(*args, **kwargs)

    return racing


def test_a_write_refused_at_its_link_removes_the_temporaries_power_cuts_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    left_by_power_cuts(tmp_path)
    path, theirs = tmp_path / "node.key", Keypair.generate()
    monkeypatch.setattr(os, "link", other_writer_first(path, theirs, os.link))
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key"):
        write_keyfile(path, Keypair.generate())
    assert read_keyfile(path).public == theirs.public
    assert sorted(p.name for p in tmp_path.iterdir()) == [".anonym.key.0123456789ab.tmp", "node.key"]


def test_without_hard_links_a_write_refused_at_its_rename_removes_them_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vfat_link(source: object, target: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(source), None, str(target))

    left_by_power_cuts(tmp_path)
    path, theirs = tmp_path / "node.key", Keypair.generate()
    renameat2 = keys._renameat2()
    assert renameat2 is not None  # Linux, glibc 2.28 or later
    monkeypatch.setattr(os, "link", vfat_link)
    monkeypatch.setattr(keys, "_renameat2", lambda: other_writer_first(path, theirs, renameat2))
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key"):
        write_keyfile(path, Keypair.generate())
    assert read_keyfile(path).public == theirs.public
    assert sorted(p.name for p in tmp_path.iterdir()) == [".anonym.key.0123456789ab.tmp", "node.key"]


def test_a_write_that_fails_with_the_name_free_leaves_the_others_temporaries_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the name is free: another writer may be at work on its temporary, which could still become the key
    lost = left_by_power_cuts(tmp_path)

    def broken_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "link", broken_link)
    path = tmp_path / "node.key"
    with pytest.raises(KeyFileError, match="cannot write: Input/output error"):
        write_keyfile(path, Keypair.generate())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".anonym.key.0123456789ab.tmp", *(p.name for p in lost)]
    )

"""R27-2: key files on a file system without hard links (vfat/exFAT: a USB stick, the Pi's boot partition; some
FUSE and SMB mounts), where link(2) fails EPERM and `keygen` and a node's first start failed with "cannot write:
Operation not permitted"; and the temporary a power cut leaves holding a private seed. Without such a mount
here, link is made to fail as vfat's does; the rename after it is the real one."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from peergrid_ledger import keys
from peergrid_ledger.keys import KeyFileError, Keypair, read_keyfile, write_keyfile


def no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    def vfat_link(source: object, target: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(source), None, str(target))

    monkeypatch.setattr(os, "link", vfat_link)


def renameat2_failing(code: int) -> Callable[..., int]:
    """A renameat2 that fails with `code`, as a file system that refuses RENAME_NOREPLACE (EINVAL) does."""

    def failing(*args: object) -> int:
        ctypes.set_errno(code)
        return -1

    return failing


def key_text(keypair: Keypair) -> str:
    seed = bytes(keypair._signing).hex()
    return json.dumps({"type": keys.KEYFILE_TYPE, "public": keypair.public.hex(), "seed": seed}) + "\n"


def written_whole(path: Path, keypair: Keypair) -> None:
    assert read_keyfile(path).public == keypair.public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def test_a_key_file_is_written_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_hard_links(monkeypatch)
    path = tmp_path / "node.key"
    keypair = Keypair.generate()
    write_keyfile(path, keypair)
    written_whole(path, keypair)
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key"):
        write_keyfile(path, Keypair.generate())
    written_whole(path, keypair)


def test_without_hard_links_a_key_another_writer_put_there_meanwhile_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RENAME_NOREPLACE gives the name only if it is free, as the link did: the other key arrives after every
    # check of ours, just before the rename
    no_hard_links(monkeypatch)
    path = tmp_path / "node.key"
    theirs = Keypair.generate()
    renameat2 = keys._renameat2()
    assert renameat2 is not None  # Linux, glibc 2.28 or later

    def other_writer_first(*args: object) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key_text(theirs))
        return renameat2(*args)

    monkeypatch.setattr(keys, "_renameat2", lambda: other_writer_first)
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key"):
        write_keyfile(path, Keypair.generate())
    written_whole(path, theirs)


@pytest.mark.parametrize("no_renameat2", ["no such function", "refused by the file system"])
def test_without_hard_links_or_renameat2_a_key_file_is_renamed_into_place_after_a_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_renameat2: str
) -> None:
    no_hard_links(monkeypatch)
    fake = None if no_renameat2 == "no such function" else renameat2_failing(errno.EINVAL)
    monkeypatch.setattr(keys, "_renameat2", lambda: fake)
    path = tmp_path / "node.key"
    keypair = Keypair.generate()
    write_keyfile(path, keypair)
    written_whole(path, keypair)
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key"):
        write_keyfile(path, Keypair.generate())
    written_whole(path, keypair)


def test_without_hard_links_a_failed_rename_says_why_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_hard_links(monkeypatch)
    monkeypatch.setattr(keys, "_renameat2", lambda: renameat2_failing(errno.EIO))
    path = tmp_path / "node.key"
    with pytest.raises(KeyFileError) as caught:
        write_keyfile(path, Keypair.generate())
    assert str(caught.value) == (
        f"{path}: cannot write: Input/output error (renaming it into place: this file system has no hard "
        "links, link said Operation not permitted)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_link_that_fails_for_another_reason_is_not_retried_as_a_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def no_rename(*args: object) -> int:
        raise AssertionError("renamed after a link that failed for a reason other than no hard links")

    monkeypatch.setattr(os, "link", broken_link)
    monkeypatch.setattr(keys, "_renameat2", lambda: no_rename)
    monkeypatch.setattr(os, "rename", no_rename)
    path = tmp_path / "node.key"
    with pytest.raises(KeyFileError) as caught:
        write_keyfile(path, Keypair.generate())
    assert str(caught.value) == f"{path}: cannot write: Input/output error"
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_a_power_cut_left_before_the_link_is_removed_by_the_next_write(tmp_path: Path) -> None:
    # the cut came after the temporary was synced and before its link: a private seed nothing used or removed
    lost = tmp_path / ".node.key.0123456789ab.tmp"
    lost.write_text(key_text(Keypair.generate()))
    lost.chmod(0o600)
    others = [
        ".node.key.backup",
        ".anonym.key.0123456789ab.tmp",
        "node.key.0123456789ab.tmp",
        ".node.key.x.tmp",
    ]
    for name in others:
        (tmp_path / name).write_text("not ours to remove")
    path = tmp_path / "node.key"
    keypair = Keypair.generate()
    write_keyfile(path, keypair)
    assert read_keyfile(path).public == keypair.public
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "node.key"])


def test_a_temporary_a_power_cut_left_after_the_link_is_removed_by_a_write_that_is_refused(
    tmp_path: Path,
) -> None:
    # the cut came between the link and the temporary's unlink: a second name for the key's seed, which would
    # outlive a key moved away or replaced
    path = tmp_path / "node.key"
    keypair = Keypair.generate()
    write_keyfile(path, keypair)
    os.link(path, tmp_path / ".node.key.ba5eba11c0de.tmp")
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key"):
        write_keyfile(path, Keypair.generate())
    written_whole(path, keypair)

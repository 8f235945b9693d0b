"""Ed25519 keys and key files (0600, never overwritten, refused when too open), signatures, sealed boxes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from peergrid_ledger.keys import (
    KeyFileError,
    Keypair,
    parse_public_key,
    read_keyfile,
    seal,
    verify,
    write_keyfile,
)


def test_key_file_is_created_0600_and_reads_back(tmp_path: Path) -> None:
    keypair = Keypair.generate()
    path = tmp_path / "node.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        write_keyfile(path, keypair)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keyfile(path).public == keypair.public


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_keyfile(path, Keypair.generate())
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_keyfile(path, Keypair.generate())
    assert path.read_bytes() == before


def test_too_open_missing_or_corrupt_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_keyfile(path, Keypair.generate())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="too open"):
        read_keyfile(path)
    with pytest.raises(KeyFileError, match="no such key file"):
        read_keyfile(tmp_path / "absent.key")
    bad = tmp_path / "bad.key"
    bad.write_text("not json")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a peergrid"):
        read_keyfile(bad)


def test_private_key_never_shows_in_repr() -> None:
    seed = bytes(range(32))
    keypair = Keypair.from_seed(seed)
    for text in (repr(keypair), str(keypair)):
        assert seed.hex() not in text
        assert seed.hex()[:16] not in text


def test_verify_is_a_bool_for_any_input() -> None:
    keypair = Keypair.generate()
    message = b"m" * 32
    signature = keypair.sign(message)
    assert verify(keypair.public, message, signature)
    assert not verify(keypair.public, b"n" * 32, signature)
    assert not verify(Keypair.generate().public, message, signature)
    assert not verify(keypair.public, message, signature[:-1])
    assert not verify(b"\x00" * 32, message, b"\x00" * 64)
    assert not verify(b"short", message, signature)


def test_sealed_box_opens_only_for_its_addressee() -> None:
    alice, mallory = Keypair.generate(), Keypair.generate()
    ciphertext = seal(alice.public, b"limit your injection to 1.5 kW")
    assert alice.unseal(ciphertext) == b"limit your injection to 1.5 kW"
    with pytest.raises(ValueError):
        mallory.unseal(ciphertext)
    with pytest.raises(ValueError):
        alice.unseal(ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]))


def test_parse_public_key() -> None:
    keypair = Keypair.generate()
    assert parse_public_key(keypair.public.hex()) == keypair.public
    for bad in ("zz", "00" * 31):
        with pytest.raises(ValueError):
            parse_public_key(bad)

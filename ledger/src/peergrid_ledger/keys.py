"""Ed25519 identities, signatures over domain digests, sealed boxes, and private-key files.

Promises: a `Keypair` signs 32-byte digests (from `hashing.digest`) and never exposes its seed through repr,
str or logging; `verify` returns a bool and never raises for malformed keys or signatures; `seal` encrypts to
an Ed25519 public key (converted to X25519) so that only the holder of the matching private key can `unseal`.
Key files are written with mode 0600 (created that way, never chmod-ed after the fact), never overwritten
(but for one race on a file system with neither hard links nor RENAME_NOREPLACE: `write_keyfile`), appear
under their name whole or not at all, and are refused on read when group or others can read them.
Assumes PyNaCl/libsodium (which rejects non-canonical signatures and small-order keys).
Must never log, print or send a private key.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEYFILE_TYPE = "peergrid-ed25519-v1"


class KeyFileError(Exception):
    """A key file that is missing, unreadable, malformed, or readable by others."""


class Keypair:
    """An Ed25519 signing key and its public key (32 raw bytes)."""

    __slots__ = ("_signing", "public")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing = signing_key
        self.public: bytes = bytes(signing_key.verify_key)

    @classmethod
    def generate(cls) -> Keypair:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        """Deterministic keys for tests and demos (a 32-byte seed)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of `message` (normally a 32-byte domain digest)."""
        return self._signing.sign(message).signature

    def unseal(self, ciphertext: bytes) -> bytes:
        """Open a sealed box addressed to this key; raises `ValueError` if it was not, or was altered."""
        private = self._signing.to_curve25519_private_key()
        try:
            return nacl.public.SealedBox(private).decrypt(ciphertext)
        except nacl.exceptions.CryptoError:
            raise ValueError("sealed box does not open with this key (wrong addressee or altered)") from None

    def __repr__(self) -> str:
        return f"Keypair(public={self.public.hex()[:16]}…)"

    __str__ = __repr__


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def seal(recipient_public: bytes, plaintext: bytes) -> bytes:
    """Encrypt `plaintext` so that only the holder of Ed25519 `recipient_public` can read it."""
    curve = nacl.signing.VerifyKey(recipient_public).to_curve25519_public_key()
    return nacl.public.SealedBox(curve).encrypt(plaintext)


# ---------------------------------------------------------------------------------------------- key files


def write_keyfile(path: str | Path, keypair: Keypair) -> None:
    """Write `keypair` to a new file with mode 0600; refuses to overwrite an existing file.

    The key goes to a temporary file beside the name (created 0600), is synced, and only then given the name
    by a hard link, which like O_EXCL refuses a name that exists, so the name never holds a part of a key: a
    power cut leaves no key file (a node makes a new one) or the whole one, never the empty file a crash
    between create and write left, on which the node would crash-loop (R25 F7). Where the file system has no
    hard links (vfat/exFAT: a USB stick, the Pi's boot partition; some FUSE and SMB mounts; R27-2) the
    temporary is renamed instead, as whole: with RENAME_NOREPLACE where Linux and the file system offer it
    (vfat, exFAT, CIFS and FUSE do), else by a plain rename after checking that the name is free, which would
    replace a key another writer put there in between: that needs two processes making the same key at one
    instant (`keygen` racing a first start). A rename that fails says that the file system has no hard links.
    A temporary a power cut left (`.<name>.<hex>.tmp`, a copy of a private seed) is removed by the next write
    once the name exists (made by it, found there, or found taken when this write's link or rename is refused):
    from then on no temporary can become the key."""
    path = Path(path)
    seed = bytes(keypair._signing)
    body = json.dumps({"type": KEYFILE_TYPE, "public": keypair.public.hex(), "seed": seed.hex()}) + "\n"
    if path.exists() or path.is_symlink():
        _remove_temporaries(path)
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        _give_name(temporary, path)
    except OSError as exc:
        # a name there now is another writer's key (which may have removed our temporary: ENOENT); from now
        # on no temporary can become the key, so those a power cut left go now, not at some later write
        if isinstance(exc, FileExistsError) or path.exists() or path.is_symlink():
            _remove_temporaries(path)
            raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
        raise KeyFileError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    _sync_directory(path.parent)
    _remove_temporaries(path)


# link(2)'s answers where a file system has no hard links (vfat and exFAT: EPERM)
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV})
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _give_name(temporary: Path, path: Path) -> None:
    """The synced `temporary` under `path`, whole; `FileExistsError` where the name is taken (see
    `write_keyfile` for the one race a file system without hard links and RENAME_NOREPLACE leaves)."""
    try:
        os.link(temporary, path)
        return
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        no_link = exc.strerror
    try:
        if not _rename_noreplace(temporary, path):
            if path.exists() or path.is_symlink():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
            os.rename(temporary, path)
    except FileExistsError:
        raise
    except OSError as exc:
        said = f"{exc.strerror} (renaming it into place: this file system has no hard links, link said {no_link})"
        raise OSError(exc.errno, said) from None


def _rename_noreplace(source: Path, target: Path) -> bool:
    """renameat2(RENAME_NOREPLACE) (Linux 3.15, glibc 2.28): `source` under `target` only if that name is
    free, in one step. False where the C library or the file system has no such rename."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(target))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return cast(Callable[..., int], function)


def _remove_temporaries(path: Path) -> None:
    """Remove the temporaries of `path`'s key that writers cut off left (only once the name exists: a writer
    still at work could not give its temporary the name any more, and fails as it would have)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[0-9a-f]{12}\.tmp")
    try:
        names = [entry.name for entry in os.scandir(path.parent) if pattern.fullmatch(entry.name)]
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            (path.parent / name).unlink()


def _sync_directory(directory: Path) -> None:
    """Make the new name durable (the link is a directory entry); a file system that cannot sync a directory
    keeps what it can: the key itself is synced already."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_keyfile(path: str | Path) -> Keypair:
    """The keypair in `path`; refuses files that group or others may read (like ssh does)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{path}: not UTF-8 text at byte {exc.start}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: permissions {oct(mode & 0o777)} are too open; a key file must be 0600")
    try:
        doc = json.loads(text)
        if doc.get("type") != KEYFILE_TYPE:
            raise ValueError("wrong type")
        keypair = Keypair.from_seed(bytes.fromhex(doc["seed"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyFileError(f"{path}: not a {KEYFILE_TYPE} key file") from None
    if "public" in doc and doc["public"] != keypair.public.hex():
        raise KeyFileError(f"{path}: public key does not match the seed")
    return keypair


def parse_public_key(text: str) -> bytes:
    """A public key from 64 hex characters; raises `ValueError` otherwise."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"not a hex public key: {text[:20]!r}") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"a public key is {PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    return raw

"""Which MG each lab anonym is, for the testbed report: read from the lab's anonym key files, and what was not.

Promises: `read_anonyms(keys_dir, mgs)` gives each anonym public key's MG name from `<keys_dir>/anonym-<mg>.key`
(every such file there, and the one of each MG in `mgs` whether there or not), and for each of those it could
not read one line naming the file and why (missing, unreadable, not a key file, readable by others), so the
report, which then shows that MG's sellers and buyers by anonym, can say why on its page and in its log instead
of leaving it to be guessed. `anonym_names(keys_dir)` is the names alone. Reads the key files; never writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Anonyms:
    names: dict[bytes, str]  # anonym public key -> MG
    unread: list[str] = field(
        default_factory=list
    )  # "anonym-mg3.key not read (no such key file)", one a file


def read_anonyms(keys_dir: Path, mgs: Iterable[str] = ()) -> Anonyms:
    """The names and the files not read (module contract)."""
    from peergrid_ledger.keys import KeyFileError, read_keyfile

    keys_dir = Path(keys_dir)
    found = {path.stem.removeprefix("anonym-"): path for path in keys_dir.glob("anonym-*.key")}
    expected = {mg: keys_dir / f"anonym-{mg}.key" for mg in mgs}
    names: dict[bytes, str] = {}
    unread: list[str] = []
    for mg, path in sorted((found | expected).items()):
        try:
            names[read_keyfile(path).public] = mg
        except (KeyFileError, OSError, ValueError) as err:  # KeyFileError's message: the path, then why
            why = str(err).removeprefix(f"{path}: ")
            unread.append(f"{path.name} not read ({why})")
    return Anonyms(names, unread)


def anonym_names(keys_dir: Path) -> dict[bytes, str]:
    """The lab's anonym public keys -> MG names (`anonym-<mg>.key`); a file it cannot read is left out."""
    return read_anonyms(keys_dir).names

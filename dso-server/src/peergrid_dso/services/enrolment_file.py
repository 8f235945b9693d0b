"""The DSO's enrolment queue on disk: what each MGMC asked and what the operator decided, kept across restarts.

Promises: `EnrolmentFile(path).read()` gives the enrolments the file holds (none when it is absent), and
`write(enrolments)` replaces it with them, whole: under an exclusive `flock` of `<file>.lock` beside it, to a new
temporary synced and renamed over the name (`data_files`, as the user file and the token store are written), so a
crash leaves the old queue or the new one, never a part, and no link planted in the folder is written through. A
file that is not ours (unreadable, not JSON, another type, a malformed or repeated entry) raises
`EnrolmentFileError` naming the path and what to do, and is never written over: it is never read as an empty
queue (an MGMC waiting for approval would vanish from the console, and one revoked could ask again under its MG's
name). `enrolment_file_path(users_file)`: the file beside the console's user file (None: no data directory, the
queue lives in memory, as in the lab). `loop_key_faults(mgs, enrolments)`: where the closed loop's config names
keys for an MG that its enrolment does not hold (see there); `check_at_start`: what `serve` and `check-config` read
of it before the server starts (`serve` with the DSO chain's word on it). Pure but for `read` and `write`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from peergrid_dso.data_files import locked_beside, read_entries, write_replacing
from peergrid_dso.services.enrolment import STATUSES, Enrolment, chain_status

FILE_TYPE = "peergrid-enrolments-v1"
FILE_NAME = "enrolments.json"


class EnrolmentFileError(RuntimeError):
    """The enrolment file cannot be used; the message names it and says what to do."""


def enrolment_file_path(users_file: Path | None) -> Path | None:
    """Where the DSO keeps its enrolment queue: beside the console's user file (the DSO's data directory)."""
    return None if users_file is None else users_file.parent / FILE_NAME


class EnrolmentFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _refuse(self, why: str) -> EnrolmentFileError:
        return EnrolmentFileError(
            f"{self.path}: {why}; the file was left untouched - restore it from a backup, or move it aside (the "
            "MGMCs still waiting then send their requests again; those approved or revoked stay so on the DSO "
            "chain, but the console no longer lists them)"
        )

    def read(self) -> dict[bytes, Enrolment]:
        """The enrolments by MGMC key, in the file's order; {} when there is no file yet. Without the lock: the
        file is only ever replaced whole by a rename, so a read sees one queue or the next (and `check-config`
        reads it without making a lock file beside it)."""
        kept = read_entries(self.path, "enrolment file", FILE_TYPE, "enrolments", list, self._refuse)
        if kept is None:
            return {}
        found: dict[bytes, Enrolment] = {}
        for number, entry in enumerate(kept, 1):
            try:
                enrolment = _enrolment(entry)
            except (TypeError, ValueError, KeyError):
                raise self._refuse(f"enrolment {number} is malformed") from None
            if enrolment.mgmc in found:
                raise self._refuse(f"enrolment {number} repeats MGMC {enrolment.mgmc.hex()[:12]}")
            found[enrolment.mgmc] = enrolment
        return found

    def write(self, enrolments: Iterable[Enrolment]) -> None:
        doc = {"type": FILE_TYPE, "enrolments": [e.to_json() for e in enrolments]}
        with locked_beside(self.path, "enrolment file", "enrolment", EnrolmentFileError):
            try:
                write_replacing(self.path, (json.dumps(doc, indent=1) + "\n").encode())
            except OSError as exc:  # (a full disk, a folder made read-only): the old file stands
                raise EnrolmentFileError(
                    f"{self.path}: cannot write the enrolment file ({exc.strerror})"
                ) from None


def _enrolment(entry: dict[str, Any]) -> Enrolment:
    mgmc, anonym = _key(entry["mgmc"]), _key(entry["anonym"])
    label, status = entry["label"], entry["status"]
    if not isinstance(label, str) or not 1 <= len(label) <= 64 or status not in STATUSES:
        raise ValueError(entry)
    return Enrolment(mgmc, anonym, label, status)


def _key(hex_key: Any) -> bytes:
    key = bytes.fromhex(hex_key)  # (TypeError for a non-string)
    if len(key) != 32:
        raise ValueError("not a 32-byte key")
    return key


def loop_key_faults(
    mgs: Mapping[str, Any], enrolments: Mapping[bytes, Enrolment]
) -> tuple[list[str], list[str]]:
    """Where the closed loop's `mgs` (entries with `node` and `anonym`, hex) and the enrolment queue disagree on an
    MG's keys: (faults, warnings), one line each.

    The loop keys everything of an MG (its injections, bus, capacity, cover prices, disputes) by the keys its
    config names, never by the enrolment (ansible/README.md, step 5). A fault: the config's MGMC key is revoked and
    an authorised enrolment holds the MG's name under other keys - the MGMC enrolled again with new keys (a new
    SD card, a lost key) and the config still names the old ones, so the loop would leave the MG out for good
    (a revoked MGMC counts as zero: `interval_enrol.active`) while the console shows it authorised. A warning:
    the config's key is not revoked and an authorised enrolment holds the name under other keys (two MGMCs
    authorised for one MG; the loop hears only the config's)."""
    faults: list[str] = []
    warnings: list[str] = []
    for mg, (node, anonym) in sorted(_loop_pairs(mgs).items()):
        others = [
            e
            for e in enrolments.values()
            if e.label == mg and e.status == "authorised" and (e.mgmc, e.anonym) != (node, anonym)
        ]
        if not others:
            continue
        other = others[0]
        held = f"MGMC {other.mgmc.hex()}, anonym {other.anonym.hex()}"
        config = f"loop.mgs.{mg} names MGMC {node.hex()[:12]}…, anonym {anonym.hex()[:12]}…"
        mine = enrolments.get(node)
        if mine is not None and mine.status == "revoked":
            faults.append(
                f"{config}, revoked, but {mg} enrolled again with new keys ({held}, authorised): put those keys "
                f"in loop.mgs.{mg}.node and .anonym (Ansible dso_server_mgs) and start again; with the old "
                f"keys the loop would leave {mg} out"
            )
        else:
            warnings.append(
                f"{config}, but another enrolment of {mg} is authorised ({held}): the loop hears only the "
                f"config's; revoke the other (console, Operations -> Enrolment) or put its keys in loop.mgs.{mg}"
            )
    return faults, warnings


def _loop_pairs(mgs: Mapping[str, Any]) -> dict[str, tuple[bytes, bytes]]:
    """The loop's MGs' (MGMC key, anonym), by MG, in the config's order; an MG whose keys are not hex is left out:
    the node's own start refuses it, with its own words."""
    pairs: dict[str, tuple[bytes, bytes]] = {}
    for mg, entry in mgs.items():
        try:
            pairs[mg] = (bytes.fromhex(entry.node), bytes.fromhex(entry.anonym))
        except ValueError:
            continue
    return pairs


def check_loop_keys(mgs: Mapping[str, Any], enrolments: Mapping[bytes, Enrolment]) -> list[str]:
    """`loop_key_faults`, its faults as one `ConfigError` (the server does not start); the warnings returned."""
    from peergrid_ledger.settings import ConfigError

    faults, warnings = loop_key_faults(mgs, enrolments)
    if faults:
        raise ConfigError("; ".join(faults))
    return warnings


ChainWord = Callable[[list[tuple[bytes, bytes]]], tuple[set[bytes], set[bytes]] | None]


def check_at_start(users_file: Path | None, loop: Any, chain_word: ChainWord | None = None) -> list[str]:
    """What `peergrid-dso serve` and `check-config` read before the server starts: the enrolment file beside
    `users_file` (damaged: `ConfigError` naming it) and, with the closed loop's section `loop`, its MGs' keys
    against the queue (`check_loop_keys`). With `chain_word` (`serve`: `live.stored_word`, the chains' stores
    read before the node opens them), the queue as the loop's start will hold it (`as_the_loop_starts`), so a
    revocation only the chains hold is refused here in the same line, not inside the web server's start;
    without (`check-config`, which never opens the store a running server holds), as the file holds it. Returns
    the warnings. Reads; never writes or creates a file."""
    from peergrid_ledger.settings import ConfigError

    path = enrolment_file_path(users_file)
    if path is None:
        return []
    try:
        kept = EnrolmentFile(path).read()
    except EnrolmentFileError as exc:
        raise ConfigError(str(exc)) from None
    if loop is None:
        return []
    if chain_word is not None:
        kept = as_the_loop_starts(kept, loop.mgs, chain_word)
    return check_loop_keys(loop.mgs, kept)


def as_the_loop_starts(
    kept: Mapping[bytes, Enrolment], mgs: Mapping[str, Any], chain_word: ChainWord
) -> dict[bytes, Enrolment]:
    """The queue read back from the file as the closed loop's start makes it, on copies: the loop's MGs
    authorised, or revoked where the chain says so (`live.loop_enrolments`), over the file's entries for those
    keys (`EnrolmentService.keep_in`), then the chain's word on every entry (`follow_chain`). `chain_word(pairs)`
    gives, of the (MGMC key, anonym) pairs, the keys revoked and the anonyms enrolled on the DSO chain, or None
    where there is no chain yet (a first start): the file's word then stands."""
    loop_pairs = {node: (anonym, mg) for mg, (node, anonym) in _loop_pairs(mgs).items()}
    pairs = [(e.mgmc, e.anonym) for e in kept.values()] + [(k, a) for k, (a, _) in loop_pairs.items()]
    word = chain_word(pairs)
    if word is None:
        return dict(kept)
    revoked, enrolled = word
    queue = {k: replace(e) for k, e in kept.items()}
    for mgmc, (anonym, mg) in loop_pairs.items():
        queue[mgmc] = Enrolment(mgmc, anonym, mg, "revoked" if mgmc in revoked else "authorised")
    for e in queue.values():
        e.status = chain_status(e, revoked, enrolled)
    return queue

"""`peergrid-dso check-config`: what `serve` checks before it starts, less the broker, on a config file that
Ansible has rendered and not yet put in place (its `validate`).

Promises: `check_config(config)` loads the settings as `serve` does, judges the console state file as
`serve`'s start would (`check_console_state`) and runs the loop section's preflight (`live.preflight`, no
broker); it prints "<config>: ok (...)" and returns 0, each warning on stderr as `serve` says them
(`say_warnings`), or prints one line and exits 2 on the first `ConfigError` (`exit_with_config_error`). A
console state file that a running server writes throughout the check is a warning ("not judged"), never a
refusal. Reads only: it never writes, creates or removes a file beside the config's or in the DSO's data dir
(the state file is judged on a copy in a temporary directory, one copy at a time, each removed once judged)
and never opens the live state file with SQLite. Argument parsing and dispatch stay in `cli`.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from peergrid_ledger.settings import ConfigError, exit_with_config_error, load_settings

PROGRAM = "peergrid-dso"  # the start of its lines, as `serve`'s (`cli`)


def check_config(config: str) -> int:
    """What `serve` checks before it starts, less the broker (Ansible validates a rendered dso.yaml with it
    before it replaces the working one): the console state file too (`check_console_state`; one a running
    server writes throughout the check is a warning, not judged). Reads; never writes, creates or removes a
    file beside the config's."""
    from peergrid_dso.auth.store import console_db_path
    from peergrid_dso.config import DsoSettings
    from peergrid_dso.live import preflight

    try:
        settings = load_settings(config, DsoSettings)
        busy = None
        if (state_file := console_db_path(settings.console.users_file)) is not None:
            busy = check_console_state(state_file)
        from peergrid_dso.services.enrolment_file import check_at_start

        warnings = check_at_start(settings.console.users_file, settings.loop) + preflight(
            settings, broker=False
        )
        if busy is not None:
            warnings.insert(0, busy)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    say_warnings(warnings)
    loop = settings.loop
    what = "no loop section" if loop is None else f"loop: {len(loop.mgs)} MGs on {loop.case}"
    counted = f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}" if warnings else ""
    print(f"{config}: ok ({what}{counted})")
    return 0


SETTLE_PAUSES_S = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)  # before each copy of the state file: 0.78 s


def check_console_state(path: Path, pauses: Sequence[float] | None = None) -> str | None:
    """`ConfigError` with `serve`'s own line (`ConsoleDb.open`'s verdict) when the console state file (the
    sessions, security log and operators' audit trail `serve` keeps in the DSO's data dir) is one `serve`
    would refuse: not SQLite, damaged, or not the console's. Judged on a copy in a temporary directory, the
    file and its write-ahead log as found: SQLite, even read-only, makes `-wal`/`-shm` files beside a WAL
    database, and `ConsoleDb.open` itself writes. Missing or empty is fine (`serve` makes it).

    A running server writes and checkpoints the file while it is copied, and a copy of the main file taken
    before a checkpoint with a log taken after it reads as malformed although the file is sound: a copy
    counts only if the main file did not move while it and the log were copied (size, times, inode) and the
    log did not come, go or get shorter (`steady_copy`); commits only append to the log, and SQLite reads a
    log up to its last whole commit, so a log that grew while copied is still a consistent snapshot with
    that main file (a server committing every few ms no longer keeps a damaged file unjudged, review31
    R31-6). A refusal counts only if the next steady copy has the same main file and is refused too (a
    filesystem whose timestamps are coarser than the writes may hide a move; the main file only changes at
    a checkpoint, so two equal copies mean it stood still between them). Each attempt's copy is removed once
    judged (R31-7: never more than one copy in the temporary directory). Returns a warning, not a verdict,
    when no copy is steady or two refused copies always differ within `pauses` (one copy after each;
    `SETTLE_PAUSES_S` unless given): the file is busy, which says a server has it open (whose own start
    judged it), and Ansible's validate must neither fail the host on that nor advise moving a live file
    aside. A file that stands still is refused as before.

    Not SQLite's backup API on the live file (R31's suggestion): a read-only connection to a WAL database
    whose server has just closed it makes and leaves a `-wal` and `-shm` beside it (SQLite 3.40), so it
    could write in the data dir whenever the server stops at that moment."""
    from peergrid_dso.auth.store import ConsoleDb, ConsoleStateError

    pauses = SETTLE_PAUSES_S if pauses is None else pauses
    refused: dict[str, str] = {}  # a refused copy's digest -> what ConsoleDb said of it
    with tempfile.TemporaryDirectory(prefix="peergrid-dso-check-") as scratch:
        for attempt, pause in enumerate(pauses):
            time.sleep(pause)
            if not path.exists():  # (again: an operator may have moved it aside meanwhile)
                if path.is_symlink():
                    raise ConfigError(f"{path}: cannot read the console state file: a dangling link")
                return None
            copy = Path(scratch) / str(attempt) / path.name
            copy.parent.mkdir()
            try:
                digest = steady_copy(path, copy)
                if digest is None:
                    continue  # moved while copied: copied again after a pause
                if copy.stat().st_size == 0:
                    return None
                try:
                    ConsoleDb.open(copy).close()
                    return None
                except ConsoleStateError as err:
                    verdict = f"{path}{str(err).removeprefix(str(copy))}"
            finally:  # only the digests are kept: one copy in the scratch dir at a time
                shutil.rmtree(copy.parent)
            if digest in refused:
                raise ConfigError(verdict)
            refused[digest] = verdict
    waited = sum(pauses)
    return (
        f"{path}: the console state file was being written throughout {len(pauses)} copies over "
        f"{waited:.2f} s (a server running on it?): not judged; `serve` judges it when it starts"
    )


def steady_copy(path: Path, copy: Path) -> str | None:
    """The state file and its write-ahead log copied to `copy` (and its `-wal`), with the SHA-256 of the
    main file's copy; None when the main file moved while both were copied (size, mtime, ctime or inode) or
    the log came, went (SQLite removes it when the last connection closes) or got shorter (a checkpoint that
    restarted it). A log that grew is a consistent copy: the main file changes only at a checkpoint, so with
    it unmoved every frame the log holds is in it already or a commit after it; commits append frames, each
    checksummed over the ones before it, and SQLite reads a log up to its last whole commit. (The last two
    cases are as safe by that reasoning; they are copied again only to be cautious, at one pause's cost.)"""
    sources = (path, path.with_name(path.name + "-wal"))
    targets = (copy, copy.with_name(copy.name + "-wal"))
    try:
        before = [stat_key(source) for source in sources]
        for source, target, seen in zip(sources, targets, before, strict=True):
            if seen is not None:
                shutil.copyfile(source, target)
        after = [stat_key(source) for source in sources]
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigError(f"{path}: cannot read the console state file: {why}") from None
    (main_before, log_before), (main_after, log_after) = before, after
    if main_after != main_before or (log_before is None) != (log_after is None):
        return None
    if log_before and log_after and log_after[0] < log_before[0]:
        return None  # a log a checkpoint restarted
    return hashlib.sha256(copy.read_bytes()).hexdigest()


def stat_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        seen = path.stat()
    except FileNotFoundError:
        return None
    return seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns, seen.st_ino


def say_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"{PROGRAM}: WARNING: {warning}", file=sys.stderr)

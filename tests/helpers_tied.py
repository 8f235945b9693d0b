"""Checks shared by the tests that kill a parent and look for the children it left (`peergrid_ledger.tied`).

Every child is looked up by PID in /proc, never by name, and a test's own clean-up kills only the PIDs it
collected, so a failing test does not leave behind the orphans it found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def alive(pid: int) -> bool:
    """Running: a zombie (killed, not yet reaped by whoever inherited it) is dead for our purposes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(root: int) -> dict[int, str]:
    """Every process below `root` (children, their children, ...) that runs now, with its command line."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # ended while we looked
        parents.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        if not alive(pid):
            continue
        try:
            found[pid] = (
                Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(parents.get(pid, []))
    return found


def survivors(pids: dict[str, int], within_s: float) -> dict[str, int]:
    """The children still running once all are gone or `within_s` passed (polled, not slept on)."""
    deadline = time.monotonic() + within_s
    while True:
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_for(path: Path, process: subprocess.Popen[str], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not path.exists():
        assert process.poll() is None, f"the parent exited with {process.returncode}"
        assert time.monotonic() < deadline, f"no {path.name} in {within_s:.0f} s"
        time.sleep(0.1)


@contextlib.contextmanager
def cleaned_up(parent: subprocess.Popen[str]) -> Iterator[dict[str, int]]:
    """The children's PIDs (the test fills them in), killed at the end with the parent even when the test
    failed, so that it does not leave the orphans it found."""
    pids: dict[str, int] = {}
    try:
        yield pids
    finally:
        parent.kill()
        parent.wait()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def kill_and_find_no_survivor(
    parent: subprocess.Popen[str], pids: dict[str, int], sig: int = signal.SIGKILL
) -> int:
    """The parent's exit code after `sig`, once none of its children runs any more."""
    assert survivors(pids, 0) == pids  # every child runs until then
    parent.send_signal(sig)
    code = parent.wait(timeout=30)
    assert survivors(pids, 10) == {}
    return code

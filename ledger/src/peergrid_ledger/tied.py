"""Child processes that die with the process that started them (Linux `PR_SET_PDEATHSIG`).

Promises: `tied_popen(argv, **popen_kwargs)` is `subprocess.Popen(argv, **popen_kwargs)` whose child the kernel
sends SIGKILL as soon as the process that started it dies, whatever the cause: SIGKILL (pytest-timeout,
`subprocess.run`'s timeout, the OOM killer), a crash, or an exit that skipped its cleanup. The setting is made in
the child between fork and exec and survives exec, so a console script whose shebang execs the venv's Python, or
a shell wrapper that execs its program, keeps it. A child whose parent died before the setting took kills
itself there and never execs.
The kernel ties the child to the *thread* that forked it, not to the process: a call from any thread but the
main one forks in one long-lived spawner thread of this module, so that a worker thread ending does not kill
the children it started.
`tie_to(parent)` is the same tie for a bare `os.fork()` child that never execs: it calls the returned
function first thing.
Lives in the ledger, the one package every component imports (firmware-sim's testbed and broker, the ledger's
lab network of node processes, the tests). Assumes Linux; elsewhere it is plain `Popen` (the lab runs on
Linux). Does not reach grandchildren (a child that starts its own ties them itself) nor a set-user-ID program
(the kernel clears the setting on its exec).
Why SIGKILL and not SIGTERM: an orphan that traps SIGTERM and hangs in its shutdown is the one that sat at
30-68 % CPU under every later test; a tied child ends like a power cut, which every node has to survive anyway.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
T = TypeVar("T")


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once, here: the child between fork and exec should call it, not load a library.
_PRCTL = _load_prctl()


def tie_to(parent: int) -> Callable[[], None]:
    """The `preexec_fn` that makes the child die with `parent` (its parent's PID, read before the fork)."""
    prctl = _PRCTL

    def tie() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the setting took: nobody would kill us later
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


def tied_popen(argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` as `subprocess.Popen` does, tied to this process (module docstring)."""
    if "preexec_fn" in popen_kwargs:
        raise TypeError("tied_popen sets preexec_fn itself")
    if _PRCTL is None:
        return subprocess.Popen(argv, **popen_kwargs)

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(argv, preexec_fn=tie_to(os.getpid()), **popen_kwargs)

    if threading.current_thread() is threading.main_thread():
        return start()
    return _SPAWNER.call(start)


class _Spawner:
    """One daemon thread that lives as long as the process and forks for the other threads (it is never
    joined: it ends with the process, which is when its children should die)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._pid = 0  # the process the thread runs in: a fork of this process has no such thread

    def call(self, job: Callable[[], T]) -> T:
        with self._lock:
            if self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                threading.Thread(
                    target=self._serve, args=(self._jobs,), name="tied-spawner", daemon=True
                ).start()
                self._pid = os.getpid()
            done: Future[T] = Future()
            self._jobs.put((job, done))
        return done.result()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        while True:
            job, done = jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:  # handed to the caller's thread, which raises it
                done.set_exception(exc)


_SPAWNER = _Spawner()

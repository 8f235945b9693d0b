"""Keep HiGHS's banner off the terminal.

Promises: after `silence_highs_banner()` no HiGHS instance made by this process prints its licence banner.
HiGHS writes it from C++ when the first `Highs()` of a process is constructed, before any option such as
`output_flag` can be set, and only that once; so the first instance is made here with file descriptor 1
pointed at /dev/null for the few milliseconds it takes. Call it before any solver is built; it is cheap
and idempotent. Must never swallow anything but that construction's output (the C buffers are flushed
before the descriptor is restored).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

_lock = threading.Lock()
_done = False


def silence_highs_banner() -> None:
    global _done
    with _lock:
        if _done:
            return
        import highspy

        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            highspy.Highs()  # type: ignore[no-untyped-call]
            ctypes.CDLL(None).fflush(None)  # the banner may sit in C stdio's buffer when 1 is a pipe
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _done = True

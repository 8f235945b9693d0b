"""systemd integration: Type=notify readiness, watchdog, status, and where the logs go.

Promises: `Notifier` sends READY=1 once, WATCHDOG=1 only when told the poll loop made progress, STATUS=<text>
and STOPPING=1, through systemd-python's `sd_notify` (which reads $NOTIFY_SOCKET at each call); without
$NOTIFY_SOCKET every call is a no-op. `setup_logging` sends records to journald (JournalHandler with a bare
message format: journald adds time and unit itself) when the process runs under systemd — stderr is the
journal stream ($JOURNAL_STREAM) or $INVOCATION_ID is set — and to stderr otherwise; at any level above DEBUG
it leaves out pymodbus's own messages but its critical ones (the poll says what failed, per device).
Never raises: a broken notify socket must not stop the daemon.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("peergrid.edge.notify")


def _sd_notify(message: str) -> bool:
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    try:
        from systemd import daemon
    except ImportError:  # pragma: no cover - systemd-python is a Linux dependency
        return False
    try:
        return bool(daemon.notify(message))
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


class Notifier:
    def __init__(self) -> None:
        self.ready_sent = False
        self.last_status = ""

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            _sd_notify(f"READY=1\nSTATUS={status}")
            self.last_status = status

    def watchdog(self) -> None:
        _sd_notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        if text != self.last_status:
            self.last_status = text
            _sd_notify(f"STATUS={text}")

    def stopping(self) -> None:
        _sd_notify("STOPPING=1\nSTATUS=stopping")


def under_systemd() -> bool:
    if os.environ.get("INVOCATION_ID"):
        return True
    stream = os.environ.get("JOURNAL_STREAM", "")
    if ":" in stream:
        try:
            st = os.fstat(sys.stderr.fileno())
        except (OSError, ValueError):
            return False
        return stream == f"{st.st_dev}:{st.st_ino}"
    return False


def setup_logging(level: str) -> str:
    """Configure the root logger; returns "journald" or "stderr"."""
    root = logging.getLogger()
    root.setLevel(level)
    # pymodbus's own ERROR on a device that does not answer repeats what the poll logs in our words (the device,
    # its quarantine, its return) and appends the last 20 Modbus frames of every device of this process as hex:
    # U4's owner got 160 such lines in 50 s of one silent PV, most of them the healthy battery's, load's and
    # meter's. Its messages are kept at DEBUG, where an operator who asks for the frames gets them.
    logging.getLogger("pymodbus").setLevel(
        logging.NOTSET if root.level <= logging.DEBUG else logging.CRITICAL
    )
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if under_systemd():
        try:
            from systemd.journal import JournalHandler

            journal = JournalHandler(SYSLOG_IDENTIFIER="peergrid-edge")
            journal.setFormatter(logging.Formatter("%(message)s"))
            root.addHandler(journal)
            return "journald"
        except ImportError:  # pragma: no cover
            pass
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    return "stderr"

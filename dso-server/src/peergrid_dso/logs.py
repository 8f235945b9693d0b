"""Where `peergrid-dso serve` writes its log lines, and in what form.

Promises: `log_config(level)`, uvicorn's log config, gives the root logger one stderr handler, so the server's
own lines (peergrid_dso.*, the ledger's nodes, uvicorn's: they keep no handler of their own) read
`<time> <logger> <LEVEL> <message>`, as the edge's do (peergrid_edge.notify). Where stderr is the journal's
stream (systemd sets $JOURNAL_STREAM to its device:inode) journald stamps each line with its own time, so the
time is left out and the line opens with its syslog priority (`<4>` for a warning), which journald takes as
the entry's priority (SyslogLevelPrefix=, on by default) and strips: `journalctl -p warning` finds them. The
edge writes to journald through systemd-python's JournalHandler; the DSO server does not depend on it, and
the prefix gives journald the same time and priority. A unit whose stderr goes to a file (StandardError=file:)
keeps the time: only the stream test counts, not $INVOCATION_ID. Applied by uvicorn as it starts, so an
in-process `serve` that stops before (a refused config, or a test's stand-in for uvicorn) leaves logging as it was.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

WITH_TIME = "%(asctime)s %(name)s %(levelname)s %(message)s"  # the edge's (peergrid_edge.notify)
FOR_JOURNAL = "<%(priority)d>%(name)s %(levelname)s %(message)s"  # journald adds the time
# syslog priorities (sd-daemon(3)'s SD_ERR ... SD_DEBUG) of logging's levels; a level between two takes the
# lower one's (a custom level 25 is told as INFO's 6)
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7
# the loggers `--log-level` sets (uvicorn sets its own from it); the other libraries' (pandapower, pyomo, ...)
# stay at warning and worse whatever it says: at info pandapower alone tells at every start that plotly is
# missing, which the server's log never showed before (its lines then went to Python's last-resort handler)
OURS = ("peergrid_dso", "peergrid_ledger", "peergrid_controller")


def journal_stream(stream: TextIO) -> bool:
    """Whether `stream` is the journal's stream systemd connected ($JOURNAL_STREAM names its device:inode)."""
    named = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in named:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no file behind it (a test's StringIO)
        return False
    return named == f"{st.st_dev}:{st.st_ino}"


class JournalLines(logging.Formatter):
    """Every line of a record opens with its priority, a traceback's too: journald takes each line of the
    stream as an entry of its own, so a `log.exception`'s trace would otherwise be told at info."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", f"\n<{getattr(record, 'priority', DEBUG_PRIORITY)}>")


class JournalPriority(logging.Filter):
    """Gives each record its syslog priority (`record.priority`) for the journal's line prefix."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.priority = next((p for level, p in PRIORITIES if record.levelno >= level), DEBUG_PRIORITY)
        return True


def log_config(level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` document for the server (uvicorn's `log_config=`, applied when uvicorn
    builds its config, before the app's lifespan starts anything that logs): the root logger at `level` (a name,
    "info" or "WARNING") for peergrid's loggers (`OURS`), at warning or `level` if higher for the others, with
    one handler on stderr, its lines without the time and with the priority prefix where stderr is the
    journal's stream. uvicorn's own loggers keep no handler of their own and pass their lines to it; its
    `log_level` still sets theirs."""
    journal = journal_stream(sys.stderr)
    handler: dict[str, Any] = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "line",
    }
    doc: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"format": FOR_JOURNAL if journal else WITH_TIME}},
        "handlers": {"stderr": handler},
        "root": {"level": max(logging.WARNING, logging.getLevelName(level.upper())), "handlers": ["stderr"]},
        "loggers": {name: {"level": level.upper()} for name in OURS},
    }
    if journal:
        doc["filters"] = {"priority": {"()": JournalPriority}}
        doc["formatters"]["line"] = {"()": JournalLines, "fmt": FOR_JOURNAL}
        handler["filters"] = ["priority"]
    return doc

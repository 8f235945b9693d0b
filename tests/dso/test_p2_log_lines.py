"""`peergrid-dso serve` writes its own log lines with their time and level, as the edge does (P2, session 21).

U1's `make run`: dso.log read "dso-ieee33: dropped_proposal refused (from 4e4d…; 2 so far)" where the MGMCs'
logs read "2026-12-07 03:13:30,763 peergrid.edge INFO …": the server configured only uvicorn's loggers, so
its own lines reached Python's last-resort handler (the bare message, warnings and worse only: its info lines
were lost). Now the root logger has one stderr handler (`peergrid_dso.logs.log_config`, applied by uvicorn).
Where stderr is the journal's stream ($JOURNAL_STREAM names its device:inode) journald stamps the time: the
line leaves it out and opens with its syslog priority, which journald takes and strips. A real server process
on an inherited loopback socket, a refused login its logged line (peergrid_dso.security, a warning).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from peergrid_dso.logs import JournalPriority, journal_stream, log_config
from peergrid_ledger.tied import tied_popen

from .test_s1_serve_listen_fd import serve_argv

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
REFUSED = (
    "peergrid_dso.security WARNING refused bad_login: POST /console/api/login: wrong user name or password"
)


def _refused_login(port: int, deadline: float) -> None:
    """Posts a wrong password until the server answers it (401), from the moment it accepts. A post that timed
    out may have been answered all the same (a loaded CI: the server counted the failure), so once one did, the
    login throttle's 429 is that earlier refusal's consequence and ends the wait too."""
    body = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    timed_out = False
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/console/api/login", body, {"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as answer:
            assert answer.code == 401 or (timed_out and answer.code == 429), answer.code
            return
        except OSError as err:
            if time.monotonic() > deadline:
                raise
            timed_out = timed_out or isinstance(err, TimeoutError) or "timed out" in str(err)
            time.sleep(0.2)
        else:
            raise AssertionError("a wrong password was let in")


def _serve_and_refuse_a_login(tmp_path: Path, journal: bool) -> list[str]:
    """A server's log lines (stdout and stderr in one file, as the lab's dso.log) around one refused login;
    `journal`: its stderr named as the journal's stream."""
    config = tmp_path / "dso.yaml"
    doc = {"node_id": "dso-p2", "broker": {"port": 9}, "http": {"host": "127.0.0.1", "port": 9}}
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    log = tmp_path / "dso.log"
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    with socket.create_server(("127.0.0.1", 0)) as listener, log.open("wb") as out:
        port, fd = int(listener.getsockname()[1]), listener.fileno()
        if journal:
            st = os.fstat(out.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        argv = serve_argv(config, fd)
        server = tied_popen(argv, pass_fds=(fd,), stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _refused_login(port, time.monotonic() + 120)
        deadline = time.monotonic() + 30
        while "refused bad_login" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(30)
    return log.read_text().splitlines()


def test_serve_writes_its_own_lines_with_time_and_level(tmp_path: Path) -> None:
    lines = _serve_and_refuse_a_login(tmp_path, journal=False)
    assert any(
        re.fullmatch(f"{TIME} {REFUSED} \\(user=nobody client=127.0.0.1\\)", line) for line in lines
    ), lines
    # uvicorn's lines too, its info lines kept at --log-level info; other libraries' info lines are not kept
    assert all(re.match(f"{TIME} (uvicorn|peergrid_)", s) for s in lines if " INFO " in s), lines
    assert any(
        re.fullmatch(f"{TIME} uvicorn.error INFO serving on http://127.0.0.1:\\d+ .*", s) for s in lines
    )
    assert any(
        re.fullmatch(f'{TIME} uvicorn.access INFO .*"POST /console/api/login HTTP/1.1" 401', s) for s in lines
    )


def test_on_the_journals_stream_the_lines_carry_their_priority_and_no_time(tmp_path: Path) -> None:
    lines = _serve_and_refuse_a_login(tmp_path, journal=True)
    assert f"<4>{REFUSED} (user=nobody client=127.0.0.1)" in lines, lines
    assert any(line.startswith("<6>uvicorn.error INFO serving on http://127.0.0.1:") for line in lines)
    assert not any(re.match(TIME, line) for line in lines), lines


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (25, 6),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
    ],
)
def test_each_level_has_its_syslog_priority(level: int, priority: int) -> None:
    record = logging.LogRecord("peergrid_dso.x", level, __file__, 1, "m", None, None)
    assert JournalPriority().filter(record) and record.priority == priority


def test_a_stream_is_the_journals_only_where_journal_stream_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "err").open("w") as stream, (tmp_path / "other").open("w") as other:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert journal_stream(stream) and not journal_stream(other)
        monkeypatch.setenv("JOURNAL_STREAM", "")
        assert not journal_stream(stream)
        monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")  # a unit, its stderr not the journal's
        assert not journal_stream(stream)


def test_on_the_journals_stream_every_line_of_a_traceback_carries_the_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # journald takes each line of its stream as an entry: a traceback's lines without the prefix were info
    with (tmp_path / "err").open("w") as err:
        st = os.fstat(err.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        monkeypatch.setattr(sys, "stderr", err)
        line = log_config("info")["formatters"]["line"]
    formatter = line["()"](line["fmt"])
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "peergrid_dso.r36", logging.ERROR, __file__, 1, "it failed", None, sys.exc_info()
        )
    assert JournalPriority().filter(record)
    lines = formatter.format(record).splitlines()
    assert lines[0] == "<3>peergrid_dso.r36 ERROR it failed" and len(lines) > 2, lines
    assert all(s.startswith("<3>") for s in lines), lines

"""When the lab's DSO node is ready, and whether it was ready in time for the loop's t0.

Promises: `wait_ready(process, port, status_file, timeout, log)` returns once the DSO server on `port` (the
testbed's own socket, bound before the process started and handed to it: `processes.Testbed.start_dso`)
answers `/api/health` (uvicorn serves only after its lifespan assembled the DSO node - key, geneses, stores,
feeder, relays, tariff file; until then a poll waits in the socket's backlog, for 5 s at most, and another
follows), and with a `status_file` (the closed loop) once that health says `ok` with the loop running (and,
where it shows its health listener, that listener hearing the broker: dso `health_listener`) and the node's
status file (`loop.status_file`, written by the ledger node's ticker every 0.2 s once its replicas run) exists;
without one (the console's lab mode) any answer is ready. It raises `TestbedError` with one line naming what
was missing when the process exits or the timeout passes, and `ValueError` for a port that is none (0: the
testbed knows the port before the server starts). That is all "ready" can honestly mean before the MGMCs start:
the DSO's enrolments (on the DSO chain, whose authorities are the DSO and every MGMC: 1 of 7 finalises nothing)
and its tariffs (on the MGMC chain, the MGMCs' alone) become final only once the MGMCs run. `late(...)` is the one line the lab
fails with when the DSO was ready too late to leave the MGMCs their start before t0, or None; `StartTimes`
is what the start took, relative to t0, written to `<records>/start.json` for the report. Once the MGMCs run,
`wait_postings(process, port, mgs, priced_from, until, log, capacity_from=...)` follows the same health until
its loop section shows every MG `enrolled`, where the DSO prices the cover (`priced_from`: the loop's first
interval) `tariffs_through` at least that interval, and where the DSO's config names connection capacities
(`capacity_from`: the loop's first interval) every one its health lists in `capacities` standing from that
interval, or `until` (t0) comes, and returns what it saw (`Postings`: when each became final, by the lab's
clock); `unposted(times)` is the lab's one line when any was not final by t0, else None (a capacity landed
after the MG's first position - the day-ahead session's accept - stands only from the interval after it, and
the lab's make-whole would silently pay nothing: a wrong result, so it fails the lab as a missing enrolment
does rather than warn in start.json). Both are `dso_postings`', re-exported here. A health that lists no
`capacities` posts none (no MG names one, or an MGMC chain without the uplift contract): nothing to wait for.
`delayed(argv, s)` is a slow DSO start for the tests (`--dso-start-delay-s`): the same process, after `s`
seconds. `moved_t0(t0, ready, need_s)` is the lab's first interval when a DSO node ready late moves it (a lab
whose chains hold no interval clock): never earlier than `t0`, and `need_s` after the node's readiness at the
earliest; `clock_devices` stops and resumes firmware-sim's clock (its control API), so the devices' first
interval moves with it. Binds nothing; speaks HTTP over loopback only.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peergrid_sim.broker import LOOPBACK
from peergrid_sim.dso_postings import Postings as Postings  # re-exported, as unposted is: tests use both
from peergrid_sim.dso_postings import unposted as unposted
from peergrid_sim.processes import TestbedError

START_FILE = "start.json"

# With --dayahead the MGMCs run the day-ahead session and its forward trades before the first interval, and
# the edge ends that stage by its own deadline: four phase timeouts and 0.25 s before the first interval (edge
# trader.dayahead_deadline; 8.25 s at the lab's 2-s phases). The session took about 7 s for 6 MGMCs x 96
# intervals at 200-ms blocks (load 3-4). With the plain warm-up the daemons came up about 9 s before the first
# interval, past that deadline, so every MGMC refused the stage and traded intraday: the warm-up grows by this
# much (45 s in all, measured to work; 55 s since the DSO starts first, L6). The default; `--lead-s` sets the
# whole lead. T2 measured, in s after the testbed's start (ieee33, 2 intervals): at load 5 the MGMCs up at
# 4-5, the session and its forward stage done at 10-10.5, t0 at 45; at load 10 up at 14-17, done at 25-25.4,
# t0 at 48 (the testbed's own start 3 s); the session's close deadline is t0 - 12.5 s in the lab (4 phases and
# the clear's 4.5-s margin), so the stage needed a lead of about 35 s at load 10. An MGMC killed and restarted
# mid-session (its imports again) missed that deadline with the 45 s at load 11.7.
DAYAHEAD_LEAD_S = 30.0
# What the MGMCs need between the DSO node's readiness, when the lab starts them, and t0 (`ClosedLoop.need_s`;
# with less a lab whose t0 may not move fails at once, saying by how much, rather than run a first interval
# late, and any other moves t0: `moved_t0`, with MGMC_START_LOADED_S): their start
# and the DSO's enrolments of them final on the DSO chain, which needs their votes (its tariffs on the MGMC
# chain land beside them). L6 measured, ieee33, from the MGMCs' spawn to the last enrolment final: 6.5 s at
# load 4, 6.9-7.1 s at load 7-11 (two labs at once), 11-14 s at load 17 (the MGMCs' own start, spawn to
# broker connection: 2.2 s at load 4, about 5 s at load 7). With --dayahead the session on top (about 6 s
# after the MGMCs are up at load 5, 9-11 s at load 10, T2) and its close deadline, 12.5 s before t0 in the lab.
MGMC_START_S = 8.0
# ... and where the lab may move t0 (`ClosedLoop.t0_moves`): a DSO node ready late means a loaded machine, on
# which the MGMCs start slower too (L6: 11-14 s at load 17; T5, load 16-20: 8 s left none of six enrolled in
# one of four runs), and the margin costs wall only when the node was late
MGMC_START_LOADED_S = 16.0
DAYAHEAD_STAGE_S = 10.0 + 12.5
# The default lead (`warmup_s`) is the lab's start to t0 with the DSO started first: firmware-sim (1.1-2.3 s),
# the DSO node's start-up (3.3 s at load 4, 6.4-10.2 s at load 5-11 with two labs at once, 12.9 s at load 17)
# and MGMC_START_S, with room for a suite's load: 15 s failed both of two labs at load 5 (DSO ready 4.4 and
# 4.6 s before t0), so 25


def health(port: int, timeout: float = 5.0) -> dict[str, Any] | None:
    """The DSO server's `/api/health` document, or None while it does not answer one."""
    return health_answer(port, timeout)[0]


def health_answer(port: int, timeout: float = 5.0) -> tuple[dict[str, Any] | None, str]:
    """`health`, and when it is None why (the error, or the answer's HTTP status), for the lab's one line. The
    whole answer within `timeout`, not each read: a socket that sends a byte now and then is no answer (R32: a
    poll taken for paho's socket pair got one b"0" per MQTT publish, and its status line never ended)."""
    started = time.monotonic()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(
                f"GET /api/health HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = http.client.HTTPResponse(_Timed(sock, started + timeout))  # type: ignore[arg-type]
            answer.begin()
            if answer.status != 200:
                return None, f"HTTP {answer.status}"
            doc = json.loads(answer.read())
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__} after {time.monotonic() - started:.1f} s: {exc}"
    return (doc, "") if isinstance(doc, dict) else (None, "not a JSON object")


class _Timed(io.RawIOBase):
    """A socket's reads for `http.client.HTTPResponse` (its `makefile`), each given what is left until
    `deadline` (monotonic s)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not end in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def is_ready(doc: dict[str, Any] | None) -> bool:
    """The health of a DSO server whose closed-loop node runs (a dead node says `degraded`, and so does a
    health listener that does not hear the broker)."""
    loop = (doc or {}).get("loop")
    return bool(doc and doc.get("status") == "ok" and isinstance(loop, dict) and loop.get("running"))


def not_ready(doc: dict[str, Any] | None) -> str:
    """What a health answer that is not `is_ready` lacks, for the lab's one line."""
    loop = (doc or {}).get("loop")
    if doc is None or not isinstance(loop, dict) or not loop.get("running"):
        return "its node running in /api/health"
    listener = doc.get("health_listener")
    if isinstance(listener, dict) and listener.get("ok") is False:
        return f"its health listener hearing the broker in /api/health (it is {listener.get('state')})"
    ledger = loop.get("ledger")  # since D1 (session 20): the node's ledger transport, with a reason
    if isinstance(ledger, dict) and ledger.get("ok") is False:
        return f"its node's ledger transport on the broker in /api/health ({ledger.get('reason')})"
    return f"status ok in /api/health (it says {doc.get('status')!r})"


def wait_ready(
    process: subprocess.Popen[bytes], port: int, status_file: Path | None, timeout: float, log: Path
) -> None:
    """Returns once the DSO server on `port` is ready (see the module's contract)."""
    if not 0 < port < 65536:
        raise ValueError(f"wait_ready needs the DSO server's own port (1-65535), not {port}")
    started = time.monotonic()
    deadline = started + timeout
    missing, polls, unanswered = "a health answer", 0, ""
    while time.monotonic() < deadline and process.poll() is None:
        doc, why = health_answer(
            port, max(0.2, min(5.0, deadline - time.monotonic()))
        )  # not past the timeout
        polls += 1
        if doc is None:
            unanswered = f"; the last unanswered poll: {why}"
        elif status_file is None:  # the console's lab mode: no node to wait for
            return
        elif not is_ready(doc):
            missing = not_ready(doc)
        elif not status_file.exists():
            missing = f"its ledger node's status file ({status_file.name})"
        else:
            return
        time.sleep(0.1)
    if process.poll() is not None and missing == "a health answer":
        raise TestbedError(f"the DSO server exited with {process.returncode} before it answered; see {log}")
    gone = f" (it exited with {process.returncode})" if process.poll() is not None else ""
    raise TestbedError(
        f"the DSO server on port {port} never showed {missing}{gone} ({polls} polls of /api/health in "
        f"{time.monotonic() - started:.1f} s of its {timeout:.0f} s{unanswered}); see {log}"
    )


def wait_postings(
    process: subprocess.Popen[bytes], port: int, mgs: tuple[str, ...], priced_from: int | None, until: float,
    log: Path, period_s: float = 0.2, capacity_from: int | None = None,
) -> Postings:  # fmt: skip
    """Follow the DSO's health until every MG is enrolled, (with `priced_from`) the cover priced through that
    interval and (with `capacity_from`) every capacity it posts standing from that one, or until `until`
    (wall epoch s: t0); what it saw (`Postings`). A DSO process that exits meanwhile is `TestbedError` at
    once, with one line."""
    found = Postings(tuple(mgs), priced_from, capacity_from=capacity_from)
    while True:
        found = found.seen(health(port, max(0.2, min(2.0, until - time.time()))), time.time())
        if found.done or time.time() >= until:
            return found
        if process.poll() is not None:
            raise TestbedError(
                f"the DSO server exited with {process.returncode} while the MGMCs started; see {log}"
            )
        time.sleep(max(0.0, min(period_s, until - time.time())))


@dataclass(frozen=True)
class StartTimes:
    """Wall times (epoch s) of the lab's start: the testbed's, the DSO's spawn and readiness, the MGMCs' spawn
    (None until then), and the first interval's t0; `need_s`, what the MGMCs were to have before t0."""

    t0: float
    started: float
    dso_started: float
    dso_ready: float
    need_s: float
    mgmcs_started: float | None = None
    postings: Postings | None = None  # what the DSO's health showed final before t0 (`wait_postings`)
    moved_s: float = (
        0.0  # how much later than the lead set it t0 is: the DSO node was ready late (`moved_t0`)
    )

    def relative(self) -> dict[str, Any]:
        """Each moment in s relative to t0 (negative: before it), the DSO's own start-up, how far t0 moved,
        and (once the lab waited for them) its postings as `final` (`Postings.relative`)."""
        doc: dict[str, Any] = {
            k: None if v is None else round(v - self.t0, 3)
            for k, v in asdict(self).items()
            if k not in ("t0", "need_s", "postings", "moved_s")
        }
        doc |= {
            "t0": self.t0,
            "need_s": self.need_s,
            "moved_s": round(self.moved_s, 3),
            "dso_start_up_s": round(self.dso_ready - self.dso_started, 3),
            "dso_ready_before_t0_s": round(self.t0 - self.dso_ready, 3),
        }
        if self.postings is not None:
            doc["final"] = self.postings.relative(self.t0)
        return doc

    def write(self, records: Path) -> Path:
        path = records / START_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.relative()), encoding="utf-8")
        os.replace(tmp, path)
        return path


def late(times: StartTimes, lead_s: float) -> str | None:
    """The lab's one line when the DSO node was ready later than `need_s` before t0 (the MGMCs, started only
    after it, could not be up for the first interval, which would then run unseen or late), else None."""
    left = times.t0 - times.dso_ready
    if left >= times.need_s:
        return None
    took = times.dso_ready - times.started
    when = f"{-left:.1f} s after t0" if left < 0 else f"only {left:.1f} s before t0"
    short = times.need_s - left
    return (
        f"the DSO node was ready {when} ({took:.1f} s after the lab's start, its own start-up "
        f"{times.dso_ready - times.dso_started:.1f} s); the MGMCs need {times.need_s:.1f} s before t0: late by "
        f"{short:.1f} s; no interval was run (a --lead-s of at least {math.ceil(lead_s + short)} s would have held)"
    )


def moved_t0(t0: float, ready: float, need_s: float) -> float:
    """The first interval's start once the DSO node was ready at `ready`: `t0` (what the lead set) when that
    left the MGMCs, started now, their `need_s`; else `ready + need_s`, later by just what the node's start
    was late. Only for a lab whose t0 nothing fixed before the node started: no interval clock in the MGMC
    genesis (`closedloop.settles_by_both` false), or a provisional one the lab replaces on chain with the
    moved t0's (`lab_clock.clock_key`; the DSO's `disputes` then meter on the chain's clock)."""
    return max(t0, ready + need_s)


def clock_devices(
    endpoints: list[dict[str, Any]], request: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any] | None:
    """One `POST /clock` to firmware-sim's control API, the control entry of its `endpoints` (`stop_at`: the
    devices' day stands still there; `resume_at`: it reads that at the wall time given and runs on), and its
    answer (`t`, `speed`, `stop`: where it stands still, later than asked when it was past that already). No
    control entry (a lab started without devices): nothing to do, None. Refused or unanswered: `TestbedError`."""
    control = next((e for e in endpoints if e.get("kind") == "control"), None)
    if control is None:
        return None
    url = f"http://{control['host']}:{control['port']}/clock"
    sent = urllib.request.Request(url, data=json.dumps(request).encode())
    sent.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(sent, timeout=timeout) as answer:
            doc = json.loads(answer.read())
    except urllib.error.HTTPError as err:
        reason = err.read().decode("utf-8", errors="replace")[:200]
        raise TestbedError(f"firmware-sim refused {request} on its clock: {reason}") from None
    except (OSError, ValueError) as err:
        raise TestbedError(f"firmware-sim's control API ({url}) did not take {request}: {err}") from None
    return doc if isinstance(doc, dict) else None


def delayed(argv: list[str], seconds: float) -> list[str]:
    """`argv` started `seconds` later in the same process (it execs): a slow DSO start for the tests."""
    if seconds <= 0:
        return argv
    return [sys.executable, "-m", "peergrid_sim.dso_ready", str(seconds), *argv]


def _main(args: list[str]) -> None:  # python -m peergrid_sim.dso_ready SECONDS ARGV...
    time.sleep(float(args[0]))
    os.execvp(args[1], args[1:])


if __name__ == "__main__":
    _main(sys.argv[1:])

"""The lab edges' /metrics: each MGMC's metrics endpoint and the one scrape the lab keeps of it at its end.

Promises: `edge_metrics_settings()` is the edge config's `metrics` section every lab edge gets: loopback, any
free port (the edge binds it; nothing here picks a port another process could take first). At the end of a
run (`keep_edge_metrics(bed)`, the testbed after its last interval settled, before it stops anything) each
running MGMC's port is read from its own listening socket (`ports.wait_for_listener`: the edge listens on
nothing else but paho's moment) and its /metrics text fetched once, into `<records>/metrics.json`: node -> {"port", "text"},
or {"error"} saying why there is none (the daemon was down, no listener, no answer), so a test reads what
each edge showed, e.g. its meter watch (`peergrid_edge_meter_signed_total`). Only reads; never fails the lab.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from peergrid_sim.broker import LOOPBACK
from peergrid_sim.ports import wait_for_listener

# how long the end-of-run scrape looks for an edge's listener: time for two looks in a row (50 ms apart) even
# where one look (the process' sockets read from /proc) is slow; at 0.25 s a CI run at load 13 saw no second
# look for three of six edges that were listening. It waits this long only for an edge with no listener.
LOOK_S = 2.0

METRICS_FILE = "metrics.json"


def edge_metrics_settings() -> dict[str, Any]:
    """The edge's `metrics` section in the lab: loopback only, a free port."""
    return {"host": LOOPBACK, "port": 0}


def scrape(process: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The /metrics text of the edge daemon `process` (a Popen) on its own listener, or {"error": why}. Its
    listener is learned as `ports.wait_for_listener` learns a port-0 server's (seen at two looks 50 ms apart:
    paho's network loop listens on a port of its own for a moment as a client starts, R32), within `LOOK_S`."""
    port = wait_for_listener(process, 0, LOOK_S)
    if port is None:
        return {"error": "no listening socket (no metrics endpoint, or the daemon is down)"}
    url = f"http://{LOOPBACK}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return {"port": port, "text": answer.read().decode("utf-8", errors="replace")}
    except OSError as err:
        return {"port": port, "error": f"{url}: {err}"}


def keep_edge_metrics(bed: Any) -> Path:
    """One scrape of every MGMC child's /metrics into `<workdir>/records/metrics.json`; its path."""
    found = {}
    for child in bed.children:
        if child.name.startswith("mgmc-"):  # the last one of that name: a restarted daemon replaced it
            alive = child.process.poll() is None
            found[child.name] = scrape(child.process) if alive else {"error": "the daemon was down"}
    path = Path(bed.workdir) / "records" / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(found, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path

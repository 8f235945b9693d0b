"""D12: the DSO node keeps the sealed reading sets it took on disk, so a restart settles with them
(`dispute_readings_file.KeptReadings`, beside `disputes.record_file`), and refuses at start an MGMC chain whose
settle wait leaves the MGMCs no time to post them (`dispute_time.check_settle_wait`).

Drill U7 finding 7: a 9-s DSO restart lost the readings the DSO had taken, and interval 51's vouched trade was
settled "seller not metered", 0 of 30,000 Wh, though both parties stated it. Here a restarted settler (a new
`DisputeSettler` over the same chain and record file) settles with what the one before took; "taken" (the API's
201) means on disk, fsynced; a set the DSO cannot write is not taken (503, posted again); a torn last line is
skipped with one WARNING, a damaged file refused in one line; what no pending dispute reads is forgotten, and
the file rewritten, so it stays bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from peergrid_dso import dispute_readings_file
from peergrid_dso.dispute_node import DisputeSettler
from peergrid_dso.dispute_readings_file import KeptReadings, readings_file
from peergrid_dso.dispute_time import check_settle_wait
from peergrid_dso.routes.dso import install_dso_api
from peergrid_dso.services.container import build_dso_services
from peergrid_ledger import query
from peergrid_ledger.settings import ConfigError

from .test_disputes import Market, market, ramp
from .test_disputes_node import final_blocks, hand_over, settler_for

WAIT_MS = 120_000


def withheld(wait_ms: int = WAIT_MS) -> Market:
    """U7's shape as a dispute: the seller exported 480 and states it, the buyer states 0 and never posts."""
    readings = {"s": ramp(480.0, export=True), "b": ramp(480.0, export=False)}
    return market({("s", "b"): 500}, {("s", "b"): (0, 480)}, readings=readings, wait_ms=wait_ms)


def kept_file(tmp_path: Path) -> Path:
    path = readings_file(tmp_path / "disputes.jsonl")
    assert path is not None
    return path


def kept_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = kept_file(tmp_path)
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


@contextmanager
def served(m: Market, tmp_path: Path) -> Iterator[tuple[FastAPI, DisputeSettler, asyncio.AbstractEventLoop]]:
    """The disputes API over a settler of `m`'s chain whose loop runs on a thread of its own, as the node's."""
    settler, adapter, _ = settler_for(m, tmp_path)
    final_blocks(m, settler)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    adapter.loop = loop  # type: ignore[attr-defined]
    app = FastAPI()
    install_dso_api(app)
    app.state.dso = build_dso_services({"mg1": 18, "mg2": 33})
    app.state.dso.disputes = settler
    try:
        yield app, settler, loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def bodies_of(m: Market, mg: str) -> list[dict[str, Any]]:
    node = m.nodes[mg].public
    return [
        {"node": node.hex(), "interval": bucket, "leaves": [leaf.hex() for leaf in leaves]}
        for (who, bucket), leaves in sorted(m.sealed.items())
        if who == node
    ]


def test_a_restarted_dso_settles_with_the_readings_it_took_before_its_restart(tmp_path: Path) -> None:
    m = withheld()
    tid = m.trade_id("s", "b")
    before, _, _ = settler_for(m, tmp_path)
    final_blocks(m, before)
    hand_over(m, before, "s")  # taken: the seller's edge will not post them again
    asyncio.run(before.settle_due())
    assert "the buyer's metering" in before.decision(tid)["why"]  # type: ignore[index]
    sets = {(bytes.fromhex(d["node"]), d["interval"]) for d in kept_lines(tmp_path)}
    assert sets == set(before.sealed) and len(sets) == 3  # on disk, each set once
    # the DSO restarts: a new settler over the same chain and files; the deadline passes before the buyer posts
    after, adapter, _ = settler_for(m, tmp_path)
    assert after.sealed == {}
    final_blocks(m, after)
    asyncio.run(after.settle_due())
    assert set(after.sealed) == sets  # read back and taken in again, checked against the chain
    assert "the buyer's metering" in after.decision(tid)["why"]  # type: ignore[index]
    m.pass_time(after.deadlines[tid])
    final_blocks(m, after, m.chain.height)
    asyncio.run(after.settle_due())
    [(_, kind, body, _)] = adapter.sent
    assert (kind, body) == ("settle", {"trade": tid, "delivered": 480})  # U7's was 0: "seller not metered"
    assert after.decision(tid)["rule"] == "seller metered only"  # type: ignore[index]
    assert query.settlement(m.chain.state, tid)["state"] == "settled"  # type: ignore[index]
    # settled: the sets are needed no more, in memory or on disk
    assert after.sealed == {} and kept_file(tmp_path).read_bytes() == b""


def test_what_was_taken_is_on_disk_before_the_answer_and_a_set_it_cannot_keep_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = withheld()
    bodies = bodies_of(m, "s")
    synced: list[int] = []
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    def counted_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    with served(m, tmp_path) as (app, settler, _):
        client = TestClient(app)
        monkeypatch.setattr(os, "fsync", full_disk)
        refused = client.post("/api/dso/disputes/readings", json=bodies[0])
        assert refused.status_code == 503, refused.text
        assert (
            "could not keep them on disk (No space left on device): post them again"
            in refused.json()["detail"]
        )
        assert settler.sealed == {} and kept_lines(tmp_path) == []  # not taken, and no part of a line left
        monkeypatch.setattr(os, "fsync", counted_fsync)
        for n, body in enumerate(bodies, 1):
            answer = client.post("/api/dso/disputes/readings", json=body)
            assert answer.status_code == 201, answer.text
            assert [d["interval"] for d in kept_lines(tmp_path)] == [b["interval"] for b in bodies[:n]]
        assert len(synced) >= len(bodies)  # each set synced (and the new file's folder)
        again = client.post("/api/dso/disputes/readings", json=bodies[0])  # an edge's re-post after an outage
        assert again.status_code == 201 and len(kept_lines(tmp_path)) == len(bodies)  # kept once


def test_a_torn_last_line_is_skipped_with_one_warning_and_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = withheld()
    before, _, _ = settler_for(m, tmp_path)
    final_blocks(m, before)
    hand_over(m, before, "s")
    path = kept_file(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"node":"ab","interv')  # a writer killed mid-line
    with caplog.at_level(logging.WARNING, "peergrid_dso.dispute_node"):
        after, _, _ = settler_for(m, tmp_path)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "its last line is torn (20 bytes" in warning.getMessage()
    assert path.read_bytes() == whole  # cut: the next set is a line of its own
    final_blocks(m, after)
    asyncio.run(after.settle_due())
    assert set(after.sealed) == set(before.sealed)
    hand_over(m, after, "b")  # appended after the cut: every line reads back
    assert len(kept_lines(tmp_path)) == 2 * len(before.sealed)


@pytest.mark.parametrize(
    "damage, why",
    [
        (b"not json\n", "line 2 is no sealed readings set (damaged)"),
        (b'{"node":"zz","interval":16,"leaves":[]}\n', "line 2 is no sealed readings set (damaged)"),
        (b'{"node":"' + b"ab" * 32 + b'","interval":true,"leaves":[]}\n', "line 2 is no sealed readings set"),
        (
            b'{"node":"' + b"ab" * 32 + b'","interval":16,"leaves":["xyz"]}\n',
            "line 2 is no sealed readings set",
        ),
    ],
)
def test_a_damaged_file_is_refused_in_one_line(tmp_path: Path, damage: bytes, why: str) -> None:
    m = withheld()
    before, _, _ = settler_for(m, tmp_path)
    final_blocks(m, before)
    hand_over(m, before, "s")
    path = kept_file(tmp_path)
    first, *rest = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(first + damage + b"".join(rest))
    with pytest.raises(ConfigError) as refused:
        settler_for(m, tmp_path)
    said = str(refused.value)
    assert "\n" not in said and said.startswith(f"{path}: {why}")
    assert "move it away to start without them" in said


def test_a_file_that_cannot_be_read_is_refused_in_one_line(tmp_path: Path) -> None:
    kept_file(tmp_path).mkdir()  # no file to read there
    with pytest.raises(ConfigError, match=r"disputes\.readings\.jsonl: cannot read it \(Is a directory\)"):
        settler_for(withheld(), tmp_path)


def test_a_restart_forgets_the_sets_of_trades_settled_while_it_was_down(tmp_path: Path) -> None:
    m = withheld()
    tid = m.trade_id("s", "b")
    before, _, _ = settler_for(m, tmp_path)
    final_blocks(m, before)
    hand_over(m, before, "s")
    assert len(kept_lines(tmp_path)) == 3
    m.do(m.dso, "settle", {"trade": tid, "delivered": 400})  # by hand while the node was down
    after, adapter, _ = settler_for(m, tmp_path)
    asyncio.run(after.settle_due())
    assert after.sealed == {} and adapter.sent == [] and kept_file(tmp_path).read_bytes() == b""


def test_the_file_holds_what_pending_disputes_read_and_is_rewritten_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pilot runs for years: sets come and go; the file never holds more forgotten bytes than live ones
    beyond `COMPACT_BYTES`, and reads back as the live sets."""
    monkeypatch.setattr(dispute_readings_file, "COMPACT_BYTES", 4_000)
    path = tmp_path / "disputes.readings.jsonl"
    kept = KeptReadings(path)
    assert kept.load() == {}
    node = bytes(range(32))
    leaves = [bytes([n]) * 50 for n in range(10)]  # ~1 KB a line
    largest = 0
    for k in range(1_000):  # a set a commitment interval; each read by disputes for 5 of them
        kept.keep((node, k), leaves)
        kept.forget([(node, k - 5)])
        live = sum(length for _, length in kept.lines.values())
        assert kept.size == path.stat().st_size and kept.size <= 2 * live + 4_000
        largest = max(largest, kept.size)
    assert largest < 20_000  # 1,000 sets kept: ~1 MB had nothing been forgotten
    again = KeptReadings(
        path
    )  # the live sets, and forgotten ones not rewritten away yet (a start forgets them)
    found = again.load()
    assert {(node, k) for k in range(995, 1_000)} <= found.keys() and all(v == leaves for v in found.values())
    assert len(found) * 1_000 < 20_000
    again.forget(list(found))
    assert path.read_bytes() == b""  # none live: emptied at once


def test_no_record_file_keeps_nothing_on_disk(tmp_path: Path) -> None:
    m = withheld()
    settler, _, _ = settler_for(m)
    final_blocks(m, settler)
    hand_over(m, settler, "s")
    assert settler.kept.path is None and len(settler.sealed) == 3 and list(tmp_path.iterdir()) == []


def test_a_settle_wait_that_leaves_the_mgmcs_no_time_to_post_is_refused_in_one_line() -> None:
    u7 = SimpleNamespace(commit_interval_s=60.0, max_gap_s=3.0)  # the Ansible role's disputes
    with pytest.raises(ConfigError) as refused:
        check_settle_wait(u7, 60_000)  # U7's genesis: 60-s wait
    said = str(refused.value)
    assert "\n" not in said
    assert said.startswith(
        "loop.disputes: the MGMC chain's settle_wait_ms 60000 applies its deadline rules 45 s"
    )
    assert "commit_interval_s + max_gap_s = 63 s after its end" in said
    assert "make the genesis' settle_wait_ms above 86666" in said
    with pytest.raises(ConfigError):
        check_settle_wait(u7, 86_666)
    check_settle_wait(u7, 86_667)
    check_settle_wait(u7, 2_700_000)  # ansible/README.md's genesis: a 45-min wait
    lab = SimpleNamespace(commit_interval_s=6.0, max_gap_s=4.5)  # the testbed's at 6-s intervals
    check_settle_wait(lab, 18_000)
    bench = SimpleNamespace(commit_interval_s=5.0, max_gap_s=3.75)  # bench_testbed's 5-s intervals
    check_settle_wait(bench, 15_000)

"""D13: the DSO node writes and fsyncs the sealed reading sets it takes off its event loop (the kept file's
writer thread, `dispute_readings_file.KeptReadings`), and reads every trade once at a start with a kept file.

Before, a readings post's line was written and fsynced on the node's loop (4 ms a set here, 50-500 ms on an SD
card), so every other post and the node's chain waited for it. The guarantee stays: a 201 only once its line
is fsynced, a set the disk refuses is 503 with no part of its line left and nothing taken before lost, and the
lines in the order the sets were taken."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from peergrid_dso.dispute_node import DisputeSettler

from .test_d12_sealed_readings_kept import bodies_of, kept_file, kept_lines, served, withheld
from .test_disputes_node import final_blocks, hand_over, settler_for

SLOW_FSYNC_S = 0.2


def post_all(app: FastAPI, bodies: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Each body posted at once from a thread of its own (an MGMC each): (status, when answered)."""
    answers: list[tuple[int, float]] = [(0, 0.0)] * len(bodies)

    def post(n: int) -> None:
        answer = TestClient(app).post("/api/dso/disputes/readings", json=bodies[n])
        answers[n] = (answer.status_code, time.monotonic())

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def ticking(loop: asyncio.AbstractEventLoop) -> tuple[Callable[[], float], Callable[[], None]]:
    """A task on the loop that ticks every 5 ms: (the longest gap between ticks so far, stop)."""
    longest = [0.0]
    stop = threading.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            longest[0], last = max(longest[0], now - last), now

    done = asyncio.run_coroutine_threadsafe(tick(), loop)

    def stopped() -> None:
        stop.set()
        done.result(5)

    return lambda: longest[0], stopped


def admitted_order(settler: DisputeSettler) -> list[int]:
    """The commitment intervals in the order the settler took the posts in (its checks on the loop)."""
    order: list[int] = []
    admit = settler._admit

    def recorded(node: bytes, commitment: int, leaves: Any) -> Any:
        found = admit(node, commitment, leaves)
        order.append(commitment)
        return found

    settler._admit = recorded  # type: ignore[method-assign]
    return order


def is_folder(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def test_a_slow_fsync_holds_up_neither_the_loop_nor_other_posts_and_keeps_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = withheld()
    bodies = bodies_of(m, "s")
    assert len(bodies) == 3
    synced: list[tuple[float, int]] = []  # (when done, the file's length it made durable)
    fsync_threads: set[int] = set()  # the threads the file's fsyncs ran on
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # an SD card's
        if not is_folder(fd):
            fsync_threads.add(threading.get_ident())
            time.sleep(SLOW_FSYNC_S)
        real_fsync(fd)
        synced.append((time.monotonic(), os.fstat(fd).st_size))

    async def ident() -> int:
        return threading.get_ident()

    with served(m, tmp_path) as (app, settler, loop):
        order = admitted_order(settler)
        loop_thread = asyncio.run_coroutine_threadsafe(ident(), loop).result(5)
        longest, stop = ticking(loop)
        monkeypatch.setattr(os, "fsync", slow_fsync)
        began = time.monotonic()
        answers = post_all(app, bodies)
        took = time.monotonic() - began
        stop()
    assert [status for status, _ in answers] == [201, 201, 201]
    print(f"3 posts with a {SLOW_FSYNC_S * 1000:.0f}-ms fsync: the loop's longest tick gap "
          f"{longest() * 1000:.1f} ms, all answered in {took:.2f} s")  # fmt: skip
    assert fsync_threads and loop_thread not in fsync_threads  # before D13: every one on the node's loop
    lines = kept_lines(tmp_path)
    assert [d["interval"] for d in lines] == order and sorted(order) == [b["interval"] for b in bodies]
    ends, end = {}, 0
    for line in kept_file(tmp_path).read_bytes().splitlines(keepends=True):
        end += len(line)
        ends[json.loads(line)["interval"]] = end
    for body, (_, answered) in zip(bodies, answers, strict=True):  # each 201 after its own line was fsynced
        assert any(done <= answered and size >= ends[body["interval"]] for done, size in synced)
    assert set(settler.sealed) == {(m.nodes["s"].public, b["interval"]) for b in bodies}


def test_a_set_the_disk_refuses_is_503_and_loses_nothing_taken_before_or_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = withheld()
    bodies = bodies_of(m, "s")
    real_fsync = os.fsync
    calls: list[int] = []

    def second_refused(fd: int) -> None:  # the second set's fsync finds the disk full; the others are slow
        if is_folder(fd):
            return real_fsync(fd)
        calls.append(fd)
        time.sleep(SLOW_FSYNC_S / 4)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    with served(m, tmp_path) as (app, settler, _):
        order = admitted_order(settler)
        monkeypatch.setattr(os, "fsync", second_refused)
        answers = post_all(app, bodies)
        by_interval = {b["interval"]: status for b, (status, _) in zip(bodies, answers, strict=True)}
        assert [by_interval[t] for t in order] == [201, 503, 201]
        # taken before and after the refused one: on disk, in order, and no part of the refused line
        assert [d["interval"] for d in kept_lines(tmp_path)] == [order[0], order[2]]
        node = m.nodes["s"].public
        assert set(settler.sealed) == {(node, order[0]), (node, order[2])}
        refused = next(b for b in bodies if b["interval"] == order[1])
        [(status, _)] = post_all(app, [refused])  # its MGMC posts it again
        assert status == 201
    assert [d["interval"] for d in kept_lines(tmp_path)] == [order[0], order[2], order[1]]
    assert settler.kept.size == kept_file(tmp_path).stat().st_size


def test_a_start_with_a_kept_file_reads_every_trade_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = withheld()
    before, _, _ = settler_for(m, tmp_path)
    final_blocks(m, before)
    hand_over(m, before, "s")
    assert len(kept_lines(tmp_path)) == 3
    after, _, _ = settler_for(m, tmp_path)  # the DSO restarts with the sets it kept
    final_blocks(m, after)
    state = after.state
    scans: list[int] = []
    items = type(state).items

    def counted(self: Any) -> Any:
        scans.append(1)
        return items(self)

    monkeypatch.setattr(type(state), "items", counted)

    async def first_pass() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(after.run(stop, period_s=0.01))
        await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(first_pass())
    assert len(scans) == 1  # before D13: 2 (`run`, then the read-back of the kept sets)
    assert set(after.sealed) == set(before.sealed) and after.pending  # what the start is for, as before

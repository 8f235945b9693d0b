"""The coordinated stop from a halt file (`peergrid_ledger.consensus.halt`, `Engine.halt_at`), which the edge
daemon and the DSO node both use: the file's reading (a half-written or malformed file never crashes a node
and never lifts a stop in force: it reads as the last good heights, or no stop when there were none;
hypothesis; each follower keeps its own), the engine call that also re-arms the proposer's timer, so an idle chain told to halt
heads for the height at the block period from the height it is on (before, a proposer already waiting out
its 2-s heartbeat kept waiting), and `apply_halt` on real replicas with their stores.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.test_consensus_costs import IDLE, Net
from peergrid_ledger.consensus.actions import PROPOSE_TIMER, ROUND_TIMER, SetTimer, Timer
from peergrid_ledger.consensus.engine import EngineConfig
from peergrid_ledger.consensus.halt import (
    HaltFile,
    HaltFileError,
    apply_halt,
    parse_halt,
    read_halt_file,
)
from peergrid_ledger.consensus.labnet import lab_key
from peergrid_ledger.consensus.node import ChainReplica
from peergrid_ledger.genesis import Genesis
from peergrid_ledger.store import BlockStore

CHAINS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
HEIGHTS = st.dictionaries(CHAINS, st.integers(0, 2**40), max_size=4)

# ------------------------------------------------------------------------------------------ the file


def test_the_halt_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    assert read_halt_file(None) == {} and read_halt_file(path) == {}  # no file: no stop
    path.write_text('{"dso-x": 48, "mgmc-x": 99}')
    assert read_halt_file(path) == {"dso-x": 48, "mgmc-x": 99}
    path.write_text("{}")
    assert read_halt_file(path) == {}
    path.write_bytes(b'{"dso-x": 4\xff}')  # not UTF-8
    assert read_halt_file(path) == {}
    path.unlink()
    path.mkdir()  # unreadable as a file
    assert read_halt_file(path) == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"dso-x": 4', "not JSON"),  # half-written by the testbed
        ("", "not JSON"),
        ("[48, 99]", "not an object"),
        ("48", "not an object"),
        ('{"dso-x": "48"}', "'48' is not an integer"),
        ('{"dso-x": null}', "None is not an integer"),
        ('{"dso-x": -1}', "-1 is not an integer >= 0"),
        ('{"dso-x": 4.0}', "4.0 is not an integer"),
        ('{"dso-x": true}', "True is not an integer"),
        ('{"dso-x": 4, "mgmc-x": 2.5}', "'mgmc-x': height 2.5"),  # one bad entry: no stop at all
    ],
)
def test_a_malformed_halt_file_says_why_and_reads_as_no_stop(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(HaltFileError, match=says.replace("(", r"\(").replace(".", r"\.")):
        parse_halt(text)
    path = tmp_path / "halt.json"
    path.write_text(text)
    assert read_halt_file(path) == {}


@given(HEIGHTS)
def test_heights_written_are_the_heights_read(heights: dict[str, int]) -> None:
    assert parse_halt(json.dumps(heights)) == heights


@given(HEIGHTS.filter(bool), st.data())
def test_a_half_written_file_is_no_stop(heights: dict[str, int], data: st.DataObject) -> None:
    text = json.dumps(heights)
    cut = data.draw(st.integers(0, len(text) - 1))
    with pytest.raises(HaltFileError):
        parse_halt(text[:cut])


@given(st.binary(max_size=64))
def test_reading_any_bytes_never_raises(tmp_path_factory, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("halt") / "halt.json"
    path.write_bytes(raw)
    heights = read_halt_file(path)
    assert all(isinstance(c, str) and type(h) is int and h >= 0 for c, h in heights.items())


def test_a_stop_in_force_outlives_a_bad_reading(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # an operator rewriting the file in place: a poll may see it empty or half-written. Before, that poll
    # read no stop and every replica ran on past the height for one poll.
    path = tmp_path / "halt.json"
    follower = HaltFile(path)
    path.write_text('{"dso-x": 48, "mgmc-x": 99}')
    assert follower.read() == {"dso-x": 48, "mgmc-x": 99}
    with caplog.at_level(logging.WARNING, logger="peergrid_ledger.halt"):
        for bad in ("", '{"dso-x": 5', '{"dso-x": -1}'):
            path.write_text(bad)
            assert follower.read() == {"dso-x": 48, "mgmc-x": 99}
        path.unlink()
        path.mkdir()  # unreadable as a file
        assert follower.read() == {"dso-x": 48, "mgmc-x": 99}
        assert [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()] == [
            f"halt file {path} unusable (not JSON: Expecting value: line 1 column 1 (char 0)): "
            "keeping {'dso-x': 48, 'mgmc-x': 99}"
        ]  # once for the whole spell
        path.rmdir()
        path.write_text('{"dso-x": 50}')  # the rewrite finished: its heights, and it says so
        assert follower.read() == {"dso-x": 50}
        assert any("readable again" in r.getMessage() for r in caplog.records)
    path.unlink()
    assert follower.read() == {}  # deleting the file lifts the stop...
    path.write_text('{"dso-x": 5')
    assert follower.read() == {}  # ...and a bad file after that brings back nothing


def test_two_followers_of_one_path_share_nothing(tmp_path: Path) -> None:
    # the edge daemon and the DSO node (or two replicas, or two tests) in one process each hold their own
    # HaltFile: one that has read a stop keeps it through a bad reading, one that never read it sees no stop,
    # and a one-shot read_halt_file remembers nothing either. Before, read_halt_file kept one HaltFile per
    # path in a module global, so a stop one caller had read came back to any other through a bad reading.
    path = tmp_path / "halt.json"
    first, second = HaltFile(path), HaltFile(path)
    path.write_text('{"mgmc-x": 7}')
    assert read_halt_file(path) == {"mgmc-x": 7}
    assert first.read() == {"mgmc-x": 7}
    path.write_text('{"mgmc-x": 7')  # mid-rewrite
    assert first.read() == {"mgmc-x": 7}  # its own last good reading
    assert second.read() == {}  # never read a good one: nothing to keep
    assert read_halt_file(path) == {}  # a one-shot read keeps nothing between calls
    assert (first.failing, second.failing) == (True, True)
    path.write_text('{"mgmc-x": 9}')
    assert second.read() == {"mgmc-x": 9}
    assert first.heights == {"mgmc-x": 7} and first.failing  # untouched by the other's reading
    path.unlink()
    assert second.read() == {}
    path.write_text("[")
    assert first.read() == {"mgmc-x": 7} and second.read() == {}


@given(
    st.lists(
        st.one_of(
            HEIGHTS.map(lambda h: ("good", h)),
            st.tuples(st.just("cut"), HEIGHTS.filter(bool), st.integers(0, 2**16)),
            st.just(("gone",)),
        ),
        max_size=8,
    )
)
def test_a_followed_file_reads_as_its_last_good_heights(tmp_path_factory, steps: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("halt") / "halt.json"
    follower, expected = HaltFile(path), {}
    for step in steps:
        if step[0] == "good":
            path.write_text(json.dumps(step[1]))
            expected = step[1]
        elif step[0] == "cut":
            text = json.dumps(step[1])
            path.write_text(text[: step[2] % len(text)])
        else:
            path.unlink(missing_ok=True)
            expected = {}
        assert follower.read() == expected


# ------------------------------------------------------------------------------------------ the engine


def idle_net_waiting_on_a_heartbeat() -> tuple[Net, int]:
    """Four idle authorities just after a block: the next height's proposer waits out the heartbeat."""
    net = Net(4, IDLE)
    start = min(net.heights())
    while min(net.heights()) == start:  # the first heartbeat block
        net.advance(10)
    net.advance(50)
    assert all(e.s.round == 0 and not e.s.pending_noted for e in net.engines)
    return net, min(net.heights())


def test_an_idle_proposer_told_to_halt_proposes_at_the_period_not_the_heartbeat() -> None:
    net, head = idle_net_waiting_on_a_heartbeat()
    height = head + 1
    proposer = next(i for i, e in enumerate(net.engines) if e.proposer(0) == e.me)
    parent_ms = net.apps[0].head().timestamp_ms
    halt = head + 3
    for i, engine in enumerate(net.engines):
        actions = engine.halt_at(halt, net.now)
        timers = [a for a in actions if isinstance(a, SetTimer)]
        if i == proposer:  # re-armed a period after the parent, not a heartbeat
            assert [(t.timer.kind, t.timer.height, t.at_ms) for t in timers] == [
                (PROPOSE_TIMER, height, max(net.now, parent_ms + IDLE.block_period_ms))
            ]
        else:  # and the others expect that proposal within a round timeout of then
            assert [(t.timer.kind, t.at_ms) for t in timers] == [
                (ROUND_TIMER, max(net.now, parent_ms + IDLE.block_period_ms) + IDLE.round_timeout_ms)
            ]
        net.do(i, actions)
        assert engine.config.halt_height == halt
    assert engine.halt_at(halt, net.now) == []  # told again: nothing to do
    net.advance(3 * IDLE.block_period_ms + 200)  # three blocks a period apart, far short of one heartbeat
    assert net.heights() == [halt] * 4
    net.advance(3 * IDLE.heartbeat_ms)
    assert net.heights() == [halt] * 4  # and no further


def test_without_the_re_arm_the_first_height_waits_out_the_heartbeat() -> None:
    """What `halt_at` saves: the config alone (what the daemons did before) leaves the proposer's heartbeat
    timer where it was, so the first height of the halt comes a heartbeat after its parent."""
    from dataclasses import replace

    net, head = idle_net_waiting_on_a_heartbeat()
    for engine in net.engines:
        engine.config = replace(engine.config, halt_height=head + 3)
    net.advance(3 * IDLE.block_period_ms + 200)
    assert max(net.heights()) == head  # still waiting for the heartbeat


def test_a_halt_raised_after_it_was_reached_heads_for_the_new_height() -> None:
    net, head = idle_net_waiting_on_a_heartbeat()
    for i, engine in enumerate(net.engines):
        net.do(i, engine.halt_at(head + 1, net.now))
    net.advance(IDLE.heartbeat_ms)
    assert net.heights() == [head + 1] * 4  # halted: the next height set no timers
    for i, engine in enumerate(net.engines):
        net.do(i, engine.halt_at(head + 3, net.now))
    net.advance(2 * IDLE.block_period_ms + 200)
    assert net.heights() == [head + 3] * 4


def test_the_halt_lifted_runs_on_at_the_heartbeat() -> None:
    net, head = idle_net_waiting_on_a_heartbeat()
    for i, engine in enumerate(net.engines):
        net.do(i, engine.halt_at(head + 1, net.now))
    net.advance(IDLE.heartbeat_ms)
    assert net.heights() == [head + 1] * 4
    for i, engine in enumerate(net.engines):
        net.do(i, engine.halt_at(None, net.now))
        assert engine.config.halt_height is None
        assert engine.config.block_period_ms == IDLE.block_period_ms  # the rest of the config is kept
    net.advance(IDLE.heartbeat_ms + IDLE.round_timeout_ms)
    assert min(net.heights()) >= head + 2  # on again, heartbeat blocks only
    assert max(net.heights()) <= head + 3


# ------------------------------------------------------------------------------------------ replicas


class Recorder:
    """The replicas' transport and scheduler: keeps the timers they set."""

    def __init__(self) -> None:
        self.timers: list[tuple[str, int, int]] = []

    def publish(self, chain: str, kind: str, data: bytes, to: bytes | None = None) -> None:
        pass

    def schedule(self, timer: Timer, at_ms: int) -> None:
        self.timers.append((timer.kind, timer.height, at_ms))


def test_apply_halt_gives_each_replica_its_chains_height(tmp_path: Path) -> None:
    me = lab_key("halt-authority")
    replicas, wire = [], Recorder()
    for chain in ("dso-t", "mgmc-t"):
        store = BlockStore.create(
            tmp_path / chain, Genesis(chain=chain, time=4_000, authorities=(me.public,))
        )
        config = EngineConfig(block_period_ms=150, heartbeat_ms=2000)
        replicas.append(ChainReplica(store, me, config, wire, wire.schedule))
    try:
        for replica in replicas:
            replica.start(4_010)
        assert (PROPOSE_TIMER, 1, 6_000) in wire.timers  # idle: the heartbeat
        wire.timers.clear()
        assert apply_halt(replicas, {"dso-t": 7, "other": 3}, 4_020) == ["dso-t"]
        assert [r.engine.config.halt_height for r in replicas] == [7, None]
        assert wire.timers == [(PROPOSE_TIMER, 1, 4_150)]  # a period after genesis, on the halting chain only
        assert apply_halt(replicas, {"dso-t": 7}, 4_030) == []  # the same file again: nothing
        assert apply_halt(replicas, {}, 4_040) == ["dso-t"]  # the file is gone: both run on
        assert all(r.engine.config.halt_height is None for r in replicas)
    finally:
        for replica in replicas:
            replica.store.close()

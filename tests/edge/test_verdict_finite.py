"""A DSO verdict that is malformed or holds NaN/Infinity is ignored with one clear log line (review13 F7, X4): it
raised in the MQTT callback before (a traceback per message), or was filed with a NaN interval or a string
iteration that broke the agent's ordering of verdicts. The agent keeps running and keeps the verdicts it had."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_edge.trader import MarketAgent


def _agent() -> MarketAgent:
    agent = object.__new__(MarketAgent)
    agent.verdicts = {}
    agent._verdict_event = asyncio.Event()
    return agent


BAD = [
    (b"not json", "verdict is not JSON: Expecting value"),
    (b"\xff\xfe", "verdict is not JSON"),
    (b'{"interval": NaN, "final": true}', "verdict holds NaN, not a finite number"),
    (b'{"interval": 1e999, "final": true}', "verdict holds 1e999, not a finite number"),
    (b'{"interval": 4, "iteration": Infinity}', "verdict holds Infinity, not a finite number"),
    (b'{"interval": 4, "final": true, "secure": -Infinity}', "verdict holds -Infinity, not a finite number"),
    (b"[4]", "a verdict needs an integer interval"),
    (b'"4"', "a verdict needs an integer interval"),
    (b'{"final": true}', "a verdict needs an integer interval"),
    (b'{"interval": "4", "final": true}', "a verdict needs an integer interval"),
    (b'{"interval": 4.0, "final": true}', "a verdict needs an integer interval"),
    (b'{"interval": true, "final": true}', "a verdict needs an integer interval"),
    (b'{"interval": 4, "iteration": "2"}', "a verdict needs an integer interval"),
    (b'{"interval": 4, "iteration": null}', "a verdict needs an integer interval"),
    (b'{"interval": 4, "final": "yes"}', "a verdict needs an integer interval"),
]


@pytest.mark.parametrize(("payload", "why"), BAD)
def test_a_bad_verdict_is_one_log_line_and_changes_nothing(
    payload: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    agent = _agent()
    agent._on_verdict("v", b'{"interval": 4, "iteration": 1, "final": false}')
    before, event = dict(agent.verdicts), agent._verdict_event
    with caplog.at_level(logging.WARNING, logger="peergrid.edge.trader"):
        agent._on_verdict("v", payload)  # never raises
    assert agent.verdicts == before and agent._verdict_event is event and not event.is_set()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "peergrid.edge.trader"]
    assert line.startswith(f"ignored a verdict: {why}")
    agent._on_verdict("v", b'{"interval": 4, "iteration": 1, "final": true}')  # and it goes on
    assert agent.verdicts[4]["final"] is True and event.is_set()


def test_verdicts_are_filed_per_interval_newest_iteration_first() -> None:
    agent = _agent()
    for doc in (
        {"interval": 2, "iteration": 2, "final": False, "adjust": ["ab"], "rebargain": True, "reopen": 1},
        {"interval": 2, "iteration": 1, "final": False},  # an older iteration arriving late
        {"interval": 3},  # no iteration: 0, not final
    ):
        agent._on_verdict("v", json.dumps(doc).encode())
    assert agent.verdicts[2]["iteration"] == 2 and agent.verdicts[3] == {"interval": 3}
    agent._on_verdict("v", b'{"interval": 2, "iteration": 2, "final": true, "secure": true, "unmet": null}')
    assert agent.verdicts[2]["final"] is True


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["interval", "iteration", "final", "secure", "unmet", "adjust", "reopen"]), VALUES
    )
)
def test_any_verdict_is_filed_sound_or_ignored_never_raises(doc: dict[str, Any]) -> None:
    agent = _agent()
    agent._on_verdict("v", json.dumps(doc).encode())  # Python writes NaN and Infinity too
    agent._on_verdict("v", json.dumps(doc).encode())  # the same again: compared with what was filed
    for t, filed in agent.verdicts.items():
        assert type(t) is int and type(filed.get("iteration", 0)) is int
        assert isinstance(filed.get("final", False), bool)
        json.dumps(filed, allow_nan=False)  # no NaN or Infinity anywhere in it


@given(st.binary(max_size=64))
def test_any_bytes_never_raise_in_the_callback(payload: bytes) -> None:
    _agent()._on_verdict("v", payload)

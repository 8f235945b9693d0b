"""R45: a DSO node stopped after sealing an iteration's contracts to other MGs than the iteration before's, and
before any answer to it landed, counted one iteration too few on its return (D7's `interval_resume.on_chain`:
the most contracts to one MG, the highest revision answered), so it sealed that iteration's number again and
analysed on the answers to the one before. An iteration asks the MGs the one before did not bring within
their limits (`security.learn_reach`), so its addressees often change. D7's lab: a LevelDB DSO chain.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso import interval_resume
from peergrid_dso.node_chains import Changed
from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.state import read_obj

from .test_d7_resume import Lab, run


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    bed = Lab(tmp_path)
    yield bed
    bed.store.close()


def two_iterations(lab: Lab, t: int, answered: bool) -> None:
    """Iteration 1 asked mg1 and both MGs answered it; iteration 2 asked mg2 (then the stop, its answers
    landed or not)."""
    loop = lab.node()
    node1, node2 = (lab.mgs[mg][0].public for mg in ("mg1", "mg2"))
    loop.recorder.adjustment(node1, t, {"interval": t, "iteration": 1, "limit_kw": 50.0})
    lab.inject("mg1", t, 1, 50_000)
    lab.inject("mg2", t, 1)
    loop.recorder.adjustment(node2, t, {"interval": t, "iteration": 2, "limit_kw": 50.0})
    if answered:
        lab.inject("mg1", t, 2, 50_000)
        lab.inject("mg2", t, 2, 50_000)


def nodes(lab: Lab) -> dict[str, bytes]:
    return {mg: node.public for mg, (node, _) in lab.mgs.items()}


@pytest.mark.parametrize("answered", [False, True], ids=["stopped before the answers", "answers landed"])
def test_an_iteration_asking_other_mgs_is_counted(lab: Lab, answered: bool) -> None:
    two_iterations(lab, 10, answered)
    prior = interval_resume.on_chain(lab.chain.state, nodes(lab), 10, lab.chain.locate_tx)
    assert prior.iterations == 2  # before: 1 when stopped before the answers
    assert interval_resume.on_chain(lab.chain.state, nodes(lab), 11, lab.chain.locate_tx).iterations == 0
    assert interval_resume.on_chain(lab.chain.state, nodes(lab), 10).iterations == 1 + answered  # not located


def test_the_resumed_loop_goes_on_with_the_third_iteration_not_a_second_second(lab: Lab) -> None:
    two_iterations(lab, 10, answered=False)
    loop = lab.node()
    prior = interval_resume.on_chain(lab.chain.state, nodes(lab), 10, lab.chain.locate_tx)
    sent: list[dict[str, Any]] = []
    loop.recorder.adjustment = lambda to, t, body: sent.append(body)
    loop.planner = SimpleNamespace(adjust=lambda *args: ([], {}, None))
    contract = SimpleNamespace(
        mg="mg1",
        body=lambda: {"interval": 10, "limit_kw": 40.0},
        min_injection_mw=None,
        max_injection_mw=None,
    )
    analysis = SimpleNamespace(contracts=[contract], unmet=None, target_open=loop.live.open_set)
    injections = {"mg1": (0.05, 0.0), "mg2": (0.1, 0.0)}
    asyncio.run(loop.security_loop(10, {"mg1", "mg2"}, injections, analysis, prior.iterations))
    assert [body["iteration"] for body in sent] == [3]  # before: [2], sealed a second time


def test_the_node_waits_for_the_answers_to_the_iteration_it_stopped_in(lab: Lab) -> None:
    assert run(lab.node(), stop_after=12) == [10, 11, 12]
    two_iterations(lab, 13, answered=False)
    lab.restart()

    class Answering(Changed):
        """The MGs' answers to iteration 2 land while the restarted node waits for them."""

        async def wait(self, timeout: float) -> None:
            mine = query.equivalent_injection(lab.chain.state, lab.mgs["mg2"][0].public, 13)
            if mine is not None and mine["revision"] == 1:
                lab.inject("mg1", 13, 2, 50_000)
                lab.inject("mg2", 13, 2, 50_000)
            await asyncio.sleep(0.01)

    again = lab.node(Answering())
    again.replica.store = lab.chain  # type: ignore[attr-defined]  # the node's replica: its store locates txids
    assert run(again, stop_after=13) == [13]
    record = json.loads(lab.records.read_text().splitlines()[-1])
    assert record["resumed"]["iterations"] == 2  # before: 1
    # mg2's answer to 2 (before: 100, its answer to 1)
    assert record["injections_kw"]["mg2"] == pytest.approx(50.0)
    for mg in ("mg1", "mg2"):  # nothing sealed again
        assert len(read_obj(lab.chain.state, ks.adjustment_index(lab.mgs[mg][0].public, 13))) == 1

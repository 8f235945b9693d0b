"""D7: a restarted DSO node goes on from the first interval it has not finished, not from `loop.first_interval`.

U6's drill (/work/notes/U6_drills.md, drill 2): restarted at interval 44 of 40-51, the node ran 40-44 again, so
the lab recorded 17 intervals for 12 and six false overruns; in the field it would have sent a day's network
checks, adjustment contracts and switching again. Here the interval loop itself (`DsoLoop.run`, the real
`interval`: planner, security loop, switching, records) runs on a DSO chain in a LevelDB store, is stopped, and
is started again on the same store and record file; the half-done interval's contracts and switching on the
chain are not issued again, and its security loop goes on with the next iteration. `interval_resume` is read
pure too: torn lines, other intervals, no record file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso import interval_resume
from peergrid_dso.drivers.relay_memory import InMemoryRelays
from peergrid_dso.dso_node import LiveTopology, LockedExecutor
from peergrid_dso.feeder.cases import case33bw
from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import Changed
from peergrid_dso.services.dso_chain import ChainRecorder
from peergrid_dso.services.interval import IntervalPlanner
from peergrid_dso.services.switching import SwitchingExecutor, SwitchingService
from peergrid_ledger import keyspace as ks
from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.state import read_obj
from peergrid_ledger.store import BlockStore

FIRST, INTERVALS = 10, 6  # intervals 10-15
BUSES = {"mg1": 18, "mg2": 25}
OPTIMUM = (7, 9, 14, 32, 37)  # case33bw's open set after a reconfiguration (test_live_wiring)


class Sealing:
    """The DSO chain behind the node's recorder: each transaction signed, submitted and sealed into its block."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    def sign_and_submit(self, keypair: Keypair, kind: str, body: dict[str, Any]) -> Any:
        result = self.chain.sign_and_submit(keypair, kind, body, 1)
        if result.ok:
            self.chain.seal(1)
        return result


class Replica:
    """The node's DSO-chain replica: the chain's sealed state and head."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    @property
    def app(self) -> Any:
        return SimpleNamespace(state=self.chain.state, head=lambda: SimpleNamespace(height=self.chain.height))


class Lab:
    """A DSO chain in a LevelDB store, two MGMCs that sent their injections for every interval, and the relays
    (in memory) the node switches; `node()` is one life of the DSO node on them."""

    def __init__(self, tmp_path: Path) -> None:
        self.authority, self.dso = Keypair.generate(), Keypair.generate()
        self.mgs = {mg: (Keypair.generate(), Keypair.generate()) for mg in BUSES}  # node key, anonym
        accounts = [Account(self.dso.public, ("dso",), "dso")]
        for mg, (node, anonym) in self.mgs.items():
            accounts += [Account(node.public, ("mgmc",), mg), Account(anonym.public, ("anonym",), mg)]
        genesis = Genesis(chain="d7-dso", time=0, authorities=(self.authority.public,), accounts=tuple(accounts),
                          params=Params())  # fmt: skip
        self.path = tmp_path / "dso.db"
        self.store = BlockStore.create(self.path, genesis)
        self.chain = LocalChain.open(self.store, self.authority)
        self.records = tmp_path / "dso.jsonl"
        self.feeder = case33bw(BUSES)
        self.relays = InMemoryRelays({b.number: b.closed for b in self.feeder.branches})
        for t in range(FIRST, FIRST + INTERVALS):
            for mg in self.mgs:
                self.inject(mg, t, 0)

    def inject(self, mg: str, t: int, revision: int, watts: int = 100_000) -> None:
        body = {"interval": t, "injection": watts, "revision": revision}
        assert self.chain.sign_and_submit(self.mgs[mg][0], "equivalent_injection", body, 1).ok
        self.chain.seal(1)

    def restart(self) -> None:
        """The node's process ends (its store closed) and the next opens the same store."""
        self.store.close()
        self.store = BlockStore.open(self.path)
        self.chain = LocalChain.open(self.store, self.authority)

    def node(self, changed: Changed | None = None) -> DsoLoop:
        mgs = {mg: SimpleNamespace(node=node.public.hex(), anonym=anonym.public.hex(), bus=BUSES[mg])
               for mg, (node, anonym) in self.mgs.items()}  # fmt: skip
        s = SimpleNamespace(feeder="d7", mgs=mgs, first_interval=FIRST, intervals=INTERVALS, wait_s=0.2,
                            max_iterations=3, rebargain_wait_s=0.2, record_file=self.records, tariff_file=None)  # fmt: skip
        recorder = ChainRecorder(Sealing(self.chain), self.dso)
        lock = threading.RLock()
        executor = LockedExecutor(SwitchingExecutor(self.relays, recorder), lock)
        switching = SwitchingService(executor, auto=True)  # type: ignore[arg-type]
        opened = tuple(sorted(b for b, closed in self.relays.closed.items() if not closed))  # as adopted
        publish = SimpleNamespace(publish=lambda *args, **kwargs: None)
        return DsoLoop(s, Replica(self.chain), None, changed or Changed(), SimpleNamespace(client=publish), recorder,  # type: ignore[arg-type]
                       switching, IntervalPlanner(self.feeder, opened, 0), self.dso, LiveTopology(opened), lock)  # fmt: skip

    def recorded(self) -> list[int]:
        return [json.loads(line)["interval"] for line in self.records.read_text().splitlines()]


def run(loop: DsoLoop, stop_after: int | None = None, within_s: float = 60) -> list[int]:
    """Run the loop until it has recorded `stop_after` (then stop, as SIGTERM does) or its last interval, failing
    after `within_s`."""
    worked: list[int] = []
    stop = asyncio.Event()

    def recorded(doc: dict[str, Any]) -> None:
        worked.append(doc["interval"])
        if doc["interval"] == stop_after:
            stop.set()

    loop.listeners.append(recorded)
    asyncio.run(asyncio.wait_for(loop.run(stop), within_s))
    return worked


@pytest.fixture
def lab(tmp_path: Path) -> Any:
    bed = Lab(tmp_path)
    yield bed
    bed.store.close()


def test_a_restarted_node_resumes_after_the_last_interval_it_finished(lab: Lab, caplog: Any) -> None:
    assert run(lab.node(), stop_after=12) == [10, 11, 12]
    lab.restart()
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert run(lab.node()) == [13, 14, 15]  # before: 10-15 again
    assert lab.recorded() == [10, 11, 12, 13, 14, 15]  # each interval once: the lab's intervals_done
    said = [r.getMessage() for r in caplog.records if "interval 13" in r.getMessage()]
    assert said == [f"restarted: resuming at interval 13 of 10-15: {lab.records} holds 10-12 finished"]
    assert caplog.records[0].levelno == logging.WARNING  # the lab's DSO logs warnings only
    lab.restart()
    with caplog.at_level(logging.INFO, "peergrid_dso.interval_node"):
        assert run(lab.node()) == []  # all finished: nothing run, nothing recorded
    assert (
        f"restarted: every interval of 10-15 is finished ({lab.records}); nothing to run" in caplog.messages
    )


def test_the_half_done_interval_goes_on_without_its_contracts_or_switching_sent_again(lab: Lab) -> None:
    first = lab.node()
    assert run(first, stop_after=12) == [10, 11, 12]
    # before the stop, interval 13 had sent mg1 its iteration-1 contract, mg1 had answered, and the switching
    # had begun (the relays moved, the plan on the chain): then the process ended before its record
    node1 = lab.mgs["mg1"][0].public
    first.recorder.adjustment(node1, 13, {"interval": 13, "iteration": 1, "limit_kw": 50.0})
    lab.inject("mg1", 13, 1, 50_000)
    assert first.switch(13, OPTIMUM, first.live.open_set, {"mg1": (0.05, 0.0), "mg2": (0.1, 0.0)})[1].ok
    lab.restart()
    again = lab.node()
    assert again.live.open_set == OPTIMUM  # where the relays stand
    again.switch = lambda *args: pytest.fail("interval 13 switched again")  # type: ignore[method-assign]
    assert run(again, stop_after=13) == [13]
    record = json.loads(lab.records.read_text().splitlines()[-1])
    assert record["resumed"] == {"iterations": 1, "switching_plan": "interval-13", "switching_result": True}
    assert record["plan"] == {"id": "interval-13", "before_restart": True}
    assert record["injections_kw"]["mg1"] == pytest.approx(50.0)  # mg1's answer, not its first injection
    assert len(read_obj(lab.chain.state, ks.adjustment_index(node1, 13))) == 1  # no contract sent again
    assert query.switching_plan(lab.chain.state, "interval-14") is None


def test_the_half_done_interval_waits_for_the_answers_to_its_last_contracts(lab: Lab) -> None:
    first = lab.node()
    assert run(first, stop_after=12) == [10, 11, 12]
    node1 = lab.mgs["mg1"][0].public
    first.recorder.adjustment(
        node1, 13, {"interval": 13, "iteration": 1, "limit_kw": 50.0}
    )  # then it stopped
    lab.restart()

    class Answering(Changed):
        """The DSO chain's final blocks: the MGs' answers to iteration 1 land while the node waits for them."""

        async def wait(self, timeout: float) -> None:
            mine = query.equivalent_injection(lab.chain.state, node1, 13)
            if mine is not None and mine["revision"] == 0:
                lab.inject("mg1", 13, 1, 50_000)
                lab.inject("mg2", 13, 1)
            await asyncio.sleep(0.01)

    assert run(lab.node(Answering()), stop_after=13) == [13]
    record = json.loads(lab.records.read_text().splitlines()[-1])
    assert record["resumed"] == {"iterations": 1, "switching_plan": None, "switching_result": False}
    assert record["injections_kw"]["mg1"] == pytest.approx(50.0)  # analysed on its answer (before: 100)
    assert record["adjustments"] == [] and record["secure"]  # secure on the answers: nothing more sent
    assert len(read_obj(lab.chain.state, ks.adjustment_index(node1, 13))) == 1


def test_a_resumed_security_loop_goes_on_with_the_next_iteration(lab: Lab) -> None:
    loop = lab.node()
    node1 = lab.mgs["mg1"][0].public
    loop.recorder.adjustment(node1, 10, {"interval": 10, "iteration": 1})  # sent before the restart
    lab.inject("mg1", 10, 1)  # and answered
    prior = interval_resume.on_chain(lab.chain.state, {"mg1": node1}, 10)
    assert prior.iterations == 1 and prior.plan is None
    sent: list[dict[str, Any]] = []
    loop.recorder.adjustment = lambda to, t, body: sent.append(body)
    loop.planner = SimpleNamespace(adjust=lambda *args: ([], {}, None))  # secure after this iteration
    contract = SimpleNamespace(
        mg="mg1",
        body=lambda: {"interval": 10, "limit_kw": 40.0},
        min_injection_mw=None,
        max_injection_mw=None,
    )
    analysis = SimpleNamespace(contracts=[contract], unmet=None, target_open=loop.live.open_set)
    injections = {"mg1": (0.1, 0.0), "mg2": (0.1, 0.0)}
    out = asyncio.run(loop.security_loop(10, {"mg1", "mg2"}, injections, analysis, prior.iterations))
    assert [body["iteration"] for body in sent] == [2]  # an answer to a second iteration 1 would be refused
    assert out.iterations == 3 and [r["iteration"] for r in out.rounds] == [2]
    sent.clear()
    spent = asyncio.run(loop.security_loop(10, {"mg1", "mg2"}, injections, analysis, 3))
    assert sent == [] and spent.iterations == 4  # max_iterations 3: none left


def test_where_the_loop_starts_from_its_records(tmp_path: Path) -> None:
    records = tmp_path / "dso.jsonl"
    assert interval_resume.resume_at(None, 40, 52) == (
        40, "the loop starts at interval 40 of 40-51 (no record_file: it cannot know what an earlier run finished)"
    )  # fmt: skip
    assert interval_resume.resume_at(records, 40, 52).interval == 40  # no file yet: a first start
    lines = [{"interval": 39}, {"interval": 40}, {"interval": 41, "error": "failed; see the DSO node log"},
             {"interval": 42}, [1], {"interval": "43"}, {"interval": True}, {"interval": 60}]  # fmt: skip
    records.write_text("".join(json.dumps(doc) + "\n" for doc in lines) + '{"interval": 43, "inj')  # torn
    resume = interval_resume.resume_at(records, 40, 52)
    assert resume == (43, f"restarted: resuming at interval 43 of 40-51: {records} holds 40-42 finished")
    assert interval_resume.resume_at(records, 30, 40).interval == 40  # 39, the last of 30-39: all finished
    assert interval_resume.resume_at(records, 50, 60).interval == 50  # none of 50-59 recorded


def test_a_record_file_it_cannot_read_stops_the_start_naming_it(lab: Lab) -> None:
    lab.records.mkdir()  # a folder where the records should be
    with pytest.raises(
        ConfigError, match=rf"^loop.record_file: {lab.records}: cannot read it \(Is a directory\)$"
    ):
        lab.node()  # as DsoNode.assemble builds it: serve exits 2 with this line

"""A rejoin from the chain alone keeps the fee drift's `drift_from` (issue #7; a3d6619 / 1aacdd4's known limit).

`Book.drift_from` (the imbalance of the iteration a fee's drift first took ρ below the config's, what every
verdict waits on once ρ is back: `Book.lowered`) is not in the chain's state; a restart takes it from its
checkpoint, and a rejoin without one now reads it back from the session's blocks
(`dayahead_rejoin.drift_from`). The day: ieee33's midday intervals 36-43 without the two gensets (a rejoin
refuses the genset phases) at one tick per side: `allocate`'s book first halves ρ below the config's at
iteration 6, on an imbalance of 0.32 kWh, and stops by value after 45 iterations. On one real `EdgeLedger`:
- a member that dies after its post of 30 and rejoins without a checkpoint ends with the uninterrupted
  coordinator's `drift_from`, float-equal, and the checkpoint's of a member that kept one; one that dies
  after its post of 3, before the drift, rejoins with None and takes the same value from its own book at 6;
- on the stored chain: the read is None for every book stepped before 6 and that value from 6 on, None on
  a fee-0 book (no block read), and a missing, corrupt or swapped block is `BlocksUnread` naming the
  height, which the rejoin logs as an error and goes on without (None).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_edge_dayahead_restart import Died, roles
from test_edge_dayahead_session import SESSION, run_session
from test_edge_fee import VALUE, free_chain

from peergrid_controller.dayexchange import Book
from peergrid_controller.model import Scenario
from peergrid_controller.scenario import load_scenario
from peergrid_controller.simulate import window
from peergrid_edge.dayahead_agent import DayAheadAgent
from peergrid_edge.dayahead_rejoin import BlocksUnread, drift_from
from peergrid_edge.dayahead_restart import drift_of
from peergrid_edge.exchange_io import SessionOutcome
from peergrid_ledger.contracts import exchange
from peergrid_ledger.store import BlockStore, body_key

IEEE33 = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
TICK = 10**6
FIRST_LOWERED = 6  # the iteration `allocate`'s book first takes ρ below the config's on this day (measured)


def midday() -> Scenario:
    day = window(load_scenario(IEEE33), 36, 44)
    return Scenario(
        day.name, day.interval_hours, tuple(dataclasses.replace(m, gensets=()) for m in day.microgrids)
    )


def keeping(drifts: dict[str, list[float | None]], dies_after: int | None = None) -> type[DayAheadAgent]:
    """An agent that notes its book's `drift_from` as its model is first made (a rejoin: once the book is
    rebuilt) and at its stop, in `drifts[its MG]`; with `dies_after` its process dies once its post of that
    iteration landed and restarts at once, with no checkpoint: it rejoins from the chain alone."""

    class Keeps(DayAheadAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.args, self.kwargs = args, kwargs
            self.noted = False

        def _first_model(self) -> Any:
            if not self.noted and self.book is not None and self.book.iterations > 0:  # rejoined
                drifts.setdefault(self.mg.name, []).append(self.book.drift_from)
            self.noted = True
            return super()._first_model()

        async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
            await super()._post(k, positions, says_settled)
            if k == dies_after:
                raise Died

        async def _finish(self) -> str:
            assert self.book is not None
            drifts.setdefault(self.mg.name, []).append(self.book.drift_from)
            return await super()._finish()

        async def run(self) -> SessionOutcome:
            try:
                return await super().run()
            except Died:
                return await keeping(drifts)(*self.args, **self.kwargs).run()

    return Keeps


def test_a_rejoin_from_the_chain_alone_keeps_drift_from_as_the_uninterrupted_book_and_the_checkpoint(
    tmp_path: Path,
) -> None:
    scenario = midday()
    ledger, keys_ = free_chain(tmp_path, scenario, TICK)
    coordinator, _ = roles(keys_)
    late, early, kept = [name for name in sorted(keys_) if name != coordinator][:3]
    checkpoint = tmp_path / "checkpoint.json"
    drifts: dict[str, list[float | None]] = {}
    make = {name: keeping(drifts) for name in keys_}
    make[late], make[early] = keeping(drifts, dies_after=30), keeping(drifts, dies_after=3)
    make[kept] = lambda *a, **kw: keeping(drifts)(*a, checkpoint=checkpoint, **kw)  # type: ignore[misc]
    outcomes = run_session(ledger, keys_, scenario, make=make, config=VALUE, timeout_s=10.0)
    # every MGMC completed on one stop (a rejoin's verdict on the step before its rejoin is "not settled": the
    # value stop may come an iteration later for each, `dayahead_restart.rejoin`)
    assert all(o.completed for o in outcomes.values()), [o.reason for o in outcomes.values()]
    assert len({(o.stop, o.iterations, o.prices) for o in outcomes.values()}) == 1
    (uninterrupted,) = drifts[coordinator]
    assert uninterrupted is not None and uninterrupted > 0
    assert drifts[late] == [uninterrupted, uninterrupted]  # read back at the rejoin (None before this change)
    assert drifts[early] == [None, uninterrupted]  # rejoined before the drift: its own book took it at 6
    assert json.loads(checkpoint.read_text())["drift_from"] == uninterrupted
    others = {name: drifts[name] for name in keys_ if name not in (late, early)}
    assert others == {name: [uninterrupted] for name in others}  # every book that ran through, float-equal


# --- the read on the stored chain -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Scenario, float]:
    """The midday day played once without a restart, its chain left in a store; the coordinator's
    drift_from."""
    where = tmp_path_factory.mktemp("midday")
    scenario = midday()
    ledger, keys_ = free_chain(where, scenario, TICK)
    drifts: dict[str, list[float | None]] = {}
    outcomes = run_session(ledger, keys_, scenario, make=dict.fromkeys(keys_, keeping(drifts)), config=VALUE,
                           timeout_s=10.0)  # fmt: skip
    assert all(o.completed for o in outcomes.values())
    (drift,) = drifts[roles(keys_)[0]]
    assert drift is not None
    return where, scenario, drift


def stored_book(
    ledger: Any, keys_: dict[str, Any], scenario: Scenario, fee: int, stepped: int | None = None
) -> tuple[list[bytes], Book]:
    """The stored session's members (keys in its order) and a book at its opening prices with `fee`, after
    `stepped` steps (None: every step the chain took)."""
    members = [keys_[mg.name].public for mg in scenario.microgrids]
    record = exchange.session(ledger.state("mgmc"), SESSION)
    assert record is not None
    book = Book(VALUE, record["prices"], len(members), fee)
    book.iterations = record["iteration"] - 1 if stepped is None else stepped
    return members, book


def read(where: Path, scenario: Scenario, stepped: int, fee: int = TICK, blocks: Any = None) -> float | None:
    """`drift_from` of a book after `stepped` steps of the stored session (its members' keys in its order)."""
    ledger, keys_ = free_chain(where, scenario, TICK)
    try:
        members, book = stored_book(ledger, keys_, scenario, fee, stepped)
        replica = ledger.replicas["mgmc"]
        store = replica.store if blocks is None else blocks(replica.store)
        return asyncio.run(drift_from(book, SESSION, members, store, replica.app.head().height))
    finally:
        ledger.close()


def test_the_read_is_none_before_the_first_lowering_and_the_books_value_from_it_on(
    stored: tuple[Path, Scenario, float],
) -> None:
    where, scenario, drift = stored
    got = {k: read(where, scenario, k) for k in (1, FIRST_LOWERED - 1, FIRST_LOWERED, FIRST_LOWERED + 1, 44)}
    assert got == {
        1: None,
        5: None,
        6: drift,
        7: drift,
        44: drift,
    }  # 44: every step (45: the value stop's close)


class Untouched:
    def transactions(self, height: int) -> tuple[bytes, ...]:
        raise AssertionError(f"block {height} read on a fee-0 book")


def test_a_fee_0_book_reads_no_block_and_has_none(stored: tuple[Path, Scenario, float]) -> None:
    where, scenario, _ = stored
    assert read(where, scenario, 44, fee=0, blocks=lambda _store: Untouched()) is None


class Missing:
    """The store without block `height` (BlockStore.transactions' KeyError for one it does not hold)."""

    def __init__(self, store: BlockStore, height: int) -> None:
        self.store, self.height = store, height

    def transactions(self, height: int) -> tuple[bytes, ...]:
        if height == self.height:
            raise KeyError(height)
        return self.store.transactions(height)


def session_blocks(where: Path, scenario: Scenario) -> range:
    """The heights of the stored session's blocks (its open to its close)."""
    ledger, _ = free_chain(where, scenario, TICK)
    try:
        store, head = ledger.replicas["mgmc"].store, ledger.height("mgmc")
        kinds = {h: {tx.kind for tx in store.block(h).txs} for h in range(1, head + 1)}
    finally:
        ledger.close()
    opened = min(h for h, k in kinds.items() if "exchange.open" in k)
    closed = max(h for h, k in kinds.items() if "exchange.close" in k)
    return range(opened, closed + 1)


def test_a_missing_corrupt_or_swapped_block_is_named_and_the_rejoin_goes_on_without(
    stored: tuple[Path, Scenario, float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    where, scenario, _ = stored
    heights = session_blocks(where, scenario)
    middle = heights[len(heights) // 2]
    with pytest.raises(BlocksUnread, match=f"block {middle} is not in this replica's store"):
        read(where, scenario, 44, blocks=lambda store: Missing(store, middle))
    # corrupt (a body that does not decode) and swapped (a body that does, another block's): on copies
    for how in ("corrupt", "swapped"):
        copy = tmp_path / how
        shutil.copytree(where, copy)
        ledger, _ = free_chain(copy, scenario, TICK)
        store = ledger.replicas["mgmc"].store
        other = store.raw_get(body_key(middle + 1))
        assert other is not None
        store.raw_put(body_key(middle), b"\x00not a body" if how == "corrupt" else other)
        ledger.close()
        why = "stored body is corrupt" if how == "corrupt" else "not the ones its header commits to"
        with pytest.raises(BlocksUnread, match=f"height {middle}: .*{why}"):
            read(copy, scenario, 44)
    # the rejoin's own use: logged as an error, the book goes on without (None), nothing raised
    ledger, keys_ = free_chain(copy, scenario, TICK)
    try:
        members, book = stored_book(ledger, keys_, scenario, TICK)
        agent = SimpleNamespace(ledger=ledger, session=SESSION, members=members)
        with caplog.at_level(logging.ERROR, logger="peergrid.edge.dayahead"):
            assert asyncio.run(drift_of(agent, book)) is None  # type: ignore[arg-type]
    finally:
        ledger.close()
    assert f"height {middle}: its transactions are not the ones its header commits to" in caplog.text
    assert "rejoined without it" in caplog.text


def test_a_checkpoint_written_before_drift_from_was_kept_resumes_with_the_blocks_value(
    tmp_path: Path,
) -> None:
    """A member upgraded mid-session: its checkpoint, written by an MGMC before drift_from was kept (1aacdd4),
    has no `drift_from`; the resume reads it back from the blocks as a rejoin does, and it ends with the
    uninterrupted book's value (None before this fallback: the checkpoint's word was taken as no drift)."""
    scenario = midday()
    ledger, keys_ = free_chain(tmp_path, scenario, TICK)
    coordinator, member = roles(keys_)
    checkpoint = tmp_path / "checkpoint.json"
    drifts: dict[str, list[float | None]] = {}

    class Upgraded(DayAheadAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, checkpoint=checkpoint, **kwargs)
            self.args, self.kwargs = args, kwargs

        async def _post(self, k: int, positions: tuple[int, ...], says_settled: bool = False) -> None:
            await super()._post(k, positions, says_settled)
            if k == 30:
                raise Died

        async def run(self) -> SessionOutcome:
            try:
                return await super().run()
            except Died:
                doc = json.loads(checkpoint.read_text())
                assert doc.pop("drift_from") is not None  # lowered before the death
                checkpoint.write_text(json.dumps(doc))  # as the older MGMC wrote it
                return await keeping(drifts)(*self.args, checkpoint=checkpoint, **self.kwargs).run()

    make: dict[str, Any] = {name: keeping(drifts) for name in keys_}
    make[member] = Upgraded
    outcomes = run_session(ledger, keys_, scenario, make=make, config=VALUE, timeout_s=10.0)
    assert all(o.completed for o in outcomes.values()), [o.reason for o in outcomes.values()]
    (uninterrupted,) = drifts[coordinator]
    assert uninterrupted is not None and drifts[member] == [uninterrupted, uninterrupted]

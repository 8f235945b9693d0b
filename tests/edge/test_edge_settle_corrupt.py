"""One corrupt kept-statement file must not stop the Settler (review14 K4). On a sealed chain
(`test_edge_settle_sealed`) a salt file in `<data_dir>/seals/` that does not read as a statement is a final
refusal for that one trade (an error naming the file, the file set aside as `*.corrupt`, never deleted, no new
commitment written over it), and every other trade is stated and settled. A Settler whose submit raises for
one trade books it refused (retried later) and goes on with the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import string
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edge_settle_both import run_chain, settle_within, trades_of
from test_edge_settle_sealed import kinds, sealed_chain, sealed_settler
from test_settlement import KWH, Node

from peergrid_edge.agent_settlement import CorruptStatement, SealedStatements
from peergrid_edge.replicas import Submission
from peergrid_edge.settle_book import Settlements
from peergrid_edge.settlement import Settler
from peergrid_ledger import query
from peergrid_ledger.keys import Keypair

CORRUPT = '{"delivered": 1000, "salt": "zz"'  # R14's bad block: cut short


def test_a_corrupt_salt_file_refuses_its_own_trade_only_and_the_other_settles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """R14's script as a test: two trades, the seller committed the first, then its file went bad."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    sent: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []

    async def day(node: Node) -> tuple[bytes, bytes, Settler]:
        t1 = await node.agree(1, seller, buyer)
        t2 = await node.agree(2, seller, buyer)
        s, _ = sealed_settler(node, seller, tmp_path / "s", {t1: KWH, t2: KWH}, sent)
        s._record = records.append
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.retry_due()  # trade 1 committed, its salt kept
        assert kinds(sent) == ["seal"]
        (tmp_path / "s" / f"{t1.hex()}.json").write_text(CORRUPT)  # the file goes bad
        await s.settle(2, trades_of(node, 2), seller.public, 0.0)
        b, _ = sealed_settler(node, buyer, tmp_path / "b", {t1: KWH, t2: KWH}, [])  # the buyer states both
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await b.settle(2, trades_of(node, 2), buyer.public, 0.0)
        await asyncio.gather(settle_within(s, 10), settle_within(b, 10))  # never raises
        return t1, t2, s

    with caplog.at_level(logging.ERROR, logger="peergrid.edge.trader"):
        t1, t2, s = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert not s.book.pending
    assert [kinds([b]) for b in sent if b["trade"] == t2] == [["seal"], ["reveal"]]  # trade 2 stated in full
    assert [kinds([b]) for b in sent if b["trade"] == t1] == [["seal"]]  # no reveal it could not make
    ended = {r["settlement"]["trade"]: r["settlement"] for r in records}
    assert ended[t2.hex()]["settled"] is True
    assert ended[t1.hex()]["settled"] is False and "corrupt" in ended[t1.hex()]["reason"]
    aside = tmp_path / "s" / f"{t1.hex()}.json.corrupt"
    assert aside.read_text() == CORRUPT and not (tmp_path / "s" / f"{t1.hex()}.json").exists()
    (error,) = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert str(tmp_path / "s" / f"{t1.hex()}.json") in error and str(aside) in error


def test_the_chain_settles_the_corrupt_trade_as_kept_back_and_the_other_as_agreed(tmp_path: Path) -> None:
    """The same day read off the chain: the seller's trade 2 settles on both reveals; trade 1, whose seller
    committed but cannot reveal, is settled by the contract's withheld rule (what a lost salt gives)."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))

    async def day(node: Node) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        t1 = await node.agree(1, seller, buyer)
        t2 = await node.agree(2, seller, buyer)
        s, sealed = sealed_settler(node, seller, tmp_path / "s", {t1: KWH, t2: KWH}, [])
        await s.settle(1, trades_of(node, 1), seller.public, 0.0)
        await s.retry_due()
        (tmp_path / "s" / f"{t1.hex()}.json").write_text(CORRUPT)
        await s.settle(2, trades_of(node, 2), seller.public, 0.0)
        b, _ = sealed_settler(node, buyer, tmp_path / "b", {t1: KWH, t2: KWH}, [])
        await b.settle(1, trades_of(node, 1), buyer.public, 0.0)
        await b.settle(2, trades_of(node, 2), buyer.public, 0.0)
        await asyncio.gather(settle_within(s, 10), settle_within(b, 10))
        state = node.ledger.state("mgmc")
        sealed.prune(state)  # the day's end: trade 2's salt goes, the file set aside stays for the operator
        left = sorted(p.name for p in (tmp_path / "s").iterdir())
        assert left == [f"{t1.hex()}.json.corrupt"]
        return query.trade(state, t1) or {}, query.trade(state, t2) or {}, left

    first, second, _ = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert second["settlement"]["basis"] == "agreed" and second["settlement"]["delivered"] == KWH
    assert set(first["seals"]) == {"seller", "buyer"} and set(first.get("statements", {})) == {"buyer"}
    assert first["settlement"] is not None and first["settlement"]["basis"] == "withheld"


def test_a_corrupt_file_before_the_commitment_is_refused_and_no_new_salt_is_ever_written(
    tmp_path: Path,
) -> None:
    """The file was kept, then went bad before its commitment landed (it may still be in flight): no second
    commitment with a new salt, now or after a restart (the file set aside is still read as corrupt)."""
    seller, buyer, authority = (Keypair.generate() for _ in range(3))
    folder = tmp_path / "s"

    async def day(node: Node) -> tuple[bytes, list[Submission], dict[str, Any]]:
        tid = await node.agree(1, seller, buyer)

        async def submit(body: dict[str, Any]) -> Submission:
            return await node.submit(seller, "settle", body)

        def statements() -> SealedStatements:
            return SealedStatements(submit, lambda: node.ledger.state("mgmc"), lambda: "mgmc-sealed",
                                    seller.public, folder, time.time, lambda: True)  # fmt: skip

        folder.mkdir()
        (folder / f"{tid.hex()}.json").write_text("\x00" * 40)
        answers = [await statements()({"trade": tid, "delivered": KWH})]
        answers.append(await statements()({"trade": tid, "delivered": KWH}))  # a restarted agent
        return tid, answers, query.trade(node.ledger.state("mgmc"), tid) or {}

    tid, answers, record = run_chain(tmp_path, sealed_chain(seller, buyer, authority), authority, day)
    assert all(not a.landed and a.reason.startswith("invalid:") and "corrupt" in a.reason for a in answers)
    assert not record.get("seals")  # nothing committed
    assert [p.name for p in folder.iterdir()] == [f"{tid.hex()}.json.corrupt"]
    assert (folder / f"{tid.hex()}.json.corrupt").read_bytes() == b"\x00" * 40


FIGURE = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.integers(0, 10**6).map(str),
)
SALT = st.one_of(st.binary(min_size=30, max_size=34).map(bytes.hex), st.text(max_size=70), st.integers())
STATEMENT = st.fixed_dictionaries(
    {"delivered": FIGURE, "salt": SALT}, optional={"short": FIGURE, "other": st.integers()}
)


def well_formed(doc: dict[str, Any]) -> bool:
    """What `save` writes: integer figures (no bool, float or text) and 32 bytes of hex."""
    figures = [doc[k] for k in ("delivered", "short") if k in doc]
    salt = doc["salt"]
    return (
        all(type(v) is int for v in figures)
        and isinstance(salt, str)
        and len(salt) == 64
        and all(c in string.hexdigits for c in salt)
    )


def load_raw(folder: Path, raw: bytes) -> tuple[Path, dict[str, Any] | CorruptStatement | None]:
    tid = b"\x07" * 32
    sealed = SealedStatements(None, lambda: None, lambda: "c", b"me", folder, time.time, lambda: True)  # type: ignore[arg-type]
    path = folder / f"{tid.hex()}.json"
    path.write_bytes(raw)
    try:
        return path, sealed.load(tid)
    except CorruptStatement as exc:
        return path, exc


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(STATEMENT, st.integers(0, 3))
def test_a_kept_statement_loads_exactly_when_it_is_what_save_writes(
    tmp_path: Path, doc: dict[str, Any], cut: int
) -> None:
    """Any file of the kept statement's shape: loaded as written when well formed (whole), else refused as
    corrupt naming the file (cut short: a bad block), never another exception, never a figure guessed."""
    text = json.dumps(doc)
    path, kept = load_raw(tmp_path, text[: len(text) - cut].encode())
    if cut == 0 and well_formed(doc):
        assert kept == {k: v for k, v in doc.items() if k in ("delivered", "short")} | {
            "salt": bytes.fromhex(doc["salt"])
        }
    else:
        assert isinstance(kept, CorruptStatement) and kept.path == path and str(path) in str(kept)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)))
def test_short_random_bytes_in_a_kept_file_read_as_corrupt(tmp_path: Path, raw: bytes) -> None:
    path, kept = load_raw(tmp_path, raw)
    # none is a statement: the shortest, {"delivered":0,"salt":"<64 hex>"}, takes 89 bytes
    assert isinstance(kept, CorruptStatement) and kept.path == path


def test_a_good_kept_file_round_trips_and_a_set_aside_one_is_never_read_as_lost(tmp_path: Path) -> None:
    tid = b"\x01" * 32
    sealed = SealedStatements(None, lambda: None, lambda: "c", b"me", tmp_path, time.time, lambda: True)  # type: ignore[arg-type]
    kept = {"delivered": 7, "short": 2, "salt": bytes(range(32))}
    sealed.save(tid, kept)
    assert sealed.load(tid) == kept
    for bad in ({**kept, "delivered": 7.0}, {**kept, "short": True}, {**kept, "salt": b"x"}):
        with pytest.raises(ValueError, match="not a statement to keep"):
            sealed.save(b"\x02" * 32, bad)  # what load would refuse is never kept (nor committed to)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{tid.hex()}.json"]
    aside = tmp_path / f"{tid.hex()}.json.corrupt"
    aside.write_text(CORRUPT)
    with pytest.raises(CorruptStatement, match="set aside as corrupt before") as raised:
        sealed.load(tid)  # a good file beside it does not hide it: the trade stays refused
    assert raised.value.path == aside


class FakeChain:
    """Trades on a chain in miniature for a buyer's Settler (without settle_by_both): open until paid."""

    def __init__(self, *trades: bytes) -> None:
        self.state = {t: {"state": "open", "statements": {}, "deadline": None} for t in trades}
        self.raising: dict[bytes, int] = {}  # how many more submits of a trade raise
        self.sent: list[bytes] = []

    async def submit(self, body: dict[str, Any]) -> Submission:
        tid = body["trade"]
        self.sent.append(tid)
        if self.raising.get(tid, 0) > 0:
            self.raising[tid] -= 1
            raise OSError(28, "No space left on device")
        self.state[tid] = {"state": "settled", "statements": {}, "deadline": None}
        return Submission(True, "")

    def settler(self, records: list[dict[str, Any]]) -> Settler:
        return Settler(self.submit, self.state.get, time.time, asyncio.sleep, lambda: False, records.append,
                       Settlements(0.05, 0.2))  # fmt: skip


def test_a_submit_that_raises_books_its_trade_refused_and_the_others_settle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = b"a" * 32, b"b" * 32
    chain = FakeChain(a, b)
    chain.raising[a] = 2
    records: list[dict[str, Any]] = []
    trades = [(tid, {"buyer": b"me", "seller": b"x", "quantity": 5}) for tid in (a, b)]

    async def day() -> tuple[int, str, int]:
        settler = chain.settler(records)
        settled = await settler.settle(1, trades, b"me")  # a raises, b goes on
        pending = settler.book.pending[a]
        why = pending.reason
        await settle_within(settler, 5)
        return settled, why, len(settler.book.pending)

    with caplog.at_level(logging.ERROR, logger="peergrid.edge.trader"):
        settled, why, left = asyncio.run(day())
    assert settled == 1 and why == "raised OSError: [Errno 28] No space left on device"
    assert left == 0 and chain.state[a]["state"] == "settled" and chain.sent == [a, b, a, a]
    assert [r["settlement"]["attempts"] for r in records] == [3]  # a: settled at its third attempt
    tracebacks = [r for r in caplog.records if r.exc_info and r.name == "peergrid.edge.trader"]
    assert len(tracebacks) == 2 and "No space left" in caplog.text


def test_a_retry_pass_goes_past_a_trade_whose_submit_raises_every_time() -> None:
    """`retry_due`: the due trade that raises first no longer stops the pass; the day's end gives it up."""
    a, b = b"a" * 32, b"b" * 32
    chain = FakeChain(a, b)
    chain.raising[a] = 10**6
    records: list[dict[str, Any]] = []

    async def day() -> Settler:
        settler = chain.settler(records)
        settler.pick_up([(1, a, {"buyer": b"me", "seller": b"x", "quantity": 5}),
                         (1, b, {"buyer": b"me", "seller": b"x", "quantity": 5})], b"me")  # fmt: skip
        await settler.work_until(time.time() + 0.5)
        settler.end_of_day()
        return settler

    settler = asyncio.run(day())
    assert chain.state[b]["state"] == "settled" and chain.state[a]["state"] == "open"
    assert not settler.book.pending and chain.sent.count(a) >= 3 and chain.sent.count(b) == 1
    (gave_up,) = [r["settlement"] for r in records if r["settlement"]["trade"] == a.hex()]
    assert not gave_up["settled"] and "raised OSError" in gave_up["reason"]

"""The DSO node posts the cover prices (`tariff.CoverPricer`, `market.tariff`) against a real market contract on
a `LocalChain` standing in for its non-voting MGMC-chain replica: on a settle_by_both chain, every MG's anonym
for the loop's upcoming intervals a day at a time, never twice for an interval (a restart reads the chain),
never for a closed interval, a refused one logged once and not sent again (no retry loop), one not final in
time sent again with the same body; nothing on a chain without settle_by_both."""

from __future__ import annotations

import asyncio
import itertools
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peergrid_dso.node_chains import Submitted
from peergrid_dso.tariff import CoverPricer, CoverTariff, pricing_window, unpriced_runs
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.contracts import market
from peergrid_ledger.contracts.market_state import MAX_TARIFF_INTERVALS
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair
from peergrid_ledger.results import Rejected

NOW_MS = 10**12
DAY = 96
CLOCK = {"settle_interval_ms": 6_000, "settle_epoch_ms": 0}


class Adapter:
    """`ChainAdapter` over a LocalChain: judges (precheck) and submits, seals one block (final at once);
    `stall` submits nothing and reports a timeout, as a chain not final in time."""

    def __init__(self, local: LocalChain) -> None:
        self.chain, self.local = "mgmc", local
        app = SimpleNamespace(genesis=local.genesis)
        self.node = SimpleNamespace(replicas={"mgmc": SimpleNamespace(app=app)})
        self._app = app
        self.sent: list[dict[str, Any]] = []
        self.stall = False

    async def submit(
        self, key: Keypair, kind: str, body: dict[str, Any], timeout: float = 8.0, precheck: bool = False
    ) -> Submitted:
        assert kind == "market.tariff" and precheck
        self.sent.append(dict(body))
        if self.stall:
            return Submitted(False, "timeout", f"{kind} not final in {timeout} s")
        result = self.local.sign_and_submit(key, kind, body, NOW_MS)
        if result.ok:
            self.local.seal(NOW_MS)
        self._app.state = self.local.state  # the replica has seen the block (or the refusal's cause)
        if isinstance(result, Rejected):
            return Submitted(False, "refused", f"{result.reason.value}: {result.detail}")
        return Submitted(True, txid=result.txid)


class Lab:
    def __init__(self, mgs: tuple[str, ...] = ("mg1", "mg2"), by_both: bool = True) -> None:
        self.dso, self.authority = Keypair.generate(), Keypair.generate()
        self.anonyms = {mg: Keypair.generate() for mg in mgs}
        genesis = Genesis(
            chain="mgmc", time=0, authorities=(self.authority.public,),
            accounts=(Account(self.dso.public, ("dso",)),
                      *(Account(k.public, ("anonym",)) for k in self.anonyms.values())),
            contracts=("market",), params=Params(settle_by_both=1, **CLOCK) if by_both else Params(),
        )  # fmt: skip
        self.chain = LocalChain(genesis, self.authority)
        self.adapter = Adapter(self.chain)
        retail = tuple(140 + k for k in range(DAY))  # a price per interval of the day, told apart
        self.tariff = CoverTariff(15.0, {mg: (retail, (50,) * DAY) for mg in mgs})

    @property
    def state(self) -> Any:
        return self.chain.state

    def pricer(self, first: int = 36, end: int = 39, accounts: dict[str, bytes] | None = None) -> CoverPricer:
        self.adapter._app.state = self.chain.state  # the replica's committed state
        named = accounts or {mg: k.public for mg, k in self.anonyms.items()}
        return CoverPricer(self.tariff, named, self.adapter, self.dso, first, end)

    def price(self, pricer: CoverPricer, current: int | None = None) -> int:
        async def one() -> int:
            landed = await pricer.price(current)
            self.adapter._app.state = self.chain.state
            return landed

        return asyncio.run(one())

    def close(self, t: int) -> None:
        """Interval t closes: a seller offers, its buyer bids, `trade`."""
        seller, buyer = list(self.anonyms.values())[:2]
        self.chain.sign_and_submit(seller, "offer", {"interval": t, "round": 1, "price": 100, "quantity": 10,
                                                     "clean": True}, NOW_MS)  # fmt: skip
        self.chain.sign_and_submit(
            buyer,
            "bid",
            {"interval": t, "round": 1, "demands": [{"seller": seller.public, "quantity": 5}]},
            NOW_MS,
        )
        assert self.chain.sign_and_submit(seller, "trade", {"interval": t}, NOW_MS).ok
        self.chain.seal(NOW_MS)
        self.adapter._app.state = self.chain.state


def test_every_mg_is_priced_for_the_loops_intervals_once_and_a_restart_sends_nothing() -> None:
    lab = Lab()
    assert lab.price(lab.pricer()) == 2  # one run per MG
    for key in lab.anonyms.values():
        assert [market.tariff(lab.state, key.public, t) for t in (36, 37, 38)] == [
            (176, 50),
            (177, 50),
            (178, 50),
        ]
        assert market.tariff(lab.state, key.public, 39) is None  # the loop ends at 38
    sent = len(lab.adapter.sent)
    assert (
        lab.price(lab.pricer(), current=37) == 0
    )  # again, and a fresh pricer (a restart): read, not re-sent
    assert len(lab.adapter.sent) == sent


def test_a_restart_sends_only_what_the_chain_lacks_and_never_a_closed_interval() -> None:
    lab = Lab()
    mg1 = lab.anonyms["mg1"]
    lab.chain.sign_and_submit(lab.dso, "market.tariff", {"account": mg1.public, "first_interval": 37,
                                                        "retail": [1], "feed_in": [1]}, NOW_MS)  # fmt: skip
    lab.chain.seal(NOW_MS)
    lab.close(40)
    assert lab.price(lab.pricer(36, 43)) == 5  # mg1: 36, then 38-39 and 41-42; mg2: 36-39, 41-42
    assert [b["first_interval"] for b in lab.adapter.sent] == [36, 38, 41, 36, 41]
    assert [len(b["retail"]) for b in lab.adapter.sent] == [1, 2, 2, 4, 2]
    assert market.tariff(lab.state, mg1.public, 37) == (1, 1)  # set before, left alone


def test_a_refused_tariff_is_logged_once_and_not_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab()
    stranger = Keypair.generate().public  # not an account on the chain: the contract refuses it for good
    lab.tariff = CoverTariff(15.0, {**lab.tariff.prices, "ghost": lab.tariff.prices["mg1"]})
    pricer = lab.pricer(accounts={"mg1": lab.anonyms["mg1"].public, "ghost": stranger})
    with caplog.at_level(logging.ERROR, logger="peergrid_dso.tariff"):
        for _ in range(20):
            lab.price(pricer)
    ghost = [b for b in lab.adapter.sent if b["account"] == stranger]
    assert len(ghost) == 1, len(ghost)  # 20 passes, one send
    said = [r.getMessage() for r in caplog.records]
    assert (
        len(said) == 1
        and "refuses ghost's cover prices for intervals 36-38" in said[0]
        and "not-found" in said[0]
    )
    assert market.tariff(lab.state, lab.anonyms["mg1"].public, 38) is not None  # the others are priced


def test_an_interval_closed_meanwhile_gives_up_only_itself() -> None:
    lab = Lab()
    pricer = lab.pricer()
    lab.close(37)
    lab.adapter._app.state = {}  # the replica has not seen the closing yet: the run 36-38 goes out, refused
    refused: Any = {}
    pricer.refused = refused
    lab.price(pricer)
    assert [b["first_interval"] for b in lab.adapter.sent][:1] == [36]
    key = lab.anonyms["mg1"].public
    assert refused[key] == {37}  # the replica shows 37 closed now: only it is given up
    lab.price(pricer)
    assert [market.tariff(lab.state, key, t) is not None for t in (36, 37, 38)] == [True, False, True]


def test_given_up_retires_at_least_one_interval_per_refusal() -> None:
    lab = Lab()
    pricer = lab.pricer()
    assert pricer._given_up(range(36, 39), "closed: interval 38 is closed") == [36]  # the replica lags
    assert pricer._given_up(range(36, 39), "not-found: the account is not a known account") == [36, 37, 38]


def test_a_tariff_not_final_in_time_goes_again_with_the_same_body() -> None:
    lab = Lab()
    lab.adapter.stall = True
    pricer = lab.pricer()
    lab.price(pricer)
    assert len(lab.adapter.sent) == 1  # it stops the pass: the chain is not taking transactions now
    lab.adapter.stall = False
    assert lab.price(pricer) == 2
    assert lab.adapter.sent[0] == lab.adapter.sent[1]  # the same body: the adapter adopts the pending one


def test_nothing_is_posted_on_a_chain_without_settle_by_both() -> None:
    lab = Lab(by_both=False)
    stop = asyncio.Event()
    asyncio.run(asyncio.wait_for(lab.pricer().run(stop, lambda: None), 5))  # returns at once
    assert lab.adapter.sent == []


def test_the_run_prices_at_once_and_ends_on_stop() -> None:
    lab = Lab()

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(lab.pricer().run(stop, lambda: None))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(lab.adapter.sent) == 2:
                break
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(go())
    assert [market.tariff(lab.chain.state, k.public, 38) for k in lab.anonyms.values()] == [(178, 50)] * 2


def test_a_day_goes_out_together_half_a_day_before_it_starts() -> None:
    assert pricing_window(36, 36 + 3 * DAY, None, DAY) == range(36, 36 + DAY)
    assert pricing_window(36, 36 + 3 * DAY, 36 + 47, DAY) == range(83, 36 + DAY)
    assert pricing_window(36, 36 + 3 * DAY, 36 + 48, DAY) == range(84, 36 + 2 * DAY)  # the next day too
    assert pricing_window(36, 39, 38, DAY) == range(38, 39)  # never past the loop's end
    assert pricing_window(36, 39, 40, DAY) == range(0)


@given(
    first=st.integers(0, 10**6),
    length=st.integers(1, 5 * DAY),
    ahead=st.integers(0, 5 * DAY),
    per_day=st.sampled_from([24, 96, 288, 1440]),
)
def test_the_window_always_holds_the_next_half_day(first: int, length: int, ahead: int, per_day: int) -> None:
    end, current = first + length, first + ahead
    window = pricing_window(first, end, current, per_day)
    assert window.step == 1
    if len(window):
        assert window.start == current and window.stop <= end
        assert len(window) <= per_day + per_day // 2 + 1
    assert set(range(current, min(end, current + per_day // 2))) <= set(window)


def test_runs_are_split_at_the_contracts_limit() -> None:
    lab = Lab()
    runs = unpriced_runs(lab.state, lab.anonyms["mg1"].public, range(0, 2 * MAX_TARIFF_INTERVALS + 5))
    assert [len(r) for r in runs] == [MAX_TARIFF_INTERVALS, MAX_TARIFF_INTERVALS, 5]
    assert runs[1].start == MAX_TARIFF_INTERVALS
    body = lab.tariff.body("mg1", lab.anonyms["mg1"].public, runs[0])
    assert lab.chain.sign_and_submit(lab.dso, "market.tariff", body, NOW_MS).ok  # the contract takes it


class Counting:
    """A replica state that counts its reads."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.reads = inner, 0

    def get(self, key: bytes) -> Any:
        self.reads += 1
        return self.inner.get(key)


def test_what_the_chain_has_priced_is_read_once_not_at_every_pass() -> None:
    lab = Lab()
    pricer = lab.pricer(36, 36 + DAY)
    assert lab.price(pricer) == 2
    lab.price(pricer)  # reads the intervals it just priced once more: now it knows them
    counting = Counting(lab.chain.state)
    lab.adapter._app.state = counting
    asyncio.run(pricer.price(None))
    assert counting.reads == 0 and len(lab.adapter.sent) == 2  # a day for two MGs: no read, nothing sent
    asyncio.run(pricer.price(36 + 60))  # later in the day: the past is forgotten, the rest still known
    assert counting.reads == 0 and all(min(k) == 96 for k in pricer.known.values())


@given(
    closed=st.sets(st.integers(0, 60)),
    priced=st.sets(st.integers(0, 60)),
    skip=st.sets(st.integers(0, 60)),
    start=st.integers(0, 30),
    length=st.integers(0, 40),
)
def test_the_runs_are_exactly_what_the_chain_lacks_in_order(
    closed: set[int], priced: set[int], skip: set[int], start: int, length: int
) -> None:
    from peergrid_ledger.codec import encode
    from peergrid_ledger.contracts.market_state import interval_key, tariff_key

    account = b"k" * 32
    state = {interval_key(t): encode({"closed": True}) for t in closed}
    state |= {tariff_key(account, t): encode([1, 1]) for t in priced}
    state[tariff_key(b"o" * 32, start)] = encode([1, 1])  # another account's prices are not this one's
    window = range(start, start + length)
    runs = unpriced_runs(state, account, window, skip)
    sent = [t for run in runs for t in run]
    assert sent == [t for t in window if t not in closed | priced | skip]  # each once, in order
    assert all(len(run) >= 1 and run.step == 1 for run in runs)
    assert all(a.stop < b.start for a, b in itertools.pairwise(runs))  # maximal: a gap between runs


@given(data=st.data(), per_day=st.sampled_from([24, 96, 288, 1440]), intervals=st.integers(1, 3 * 1440))
def test_the_first_pass_prices_every_interval_the_forward_day_trades(
    data: st.DataObject, per_day: int, intervals: int
) -> None:
    """The DSO node's first pass, at its start (current None), covers every interval the MGMCs' forward day
    trades (review12 F6: the day-ahead coordinator waits for exactly those): the edge trades from the loop's
    first interval to the scenario day's last (`trader._last_interval`), the DSO prices the loop's first day."""
    first = data.draw(st.integers(0, per_day - 1))
    traded = range(first, min(per_day, first + intervals))  # the edge's window, the same first and count
    assert set(traded) <= set(pricing_window(first, first + intervals, None, per_day))

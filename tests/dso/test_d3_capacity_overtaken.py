"""A connection capacity the DSO posts from the loop's first interval (`tariff.CapacityPoster`) whose MG takes its
first position there before the capacity is final: the chain refuses it (`market.capacity` stands only from an
interval after the account's last position) and, before D3, the poster logged that as a refusal for good and
never sent it again, leaving the MG with no bound but its own rules for the rest of the day. Now it is sent
again, once, from the first interval it can stand from, with a WARNING saying which intervals went without it.

- the race on a real consensus replica through the DSO's real `ChainAdapter`: the MG's offer for the first
  interval is in the pool before the capacity (the precheck on the committed state passes it), the block takes
  the offer first and the capacity is refused there; it then stands from the next interval;
- once: where the MG's position overtakes the second one too (a stand-in adapter that lands a position in the
  capacity's interval before each submit), it is refused for good and logged as such, not sent a third time;
- a refusal for another reason (the key lacks the dso role) is still not sent again (test_capacity_poster), also
  where the MG's position stands in the capacity's interval (review R42-7: any refusal was taken as the
  overtaking there).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers_replica import wall_ms

from peergrid_dso.node_chains import ChainAdapter, Submitted
from peergrid_dso.tariff import CapacityPoster
from peergrid_ledger.contracts import market
from peergrid_ledger.genesis import Account
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import sign_tx

from .lone_chain import LoneMgmcChain
from .test_capacity_poster import NOW_MS, Lab

FIRST = 36
WH = 1250  # 5 kW over 15 minutes


def offer(interval: int) -> dict[str, Any]:
    return {"interval": interval, "round": 1, "price": 100, "quantity": 10, "clean": True}


class Replica(LoneMgmcChain):
    """A lone authority's MGMC chain (market, exchange, uplift), its blocks made by hand (`pumping`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.authority, self.dso, self.seller = (Keypair.generate() for _ in range(3))
        accounts = (
            Account(self.dso.public, ("dso",)),
            Account(self.seller.public, ("anonym",), balance=10**9),
        )
        super().__init__(tmp_path / "mgmc", self.authority, accounts, ("market", "exchange", "uplift"))


def test_a_capacity_its_mgs_first_position_overtook_is_sent_again_from_the_next_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab = Replica(tmp_path)
    app = lab.replica.app
    mine = sign_tx(lab.seller, "mgmc", "offer", app.next_nonce(lab.seller.public), wall_ms(), offer(FIRST))
    lab.replica.submit(mine.raw, wall_ms())  # in the pool, not in a block: ahead of the capacity there

    async def run() -> tuple[bool, CapacityPoster]:
        adapter = ChainAdapter(lab.node, "mgmc", asyncio.get_running_loop(), lab.changed)
        poster = CapacityPoster({"mg1": WH}, {"mg1": lab.seller.public}, adapter, lab.dso, FIRST)
        posting = asyncio.create_task(poster.post())
        await asyncio.sleep(0.1)  # signed, prechecked (no position yet on the committed state) and pooled
        assert len(app.mempool) == 2
        stop = asyncio.Event()
        pumping = asyncio.create_task(lab.pumping(stop))
        try:
            return await posting, poster
        finally:
            stop.set()
            await pumping

    with caplog.at_level(logging.INFO, "peergrid_dso.tariff"):
        done, poster = asyncio.run(run())
    state = app.state
    assert lab.store.locate_tx(mine.txid) is not None  # the MG's first position went first
    assert done and poster.refused == set()
    # before D3: refused for good, nothing standing at all (None, None)
    standing = [market.capacity(state, lab.seller.public, t) for t in (FIRST, FIRST + 1)]
    assert standing == [None, WH]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid_dso.tariff"]
    assert said == [
        ("WARNING", f"the MGMC chain refused mg1's connection capacity ({WH} Wh from interval {FIRST}): mg1 took "
                    f"a position in interval(s) {FIRST} before it was final (rule-violation: the account traded or "
                    f"accepted up to interval {FIRST}: its capacity can change only after it); sent again, once, "
                    f"from interval {FIRST + 1}"),
        ("INFO", f"mg1's connection capacity posted: {WH} Wh per interval from interval {FIRST + 1}"),
    ], said  # fmt: skip
    lab.store.close()


class Overtaking:
    """The stand-in adapter of test_capacity_poster whose MG lands a position in each capacity's interval just
    before the capacity is submitted: every capacity is overtaken."""

    kind = "market.capacity"

    def __init__(self, lab: Lab) -> None:
        self.lab, self.inner = lab, lab.adapter
        self.chain, self.node = self.inner.chain, self.inner.node
        self.sent: list[dict[str, Any]] = []

    async def submit(
        self, key: Keypair, kind: str, body: dict[str, Any], precheck: bool = False
    ) -> Submitted:
        self.sent.append(dict(body))
        assert self.lab.chain.sign_and_submit(self.lab.anonyms["mg1"], "offer", offer(body["from_interval"]),
                                              NOW_MS).ok  # fmt: skip
        self.lab.chain.seal(NOW_MS)  # final before the capacity is judged
        return await self.inner.submit(key, kind, body, precheck)


def test_it_is_sent_again_once_only(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab()
    poster = lab.poster({"mg1": 5.0}, first=FIRST)
    poster.adapter = overtaking = Overtaking(lab)
    with caplog.at_level(logging.WARNING, "peergrid_dso.tariff"):
        assert asyncio.run(poster.post()) is True  # nothing pending: given up
        assert asyncio.run(poster.post()) is True  # and not sent again at the next pass
    assert [b["from_interval"] for b in overtaking.sent] == [FIRST, FIRST + 1]
    assert poster.refused == {"mg1"} and lab.standing("mg1", FIRST + 2) is None
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid_dso.tariff"]
    assert [level for level, _ in said] == ["WARNING", "ERROR"], said
    assert said[1][1] == (
        f"the MGMC chain refuses mg1's connection capacity ({WH} Wh from interval {FIRST + 1}): rule-violation: "
        f"the account traded or accepted up to interval {FIRST + 1}: its capacity can change only after it; not "
        "sent again"
    )


def test_another_refusal_beside_a_position_is_not_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(dso_role="mgmc")  # the poster's key lacks the dso role: refused for that, for good
    poster = lab.poster({"mg1": 5.0}, first=FIRST)
    # and the MG's position lands in the capacity's interval first
    poster.adapter = overtaking = Overtaking(lab)
    with caplog.at_level(logging.WARNING, "peergrid_dso.tariff"):
        assert asyncio.run(poster.post()) is True
    assert [b["from_interval"] for b in overtaking.sent] == [FIRST]  # before R42-7: sent again for FIRST + 1
    assert poster.refused == {"mg1"}
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peergrid_dso.tariff"]
    assert [level for level, _ in said] == ["ERROR"] and "forbidden" in said[0][1], said

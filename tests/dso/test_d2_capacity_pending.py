"""A connection capacity not final yet is a WARNING only where it matters (D2, U3 run 2): a `--dayahead` lab's
dso.log opened with six 'connection capacity not final yet: timeout' WARNINGs, one per MG, though every capacity
stood 35.4 s before the first interval. The MGMC chain makes no block until its validators, the MGMCs, run, and
the lab starts them after the DSO: the first pass's submits time out as a matter of course. Told once at INFO; a
WARNING once the MG took a position in an interval the capacity was meant to bind (the chain takes one for an
interval only until the MG's first position there)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dso.test_capacity_poster import NOW_MS, Lab


def test_a_pending_capacity_warns_only_once_its_mg_traded_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lab = Lab()
    poster = lab.poster({"mg1": 5.0, "mg2": 3.0})
    lab.adapter.stall = True  # the MGMC chain makes no block yet
    with caplog.at_level(logging.INFO, "peergrid_dso.tariff"):
        assert asyncio.run(poster.post()) is False
        assert asyncio.run(poster.post()) is False  # the next pass: told already
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in said] == ["INFO", "INFO"], said  # before: a WARNING each pass, each MG
    assert said[0][1] == (
        "mg1's connection capacity (1250 Wh from interval 36) not final yet (timeout market.capacity not final "
        "in 8 s): sent again until it is; it binds from mg1's first position there"
    )
    caplog.clear()
    offer = {"interval": 36, "round": 1, "price": 100, "quantity": 10, "clean": True}
    assert lab.chain.sign_and_submit(lab.anonyms["mg1"], "offer", offer, NOW_MS).ok
    lab.chain.seal(NOW_MS)
    lab.adapter._app.state = lab.chain.state
    with caplog.at_level(logging.INFO, "peergrid_dso.tariff"):
        asyncio.run(poster.post())
        asyncio.run(poster.post())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "mg1's connection capacity (1250 Wh) not final yet (timeout market.capacity not final in 8 s): mg1 traded "
        "without it in interval(s) 36; sent again from interval 37"
    ]
    lab.adapter.stall = False
    assert asyncio.run(poster.post()) is True
    assert lab.standing("mg1", 37) == 1250 and lab.standing("mg2", 36) == 750

"""`loop.disputes.t0: chain` (meter_clock.ChainClock): the DSO's MeterClock takes its t0 from the MGMC chain's
posted `market.clock` (its epoch + first_interval x the genesis interval), read from the replica's state the
first time the settler needs it - so a lab may fix t0 after the DSO node started - and fails with one clear
error when the chain has none by then, or an interval other than the config's. A number keeps its meaning."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from peergrid_dso.dispute_node import DisputeSettler
from peergrid_dso.loop_settings import DisputeSettings
from peergrid_dso.meter_clock import ChainClock, MeterClock, NoChainClock, dispute_clock, on_chain
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

DSO, AUTHORITY = Keypair.generate(), Keypair.generate()
INTERVAL_MS, FIRST, T0_MS = 6_000, 40, 1_767_225_600_000


def mgmc_chain(interval_ms: int = INTERVAL_MS) -> LocalChain:
    genesis = Genesis(
        chain="mgmc-lab", time=T0_MS - 60_000, authorities=(AUTHORITY.public,),
        accounts=(Account(DSO.public, ("dso",), "dso"),),
        contracts=("market",), params=Params(settle_by_both=1, settle_interval_ms=interval_ms),
    )  # fmt: skip
    return LocalChain(genesis, AUTHORITY)


def post_clock(chain: LocalChain, epoch_ms: int) -> None:
    assert chain.sign_and_submit(DSO, "market.clock", {"epoch_ms": epoch_ms}).ok
    chain.seal()


def settings(t0: Any, interval_s: float = INTERVAL_MS / 1000) -> Any:
    disputes = DisputeSettings.model_validate(
        {"t0": t0, "interval_s": interval_s, "commit_interval_s": 6.0, "max_gap_s": 2.0}
    )
    return SimpleNamespace(disputes=disputes, first_interval=FIRST)


def test_t0_is_seconds_or_chain_and_nothing_else() -> None:
    assert settings("chain").disputes.t0 == "chain"
    assert settings(12.5).disputes.t0 == 12.5
    for bad in ("Chain", "later", -1, None):
        with pytest.raises(ValidationError):
            settings(bad)


def test_a_number_builds_the_meter_clock_as_before() -> None:
    assert dispute_clock(settings(T0_MS / 1000)) == MeterClock(T0_MS, INTERVAL_MS, FIRST, 6_000, 2_000)


def test_chain_reads_the_posted_clock() -> None:
    spec = dispute_clock(settings("chain"))
    assert spec == ChainClock(INTERVAL_MS, FIRST, 6_000, 2_000)
    chain = mgmc_chain()
    epoch = T0_MS - FIRST * INTERVAL_MS + 17_000  # the lab's t0 moved 17 s at the DSO's readiness
    post_clock(chain, epoch)
    clock = spec.resolve(chain.state, chain.genesis.params)  # type: ignore[union-attr]
    assert clock == MeterClock(T0_MS + 17_000, INTERVAL_MS, FIRST, 6_000, 2_000)
    assert clock.window(FIRST + 2) == (T0_MS + 17_000 + 2 * INTERVAL_MS, T0_MS + 17_000 + 3 * INTERVAL_MS)


def test_no_posted_clock_or_another_interval_is_one_clear_error() -> None:
    spec = ChainClock(INTERVAL_MS, FIRST, 6_000, 2_000)
    chain = mgmc_chain()
    with pytest.raises(NoChainClock, match=r"no interval clock posted \(market\.clock\)"):
        spec.resolve(chain.state, chain.genesis.params)
    other = mgmc_chain(interval_ms=2 * INTERVAL_MS)
    post_clock(other, T0_MS)
    with pytest.raises(NoChainClock, match="settle_interval_ms 12000"):
        spec.resolve(other.state, other.genesis.params)


def test_the_settler_reads_the_chain_clock_at_first_use_not_at_start() -> None:
    chain = mgmc_chain()
    replica = SimpleNamespace(
        app=SimpleNamespace(state=chain.state), store=SimpleNamespace(genesis=chain.genesis)
    )
    adapter = SimpleNamespace(node=SimpleNamespace(replicas={"mgmc-lab": replica}), chain="mgmc-lab")
    settler = DisputeSettler(adapter, DSO, dispute_clock(settings("chain")), {})  # built before any clock
    with pytest.raises(NoChainClock):
        _ = settler.clock
    post_clock(chain, T0_MS - FIRST * INTERVAL_MS)
    replica.app.state = chain.state
    assert settler.clock.t0_ms == T0_MS and settler.clock.reachable(FIRST)  # resolved now, then kept
    post_clock(chain, T0_MS)  # (a later post would be the chain's business; the settler keeps what it read)
    assert settler.clock.t0_ms == T0_MS


def test_a_configured_t0_follows_a_posted_clock_once_there_is_one(caplog: pytest.LogCaptureFixture) -> None:
    """The lab's DSO config is written before its t0 moves; the chain settles on the clock the lab posts."""
    chain = mgmc_chain()
    replica = SimpleNamespace(
        app=SimpleNamespace(state=chain.state), store=SimpleNamespace(genesis=chain.genesis)
    )
    adapter = SimpleNamespace(node=SimpleNamespace(replicas={"mgmc-lab": replica}), chain="mgmc-lab")
    settler = DisputeSettler(adapter, DSO, dispute_clock(settings(T0_MS / 1000)), {})
    assert settler.clock.t0_ms == T0_MS  # nothing posted: the config's
    post_clock(chain, T0_MS - FIRST * INTERVAL_MS + 9_000)
    replica.app.state = chain.state
    with caplog.at_level("WARNING", logger="peergrid_dso.dispute_node"):
        assert settler.clock == MeterClock(T0_MS + 9_000, INTERVAL_MS, FIRST, 6_000, 2_000)
    assert f"disputes.t0 {T0_MS} ms; the MGMC chain's clock says {T0_MS + 9_000}" in caplog.text
    other = mgmc_chain(interval_ms=2 * INTERVAL_MS)
    post_clock(other, T0_MS)
    with pytest.raises(NoChainClock, match="settle_interval_ms 12000"):
        on_chain(MeterClock(T0_MS, INTERVAL_MS, FIRST, 6_000, 2_000), other.state, other.genesis.params)
    assert (
        on_chain(
            MeterClock(T0_MS, INTERVAL_MS, FIRST, 6_000, 2_000), mgmc_chain().state, chain.genesis.params
        )
        is None
    )

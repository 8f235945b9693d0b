"""Review17 U-A and U-B on the edge: the after-day uplift stage waits for the chain's own readiness, not a fixed
12 s, an uplift it still could not settle is settled by a later start, and the settling member waits for a
claim that is not on the chain yet (W = 0: the first settle closes the claims).

One real single-authority `EdgeLedger` with the uplift contract; mg001 sells mg002 1000 Wh in chain intervals 0
and 1 (the exchange by hand, as test_edge_uplift's `hand_day`), mg001 claims a gain of 50,000 micro-units
(owed), mg002 a surplus of 80,000 (it pays).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from test_edge_dayahead_session import SESSION, free_day, run_on
from test_edge_forward import trading_agent
from test_edge_uplift import balances, bounded, ledger_on, read_records

from peergrid_controller.uplift import widest_spread
from peergrid_edge import day_stages
from peergrid_edge.config import MarketSettings
from peergrid_edge.dayahead_uplift import UpliftStage
from peergrid_edge.exchange_io import submit_final
from peergrid_edge.replicas import EdgeLedger, Submission
from peergrid_ledger import query
from peergrid_ledger.contracts import uplift
from peergrid_ledger.genesis import Account, Genesis, Params
from peergrid_ledger.keys import Keypair

DEPLOYED_WAIT_S = day_stages.FORWARD_TIMEOUTS * MarketSettings.model_fields["phase_timeout_s"].default
PHASE_S = MarketSettings.model_fields["phase_timeout_s"].default


def chain(tmp_path: Path, both: bool, wait_ms: int = 3_600_000) -> tuple[EdgeLedger, dict[str, Keypair]]:
    """mg001 and mg002 (max_quantity rules) on an MGMC chain with the uplift contract and its own spread
    (`uplift_max_spread`); `both`: settle_by_both with `wait_ms` and 1-s intervals from 1970 (all long ended),
    the DSO an account."""
    scenario = free_day(2, 2)
    authority = Keypair.from_seed(hashlib.sha256(b"edge-uplift-retry/authority").digest())
    dso = Keypair.from_seed(hashlib.sha256(b"edge-uplift-retry/dso").digest())
    keys_ = {
        mg.name: Keypair.from_seed(hashlib.sha256(mg.name.encode()).digest()) for mg in scenario.microgrids
    }
    spread = widest_spread(
        scenario.microgrids
    )  # nobody prices the cover here: the chain's own (review18 U-1)
    params = (
        Params(credit_limit=10**15, settle_by_both=1, settle_wait_ms=wait_ms, settle_interval_ms=1000,
               uplift_max_spread=spread)
        if both
        else Params(credit_limit=10**15, uplift_max_spread=spread)
    )  # fmt: skip
    genesis = Genesis(
        chain="mgmc-uplift-retry", time=0, authorities=(authority.public,),
        accounts=(Account(authority.public, ("mgmc",)), Account(dso.public, ("dso",)),
                  *(Account(keys_[mg.name].public, ("anonym",), mg.name, rules=bounded(mg))
                    for mg in scenario.microgrids)),
        contracts=("market", "exchange", "uplift"), params=params,
    )  # fmt: skip
    return ledger_on(genesis, authority, tmp_path), keys_


async def send(ledger: EdgeLedger, key: Keypair, kind: str, body: dict[str, Any]) -> None:
    await submit_final(ledger, key, kind, body, 10.0, lambda: None)


async def cleared_day(
    ledger: EdgeLedger, keys_: dict[str, Keypair], payee_claims: bool = True
) -> list[bytes]:
    """The session cleared and claimed (the payee's claim only if `payee_claims`): the two trades' ids."""
    seller, buyer = keys_["mg001"], keys_["mg002"]
    opener = min((seller, buyer), key=lambda k: k.public)
    members = sorted(k.public for k in (seller, buyer))
    opening = {"session": SESSION, "first_interval": 0, "members": members, "prices": [100_000_000] * 2,
               "rho": 5_000_000}  # fmt: skip
    await send(ledger, opener, "exchange.open", opening)
    for key, q in ((seller, 1000), (buyer, -1000)):
        await send(
            ledger, key, "exchange.position", {"session": SESSION, "iteration": 0, "positions": [q, q]}
        )
    await send(ledger, opener, "exchange.step", {"session": SESSION, "iteration": 0, "rho": 5_000_000})
    await send(ledger, opener, "exchange.close", {"session": SESSION, "iteration": 1})
    for key, q in ((seller, 1000), (buyer, -1000)):
        await send(ledger, key, "exchange.accept", {"session": SESSION, "positions": [q, q], "clean": False})
    await send(ledger, opener, "exchange.clear", {"session": SESSION})
    if payee_claims:
        await send(ledger, seller, "uplift.claim", {"session": SESSION, "gain": 50_000, "surplus": 0})
    await send(ledger, buyer, "uplift.claim", {"session": SESSION, "gain": 0, "surplus": 80_000})
    return [tid for t in (0, 1) for tid, _ in query.trades(ledger.state("mgmc"), t)]


def stages(ledger: EdgeLedger, keys_: dict[str, Keypair], **kw: Any) -> list[UpliftStage]:
    scenario = free_day(2, 2)
    return [UpliftStage(ledger, keys_[n], mg, 12.0, SESSION, **kw)
            for n, mg in zip(("mg001", "mg002"), scenario.microgrids, strict=True)]  # fmt: skip


def test_a_trade_settled_after_the_old_12_s_wait_is_waited_for_by_the_chains_deadline_and_the_uplift_paid(
    tmp_path: Path,
) -> None:
    """U-A: the buyer never states interval 1's trade; the seller's word settles it alone only once the chain's
    13-s wait lapsed (past the deployed 12-s floor); both members' stages (deployed waits) wait for it."""
    ledger, keys_ = chain(tmp_path, both=True, wait_ms=13_000)
    seller, buyer = keys_["mg001"], keys_["mg002"]

    async def play() -> Any:
        tid0, tid1 = await cleared_day(ledger, keys_)
        for tid in (tid0, tid1):
            await send(ledger, seller, "settle", {"trade": tid, "delivered": 1000})
        await send(ledger, buyer, "settle", {"trade": tid0, "delivered": 1000})
        deadline_s = query.trade(ledger.state("mgmc"), tid1)["deadline"] / 1000  # type: ignore[index]
        before = balances(ledger, keys_)

        async def seller_repeats() -> float:
            await asyncio.sleep(max(0.0, deadline_s - time.time()) + 0.2)
            await send(
                ledger, seller, "settle", {"trade": tid1, "delivered": 1000}
            )  # the lone word settles it
            return time.monotonic()

        started = time.monotonic()
        both = stages(ledger, keys_, wait_s=DEPLOYED_WAIT_S, grace_s=PHASE_S)
        *outcomes, settled_at = await asyncio.gather(*(s.settle() for s in both), seller_repeats())
        return outcomes, settled_at - started, before, balances(ledger, keys_)

    (payee, payer), late_s, before, after = run_on(ledger, play)
    assert late_s > DEPLOYED_WAIT_S  # after the fixed wait the stage had before
    assert payee.settled and payer.settled, (payee.reason, payer.reason)
    assert (payee.credit, payer.charge) == (50_000, 50_000)
    assert after["mg001"] - before["mg001"] == 50_000 + 100_000  # the make-whole and the late trade's payment


def test_an_uplift_the_stage_gave_up_on_is_settled_by_the_agents_next_start(tmp_path: Path) -> None:
    """U-A after a restart: on a chain without settle_by_both nothing bounds a trade nobody settled, so the stage
    gives up after its wait; the trade settles later, and the agent's next start (`retry_unsettled`, which
    `trader.run` starts beside its day) settles the uplift and records its part."""
    ledger, keys_ = chain(tmp_path, both=False)
    scenario = free_day(2, 2)

    async def play() -> Any:
        tid0, tid1 = await cleared_day(ledger, keys_)
        await send(ledger, keys_["mg002"], "settle", {"trade": tid0, "delivered": 1000})
        gave_up = await asyncio.gather(*(s.settle() for s in stages(ledger, keys_, wait_s=0.5, grace_s=0.2)))
        await send(ledger, keys_["mg002"], "settle", {"trade": tid1, "delivered": 1000})  # late
        agent = trading_agent(
            ledger, keys_["mg001"], scenario, scenario.microgrids[0], tmp_path / "mg001.jsonl"
        )
        found = day_stages.unsettled_sessions(ledger.state("mgmc"), keys_["mg001"].public, range(2), None)
        skipped = day_stages.unsettled_sessions(
            ledger.state("mgmc"), keys_["mg001"].public, range(2), SESSION
        )
        retried = await day_stages.retry_unsettled(agent, range(2), None)
        again = await day_stages.retry_unsettled(agent, range(2), None)  # nothing left to settle
        return gave_up, found, skipped, retried, again

    gave_up, found, skipped, retried, again = run_on(ledger, play)
    assert not any(o.settled for o in gave_up)
    assert all("1 of the 2 trades" in o.reason and "next start" in o.reason for o in gave_up)
    assert (found, skipped, again) == ([SESSION], [], [])
    assert len(retried) == 1 and retried[0].settled and retried[0].credit == 50_000
    part = [d["uplift"] for d in read_records(tmp_path / "mg001.jsonl") if "uplift" in d]
    assert len(part) == 1 and part[0]["settled"] and part[0]["credit"] == 50_000


def test_an_earlier_sessions_missing_claim_is_not_posted_from_todays_model_and_its_uplift_settles(
    tmp_path: Path,
) -> None:
    """Review18 C-3: the payee's claim on an earlier session never landed; the agent's next start settles that
    uplift (`retry_unsettled`) without posting it - its gain and surplus would be today's model's, not that
    day's - and without waiting for its own claim: it is settled with the payer's claim alone, nothing owed."""
    ledger, keys_ = chain(tmp_path, both=False)
    scenario = free_day(2, 2)

    async def play() -> Any:
        for tid in await cleared_day(ledger, keys_, payee_claims=False):
            await send(ledger, keys_["mg002"], "settle", {"trade": tid, "delivered": 1000})
        agent = trading_agent(
            ledger, keys_["mg001"], scenario, scenario.microgrids[0], tmp_path / "mg001.jsonl"
        )
        retried = await day_stages.retry_unsettled(agent, range(2), None)
        return retried, uplift.claim(ledger.state("mgmc"), SESSION, keys_["mg001"].public)

    retried, claim = run_on(ledger, play)
    assert claim is None  # not posted
    assert len(retried) == 1 and retried[0].settled and (retried[0].credit, retried[0].charge) == (0, 0)
    done = uplift.outcome(ledger.state("mgmc"), SESSION)
    assert done is not None and done["owed"] == 0 and done["payments"] == []
    docs = read_records(tmp_path / "mg001.jsonl")
    assert not [d for d in docs if "uplift_claim" in d] and len([d for d in docs if "uplift" in d]) == 1


def test_the_settling_member_waits_for_a_claim_not_on_the_chain_yet_and_the_payee_is_paid(
    tmp_path: Path,
) -> None:
    """U-B: W = 0 and the payee's first claim did not land; its after-day stage posts it again a few seconds
    after the trades settled. Before, the lowest key settled at once and the payee got 0 (its claim then
    `closed: late`); now the settling member waits up to `claim_wait_s` for it."""
    ledger, keys_ = chain(tmp_path, both=False)

    async def play() -> Any:
        for tid in await cleared_day(ledger, keys_, payee_claims=False):
            await send(ledger, keys_["mg002"], "settle", {"trade": tid, "delivered": 1000})
        before = balances(ledger, keys_)

        async def payee_claims_late() -> None:
            await asyncio.sleep(2.0)
            await send(
                ledger, keys_["mg001"], "uplift.claim", {"session": SESSION, "gain": 50_000, "surplus": 0}
            )

        both = stages(ledger, keys_, wait_s=1.0, grace_s=0.5, claim_wait_s=8.0)
        *outcomes, _ = await asyncio.gather(*(s.settle() for s in both), payee_claims_late())
        return outcomes, before, balances(ledger, keys_)

    (payee, payer), before, after = run_on(ledger, play)
    assert payee.settled and payer.settled and payee.credit == 50_000 == payer.charge
    assert after["mg001"] - before["mg001"] == 50_000 == before["mg002"] - after["mg002"]
    done = uplift.outcome(ledger.state("mgmc"), SESSION)
    assert done is not None and done["funded"]


class RefusesFirstClaim:
    """A replica whose first `uplift.claim` does not land: reported not final (`final` False: it may still land,
    so it is tried again) or refused by the chain (`final` True: not tried again this run)."""

    def __init__(self, ledger: EdgeLedger, final: bool) -> None:
        self.inner, self.final, self.refused = ledger, final, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Submission:
        if not self.refused and b"uplift.claim" in raw:
            self.refused += 1
            why = "rule-violation: refused by hand" if self.final else "not final within 1.0 s"
            return Submission(False, why, final=self.final)
        return await self.inner.submit(role, raw, timeout_s)


@pytest.mark.parametrize("final", [False, True])
def test_a_claim_that_did_not_land_is_posted_again_in_the_days_idle_time(tmp_path: Path, final: bool) -> None:
    """U-B: the payee's claim after the clear did not land; `retry_uplift_claim` (each interval's start in
    `trader.run`) posts it again, so it is on the chain before any settle; a chain refusal is not repeated."""
    ledger, keys_ = chain(tmp_path, both=False)
    scenario = free_day(2, 2)
    flaky = RefusesFirstClaim(ledger, final)
    agent = trading_agent(flaky, keys_["mg001"], scenario, scenario.microgrids[0], tmp_path / "mg001.jsonl")

    async def play() -> Any:
        await cleared_day(ledger, keys_, payee_claims=False)
        first = await day_stages.retry_uplift_claim(agent)
        second = await day_stages.retry_uplift_claim(agent)
        third = await day_stages.retry_uplift_claim(agent)
        return first, second, third, uplift.claim(ledger.state("mgmc"), SESSION, keys_["mg001"].public)

    first, second, third, on_chain = run_on(ledger, play)
    assert flaky.refused == 1 and first is not None and not first.posted
    if final:  # refused for good: never sent again this run (the after-day stage tries once more)
        assert "refused by hand" in first.reason and agent.uplift_claim_refused
        assert second is None and third is None and on_chain is None
    else:
        assert first.reason.startswith("not final: ") and not agent.uplift_claim_refused
        assert second is not None and second.posted and not second.reason and third is None
        assert on_chain is not None and (on_chain["gain"], on_chain["surplus"]) == (
            second.gain,
            second.surplus,
        )
    recorded = [d["uplift_claim"] for d in read_records(tmp_path / "mg001.jsonl") if "uplift_claim" in d]
    assert [r["posted"] for r in recorded] == ([False] if final else [False, True])


class NeverFinal:
    """A replica that never finalises this MG's uplift.claim (R18's claim_retry_blocks.py): it waits the submit's
    whole timeout, as EdgeLedger.submit does, and reports not final; the rest goes to the real chain."""

    def __init__(self, ledger: EdgeLedger) -> None:
        self.inner, self.sent = ledger, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def submit(self, role: str, raw: bytes, timeout_s: float) -> Submission:
        if b"uplift.claim" in raw:
            self.sent += 1
            await asyncio.sleep(timeout_s)
            return Submission(False, f"not final within {timeout_s} s", final=False)
        return await self.inner.submit(role, raw, timeout_s)


def test_a_claim_retried_not_final_again_writes_one_record_line_per_outcome(tmp_path: Path) -> None:
    """Review18 C-1 (K5's patch, /work/notes/K5_day_stages.patch): three retries on a real chain that never
    finalises the claim send three claims and write one record line (the outcome did not change); once the
    chain takes it, the posted claim is a second line."""
    ledger, keys_ = chain(tmp_path, both=False)
    scenario = free_day(2, 2)
    slow = NeverFinal(ledger)
    agent = trading_agent(slow, keys_["mg001"], scenario, scenario.microgrids[0], tmp_path / "mg001.jsonl")
    agent.s.phase_timeout_s = 0.2

    async def play() -> list[Any]:
        await cleared_day(ledger, keys_, payee_claims=False)
        claims = [await day_stages.retry_uplift_claim(agent) for _ in range(3)]
        slow.submit = ledger.submit  # type: ignore[method-assign] - the chain finalises it now
        return [*claims, await day_stages.retry_uplift_claim(agent)]

    claims = run_on(ledger, play)
    assert slow.sent == 3 and all(c is not None and c.reason.startswith("not final") for c in claims[:3])
    assert claims[3] is not None and claims[3].posted
    recorded = [d["uplift_claim"] for d in read_records(tmp_path / "mg001.jsonl") if "uplift_claim" in d]
    assert [(r["posted"], r["reason"][:9]) for r in recorded] == [(False, "not final"), (True, "")]

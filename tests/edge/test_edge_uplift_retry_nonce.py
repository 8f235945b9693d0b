"""The background settle of an earlier day's uplift follows the rule of this MGMC's own nonces (session 15's
closing note, K5/K6). `day_stages.retry_in_background` settles it beside the day's trading loop, which signs with
the same anonym; `next_nonce` counts final transactions only, so where a move was on its way the settle signed
the same nonce, the pool refused it as "pending", the move landed and the settle came back NONCE_TAKEN inside
`submit_final`: the uplift stage gave up and the uplift waited for the agent's next start, a day later. K6
(051a0eb) gave the moves the rule (wait for the own pending nonce, sign again once on NONCE_TAKEN); now the
stages' `exchange_io.submit_final` shares it (`own_nonce.submit_own`), so the settle lands in the same day.

On a real single-authority MGMC chain with the uplift contract (test_edge_uplift_retry's: mg001 sold mg002
1000 Wh in chain intervals 0 and 1, mg001 claims 50,000 micro-units, mg002 a surplus of 80,000), the trades
settled: mg001's agent starts on a later day of the long-lived chain (its first interval 2), its background
retry settles the earlier session while the agent's move (an offer of interval 5, signed with the anonym's next
nonce and put into the real mempool) takes the settle's nonce between its read and its submit, or is pending
on it (the chain halted) when the settle starts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from test_edge_dayahead_session import SESSION, free_day, run_on
from test_edge_forward import trading_agent
from test_edge_uplift import read_records
from test_edge_uplift_retry import chain, cleared_day, send

from peergrid_edge import day_stages, own_nonce
from peergrid_edge.replicas import NONCE_TAKEN, EdgeLedger, Submission
from peergrid_ledger.consensus.app import Accepted
from peergrid_ledger.contracts import market as contract
from peergrid_ledger.contracts import uplift
from peergrid_ledger.keys import Keypair
from peergrid_ledger.tx import decode_tx

PENDING_S = 0.3  # how long the move stays pending (the chain halted) once it took the nonce
MOVE = {"interval": 5, "round": 1, "price": 100_000, "quantity": 1000, "clean": False}


def noted(ledger: EdgeLedger) -> list[tuple[str, Submission]]:
    """Each submission's kind and outcome as the replica gave it."""
    sent: list[tuple[str, Submission]] = []
    real = ledger.submit

    async def submit(role: str, raw: bytes, timeout_s: float) -> Submission:
        outcome = await real(role, raw, timeout_s)
        sent.append((decode_tx(raw).kind, outcome))
        return outcome

    ledger.submit = submit  # type: ignore[method-assign]
    return sent


def halt(ledger: EdgeLedger) -> None:
    """Finalise nothing from now on (a move stays pending in the pool) until `ledger.halt_at({})`."""
    ledger.halt_at({"mgmc-uplift-retry": ledger.replicas["mgmc"].app.head().height})


def move(ledger: EdgeLedger, key: Keypair, nonce: int) -> None:
    """The trading loop's move: an offer signed with `nonce`, into this replica's real mempool."""
    raw = ledger.sign("mgmc", key, "offer", MOVE, nonce)
    assert isinstance(ledger.replicas["mgmc"].submit(raw, ledger.clock()), Accepted)


async def earlier_day(ledger: EdgeLedger, keys_: dict[str, Keypair], tmp_path: Path) -> Any:
    """The earlier session cleared, claimed and its trades settled; mg001's agent on a later day (first
    interval 2), so the session is an earlier one its background retry settles."""
    for tid in await cleared_day(ledger, keys_):
        await send(ledger, keys_["mg002"], "settle", {"trade": tid, "delivered": 1000})
    scenario = free_day(2, 2)
    agent = trading_agent(ledger, keys_["mg001"], scenario, scenario.microgrids[0], tmp_path / "mg001.jsonl")
    agent.s.first_interval = 2
    return agent


def test_a_move_taking_the_settles_nonce_between_its_read_and_its_submit_does_not_cost_the_day(
    tmp_path: Path,
) -> None:
    """The move takes the nonce the settle read: the settle comes back NONCE_TAKEN, is signed again once with the
    next nonce and lands; the uplift is settled by this run (before: given up, settled at the next start)."""
    ledger, keys_ = chain(tmp_path, both=False)
    me = keys_["mg001"]

    async def play() -> tuple[Any, float, list[tuple[str, Submission]], list[int]]:
        agent = await earlier_day(ledger, keys_, tmp_path)
        sent, taken = noted(ledger), list[int]()
        sign = ledger.sign

        def racing(role: str, keypair: Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
            if kind == "uplift.settle" and not taken:  # read, and not yet submitted: the move gets in first,
                halt(ledger)  # and stays pending a few blocks' time, as on a chain of several authorities
                move(ledger, keypair, nonce)
                asyncio.get_running_loop().call_later(PENDING_S, ledger.halt_at, {})
                taken.append(nonce)
            return sign(role, keypair, kind, body, nonce)

        ledger.sign = racing  # type: ignore[method-assign]
        started = time.monotonic()
        task = day_stages.retry_in_background(agent)
        assert task is not None
        outcomes = await asyncio.wait_for(task, 60)
        return outcomes, time.monotonic() - started, sent, taken

    outcomes, took_s, sent, taken = run_on(ledger, play)
    settles = [outcome for kind, outcome in sent if kind == "uplift.settle"]
    assert len(taken) == 1 and len(settles) == 2, sent
    assert settles[0].reason.startswith(NONCE_TAKEN) and settles[1].landed
    assert len(outcomes) == 1 and outcomes[0].settled and outcomes[0].credit == 50_000, outcomes
    state = ledger.state("mgmc")
    assert uplift.outcome(state, SESSION) is not None
    assert contract.offer(state, 5, me.public) is not None  # the move landed too, at the nonce it took
    part = [d["uplift"] for d in read_records(tmp_path / "mg001.jsonl") if "uplift" in d]
    assert len(part) == 1 and part[0]["settled"] and part[0]["credit"] == 50_000
    print(f"settled by the background retry in {took_s:.2f} s")


def test_a_settle_started_while_a_move_is_pending_on_its_nonce_waits_for_it_and_lands_first_try(
    tmp_path: Path,
) -> None:
    """The move is in the pool, not final (the chain halted), when the settle is under way; the halt is lifted
    `PENDING_S` after the settle's path asks the pool about the anonym's next nonce (its wait for the move,
    `own_nonce.nonce_free`) or signs its settle (before: at once, on the move's nonce). The settle waits for the
    move and signs the next nonce: one settle sent, landed (before: refused as pending, waited on, NONCE_TAKEN,
    given up)."""
    ledger, keys_ = chain(tmp_path, both=False)
    me = keys_["mg001"]

    async def play() -> tuple[Any, list[tuple[str, Submission]], int | None, list[str]]:
        agent = await earlier_day(ledger, keys_, tmp_path)
        sent = noted(ledger)
        halt(ledger)
        move(ledger, me, ledger.next_nonce("mgmc", me.public))
        pending = own_nonce.own_pending(ledger, "mgmc", me.public)
        lifted: list[str] = []

        def lift(why: str) -> None:
            if not lifted:
                lifted.append(why)
                asyncio.get_running_loop().call_later(PENDING_S, ledger.halt_at, {})

        pool, sign = ledger.replicas["mgmc"].app.mempool, ledger.sign
        holds = pool.holds

        def asked(sender: bytes, nonce: int) -> bool:
            lift("asked")
            return bool(holds(sender, nonce))

        def signed(role: str, keypair: Keypair, kind: str, body: dict[str, Any], nonce: int) -> bytes:
            if kind == "uplift.settle":
                lift("signed")
            return sign(role, keypair, kind, body, nonce)

        pool.holds, ledger.sign = asked, signed  # type: ignore[method-assign]
        task = day_stages.retry_in_background(agent)
        assert task is not None
        return await asyncio.wait_for(task, 60), sent, pending, lifted

    outcomes, sent, pending, lifted = run_on(ledger, play)
    assert pending is not None  # the move held the next nonce in the pool when the retry started
    assert lifted == ["asked"]  # the settle waited for the move before it signed
    assert [outcome for kind, outcome in sent if kind == "uplift.settle"] == [Submission(True)], sent
    assert len(outcomes) == 1 and outcomes[0].settled and outcomes[0].credit == 50_000, outcomes
    assert contract.offer(ledger.state("mgmc"), 5, me.public) is not None

"""Why a lab once never ended (the member-restart and settle-by-both lab tests, last session): the DSO node's
enrolment of the MGMCs' anonyms (dso-server `interval_node.DsoLoop.enrol`) retries a submit that failed with
nothing in between that lets the event loop run. Once its first `enrol` was not final in the adapter's 8 s
(the DSO chain still forming: the MGMCs started late), that transaction stays pending, and every retry signs
the same nonce and is refused by the pool at once ("another transaction with nonce 1 is pending"): the loop
spins, the DSO's replica never applies the block that would end it, no verdict is ever published, and the
MGMCs wait out every interval (21 M such log lines, 1.6 GB, in those runs). This reproduces it without the lab.

Fixed in dso-server: `enrol` tries again only after the next final block (here: the next turn of the
replica, which fires `changed` as a final block does), and the adapter itself never signs a nonce its own
pending transaction holds (tests/dso/test_adapter_pending.py). With the old `enrol` this test fails: 2,000
retries with no turn of anything else in between.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import Changed, Submitted
from peergrid_ledger import keys
from peergrid_ledger import keyspace as ks


def test_the_dso_lets_its_node_run_while_an_enrolment_is_pending(caplog: pytest.LogCaptureFixture) -> None:
    node, anonym, dso = keys.Keypair.generate(), keys.Keypair.generate(), keys.Keypair.generate()
    state: dict[bytes, bytes] = {}
    ticks = 0  # turns of another task on the DSO's event loop (its replica's, in the DSO)
    ticks_at_retries: list[int] = []

    class Adapter:
        """The DSO chain as the DSO saw it: the first enrol not final in time, then pending in the pool, and
        landing (the account appears) only once the event loop runs the replica — here, a few turns."""

        async def submit(self, keypair: Any, kind: str, body: Any) -> Submitted:
            nonlocal ticks
            if not ticks_at_retries:
                ticks_at_retries.append(ticks)
                await asyncio.sleep(0.05)  # the adapter's wait for a final block, given up
                ticks = 0  # the turns from here on: while the enrolment is pending
                return Submitted(False, "timeout", "enrol not final in 8.0 s")
            ticks_at_retries.append(ticks)
            if ticks >= 3 or len(ticks_at_retries) > 2_000:  # landed, or give the spinning loop an end
                state[ks.account(anonym.public)] = ks.AccountRecord(
                    frozenset({"anonym"}), True, "mg1"
                ).encode()
            return Submitted(False, "mempool", "another transaction with nonce 1 is pending")

    async def main() -> None:
        nonlocal ticks
        settings = SimpleNamespace(
            mgs={"mg1": SimpleNamespace(anonym=anonym.public.hex(), node=node.public.hex())}
        )
        replica = SimpleNamespace(app=SimpleNamespace(state=state))
        changed = Changed()  # the replica's final blocks
        loop = DsoLoop(settings, replica, Adapter(), changed, None, None, None, None, dso, None, None)  # type: ignore[arg-type]

        async def replica_turns() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1
                changed.fire()

        turns = asyncio.create_task(replica_turns())
        await asyncio.wait_for(loop.enrol(), 60)
        turns.cancel()

    with caplog.at_level(logging.WARNING, "peergrid_dso.interval_node"):
        asyncio.run(main())
    retries = ticks_at_retries[1:]
    # it should land by the replica's turns; the bug: 2,000 retries in a row without a single turn of anything
    # else (ended only by the stand-in's cap)
    assert retries[-1] >= 3, f"{len(retries)} retries, the event loop never ran between them"
    assert all(n > 0 for n in retries), retries  # never two tries within one turn
    said = [r.getMessage() for r in caplog.records if r.name == "peergrid_dso.interval_node"]
    # one line per distinct refusal within a few seconds, not one per try (the lab wrote 21 M of them)
    assert len(said) == len(set(said)) <= 2, said


def test_an_enrolment_the_chain_refuses_is_logged_once_and_the_others_are_enrolled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refusal for good (here: the anonym revoked on the DSO chain) ends that MG's enrolment at once; the
    loop goes on to the next MG instead of asking the chain again for ever."""
    dso = keys.Keypair.generate()
    mgs = {mg: (keys.Keypair.generate(), keys.Keypair.generate()) for mg in ("mg1", "mg2")}
    state: dict[bytes, bytes] = {}
    asked: list[str] = []

    class Adapter:
        async def submit(self, keypair: Any, kind: str, body: Any) -> Submitted:
            asked.append(body["label"])
            if body["label"] == "mg1" and len(asked) <= 1_000:  # (the cap ends a loop that asks again)
                return Submitted(False, "refused", "forbidden: the anonym is revoked")
            state[ks.account(body["anonym"])] = ks.AccountRecord(frozenset({"anonym"}), True, "").encode()
            return Submitted(True)

    settings = SimpleNamespace(
        mgs={mg: SimpleNamespace(anonym=a.public.hex(), node=n.public.hex()) for mg, (n, a) in mgs.items()}
    )
    replica = SimpleNamespace(app=SimpleNamespace(state=state))

    async def main() -> None:
        loop = DsoLoop(settings, replica, Adapter(), Changed(), None, None, None, None, dso, None, None)  # type: ignore[arg-type]
        await asyncio.wait_for(loop.enrol(), 10)

    with caplog.at_level(logging.WARNING, "peergrid_dso.interval_node"):
        asyncio.run(main())
    assert asked == ["mg1", "mg2"]
    assert ks.account(mgs["mg2"][1].public) in state
    [line] = [r.getMessage() for r in caplog.records if r.name == "peergrid_dso.interval_node"]
    assert "refuses to enrol mg1" in line and "revoked" in line, line

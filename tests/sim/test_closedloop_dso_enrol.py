"""Why a lab once never ended (the member-restart and settle-by-both lab tests, last session): the DSO node's
enrolment of the MGMCs' anonyms (dso-server `interval_node.DsoLoop.enrol`) retries a submit that failed with
nothing in between that lets the event loop run. Once its first `enrol` was not final in the adapter's 8 s
(the DSO chain still forming: the MGMCs started late), that transaction stays pending, and every retry signs
the same nonce and is refused by the pool at once ("another transaction with nonce 1 is pending"): the loop
spins, the DSO's replica never applies the block that would end it, no verdict is ever published, and the
MGMCs wait out every interval (21 M such log lines, 1.6 GB, in those runs). This reproduces it without the lab.

Not fixed here: dso-server is not this task's to change. The fix belongs in `enrol` (wait for the pending
enrolment to land, or at least for the next block, before signing again); when it is made this test passes
and its xfail marker must go (strict).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.interval_node import DsoLoop
from peergrid_dso.node_chains import Submitted
from peergrid_ledger import keys
from peergrid_ledger import keyspace as ks


@pytest.mark.xfail(
    strict=True,
    reason="dso-server DsoLoop.enrol retries without yielding: a livelock once its first enrol timed out",
)
def test_the_dso_lets_its_node_run_while_an_enrolment_is_pending() -> None:
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
        loop = DsoLoop(settings, replica, Adapter(), None, None, None, None, None, dso, None, None)  # type: ignore[arg-type]

        async def replica_turns() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        turns = asyncio.create_task(replica_turns())
        await asyncio.wait_for(loop.enrol(), 60)
        turns.cancel()

    asyncio.run(main())
    retries = ticks_at_retries[1:]
    # it should land by the replica's turns; the bug: 2,000 retries in a row without a single turn of anything
    # else (ended only by the stand-in's cap)
    assert retries[-1] >= 3, f"{len(retries)} retries, the event loop never ran between them"

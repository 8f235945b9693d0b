"""`Node.run` (the DSO's and `peergrid-ledger node`'s ledger loop) outlives a message that makes `receive`
raise: that message is logged and counted, the next one is taken (review21's hardening note: without the catch-all,
the next codec or contract bug would end the node's loop)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from peergrid_ledger import keys
from peergrid_ledger.consensus.node import Node

KEY = keys.Keypair.from_seed(hashlib.sha256(b"node-run").digest())


class BuggyReplica:
    """A replica whose `receive` has a bug on one payload (what a codec or contract bug would look like)."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, bytes]] = []

    def start(self, now: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"taken": len(self.taken)}

    def receive(self, kind: str, data: bytes, now: int) -> None:
        if data == b"poison":
            raise KeyError("a bug deep in a contract")
        self.taken.append((kind, data))


def test_an_exception_from_one_message_is_logged_counted_and_the_node_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    status = tmp_path / "status.json"
    node = Node(KEY, status)
    replica = BuggyReplica()
    node.replicas["c1"] = replica  # type: ignore[assignment]

    async def scenario() -> None:
        node.attach_loop()
        stop = asyncio.Event()
        runner = asyncio.create_task(node.run(stop))
        node.deliver("c1", "consensus", b"before")
        node.deliver("c1", "consensus", b"poison")
        node.deliver("c1", "tx", b"after")  # same batch of the inbox as the poison
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(replica.taken) == 2:
                break
        node.deliver("c1", "consensus", b"poison")
        node.deliver("c1", "block", b"later")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(replica.taken) == 3:
                break
        assert not runner.done()  # still running
        stop.set()
        await asyncio.wait_for(runner, 5)

    with caplog.at_level(logging.ERROR, logger="peergrid_ledger.node"):
        asyncio.run(scenario())
    assert replica.taken == [("consensus", b"before"), ("tx", b"after"), ("block", b"later")]
    assert node.stats["receive_errors"] == 2
    errors = [r for r in caplog.records if "raised in receive" in r.getMessage()]
    assert len(errors) == 2 and errors[0].exc_info is not None  # logged with the traceback
    assert "KeyError" in caplog.text and "c1: a consensus message raised" in caplog.text
    assert json.loads(status.read_text())["stats"] == {"receive_errors": 2}

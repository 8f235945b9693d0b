"""`switching_step`: each executed relay operation of a plan is its own DSO-chain record, in order."""

from __future__ import annotations

from ledger_fixtures import Keys, reason

from peergrid_ledger import query
from peergrid_ledger.chain import LocalChain
from peergrid_ledger.results import Reason

PLAN = {
    "plan": "p1",
    "interval": 3,
    "actions": [{"switch": "s33", "close": True}, {"switch": "s7", "close": False}],
}


def step(n: int, switch: str = "s33", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "plan": "p1", "step": n, "switch": switch, "close": True, "ok": True, "rollback": False,
        "status": "closed", "at_ms": 1_764_000_000_000 + n, "detail": "",
    }  # fmt: skip
    return {**body, **extra}


def test_steps_are_recorded_in_order_before_the_result(chain: LocalChain) -> None:
    assert reason(chain.sign_and_submit(Keys.dso, "switching_step", step(0))) is Reason.NOT_FOUND
    assert chain.sign_and_submit(Keys.dso, "switching_plan", PLAN).ok
    assert reason(chain.sign_and_submit(Keys.p1, "switching_step", step(0))) is Reason.FORBIDDEN
    assert reason(chain.sign_and_submit(Keys.dso, "switching_step", step(1))) is Reason.INVALID  # gap
    assert reason(chain.sign_and_submit(Keys.dso, "switching_step", step(0, "s9"))) is Reason.INVALID
    assert chain.sign_and_submit(Keys.dso, "switching_step", step(0)).ok
    assert reason(chain.sign_and_submit(Keys.dso, "switching_step", step(0))) is Reason.INVALID  # replay
    failed = step(
        1, "s7", close=False, ok=False, status="closed", detail="timeout: expected open, read closed"
    )
    assert chain.sign_and_submit(Keys.dso, "switching_step", failed).ok
    undo = step(2, close=False, rollback=True, status="open")
    assert chain.sign_and_submit(Keys.dso, "switching_step", undo).ok
    results = [{"switch": "s33", "closed": False, "ok": True}, {"switch": "s7", "closed": True, "ok": False}]
    assert chain.sign_and_submit(Keys.dso, "switching_result", {"plan": "p1", "results": results}).ok
    assert reason(chain.sign_and_submit(Keys.dso, "switching_step", step(3))) is Reason.CLOSED
    chain.seal()
    stored = query.switching_plan(chain.state, "p1")
    assert stored is not None
    assert [(s["step"], s["switch"], s["ok"], s["status"]) for s in stored["steps"]] == [
        (0, "s33", True, "closed"), (1, "s7", False, "closed"), (2, "s33", True, "open"),
    ]  # fmt: skip
    assert stored["steps"][1]["detail"].startswith("timeout")


def test_malformed_step_is_rejected(chain: LocalChain) -> None:
    assert chain.sign_and_submit(Keys.dso, "switching_plan", PLAN).ok
    assert not chain.sign_and_submit(Keys.dso, "switching_step", step(0, status="x" * 17)).ok
    assert not chain.sign_and_submit(Keys.dso, "switching_step", step(0, at_ms=-1)).ok
    bare = step(0)
    del bare["status"]
    assert not chain.sign_and_submit(Keys.dso, "switching_step", bare).ok

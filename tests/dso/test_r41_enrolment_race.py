"""Enrolment requests sent at once (the API runs them in its thread pool) are taken one at a time (review41
R41-2): two keys with two tokens under one MG name were both pending (and both approvable) as 'mg1', and in memory
one token sent by two keys was used by both. Each test holds the first request at the step that used to let the
second one through until the second arrives there too (or a second has passed: then it is not let through)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from peergrid_dso.services.enrolment import EnrolmentRefused, EnrolmentService, enrolment_digest
from peergrid_dso.services.enrolment_tokens import TokenRecord, TokenStore
from peergrid_ledger.keys import Keypair

HOLD_S = 1.0  # how long the first request waits for a second one at the step (not a bound on anything)


class Recorder:
    def submit(self, kind: str, body: dict[str, Any]) -> None:
        pass


def meet(both: threading.Barrier) -> None:
    try:
        both.wait()
    except threading.BrokenBarrierError:
        pass  # the other request is not there: taken one at a time


def at_once(service: EnrolmentService, tokens: list[str], labels: list[str]) -> list[str]:
    """Each (token, label) asked by its own new key in its own thread; the labels of the requests accepted."""
    accepted: list[str] = []

    def ask(token: str, label: str) -> None:
        mgmc, anonym = Keypair.generate(), Keypair.generate()
        signature = mgmc.sign(enrolment_digest(token, mgmc.public, anonym.public, label))
        try:
            service.request(token, mgmc.public, anonym.public, label, signature)
            accepted.append(label)
        except EnrolmentRefused:
            pass

    threads = [threading.Thread(target=ask, args=pair) for pair in zip(tokens, labels, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted


class HeldStore(TokenStore):
    """Marks a token used only once the other request reached the same step."""

    both = threading.Barrier(2, timeout=HOLD_S)

    def use(self, token: str, mgmc: bytes) -> TokenRecord | None:
        meet(self.both)
        return super().use(token, mgmc)


class HeldTokens(set[str]):
    """The in-memory tokens: discards one only once the other request reached the same step."""

    both = threading.Barrier(2, timeout=HOLD_S)

    def discard(self, token: str) -> None:
        meet(self.both)
        super().discard(token)


def test_two_keys_under_one_name_at_once_enrol_one(tmp_path: Path) -> None:
    service = EnrolmentService(Recorder(), auto=False, store=HeldStore(tmp_path / "tokens.json"))
    tokens = [service.issue_token("mg1"), service.issue_token()]
    assert at_once(service, tokens, ["mg1", "mg1"]) == ["mg1"]  # before: both pending as mg1
    assert [e.label for e in service.enrolments.values()] == ["mg1"]


def test_one_token_sent_by_two_keys_at_once_is_used_once() -> None:
    service = EnrolmentService(Recorder(), auto=True, tokens=HeldTokens())
    token = service.issue_token()
    assert len(at_once(service, [token, token], ["mg1", "mg2"])) == 1  # before: both authorised
    assert len(service.enrolments) == 1

"""R43: the DSO chain's word at the server's start (`live.chain_word`, `live.loop_enrolments`): a revocation that
failed half-way is still one to repeat after a restart, and a pending request is authorised only where its own
enrolment landed.

`EnrolmentService.revoke` revokes the MGMC's identity key and its anonym on the DSO chain, then on the MGMC
chain; a chain that refuses or times out leaves it authorised, and the operator repeats it (only what did not
land is sent again). Before, the server's start took the DSO chain's word that the identity key alone was
revoked (`live.chain_word`, `live.loop_enrolments`) and showed the MGMC revoked: the console then refused to
revoke it again ('enrolment is revoked, not authorised') and the MGMC chain never heard of it, where the MGMC
stayed an authority and kept trading. Now only a complete revocation reads as revoked; a half one is authorised,
told at WARNING, and repeating it finishes it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from peergrid_dso.live import chain_word, loop_enrolments
from peergrid_dso.services.enrolment import Enrolment, EnrolmentService
from peergrid_ledger import keyspace as ks
from peergrid_ledger.keys import Keypair


class State(dict[bytes, bytes]):
    """A chain's state as `is_revoked` and `query.account` read it."""

    def revoke(self, *keys: bytes) -> State:
        for key in keys:
            self[ks.revoked(key)] = b"1"
        return self


def node(dso: State, mgmc: State | None, mgs: dict[str, Any] | None = None) -> Any:
    """The DsoNode as the start reads it: its DSO replica first, the MGMC chain it follows beside."""
    replicas = {"dso": SimpleNamespace(app=SimpleNamespace(state=dso))}
    if mgmc is not None:
        replicas["mgmc"] = SimpleNamespace(app=SimpleNamespace(state=mgmc))
    return SimpleNamespace(
        replica=replicas["dso"],
        node=SimpleNamespace(replicas=replicas),
        settings=SimpleNamespace(mgs=mgs or {}),
    )


class Chain:
    """A networked chain's recorder: a gov.revoke of a key it revoked already is taken into the pool and never
    final (the state machine refuses it in the block), a timeout to the caller."""

    def __init__(self, revoked: frozenset[bytes] = frozenset()) -> None:
        self.revoked = set(revoked)
        self.sent: list[tuple[str, bytes]] = []

    def submit(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "gov.revoke" and body["key"] in self.revoked:
            raise RuntimeError("gov.revoke rejected: timeout not final in 8.0 s")
        self.sent.append((kind, body["key"]))
        self.revoked.add(body["key"])


def test_a_revocation_only_the_dso_chain_holds_is_repeated_after_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mgmc, anonym = Keypair.generate().public, Keypair.generate().public
    # the DSO chain took both keys, the MGMC chain timed out; then the server stopped
    dso_state, mgmc_state = State().revoke(mgmc, anonym), State()
    with caplog.at_level(logging.WARNING, "peergrid_dso.live"):
        revoked, _ = chain_word(node(dso_state, mgmc_state), [(mgmc, anonym)])
    assert revoked == set()  # before: {mgmc}, shown revoked and never revocable again
    assert "failed half-way" in caplog.text and mgmc.hex()[:12] in caplog.text

    dso_chain, mgmc_chain = Chain({mgmc, anonym}), Chain()
    service = EnrolmentService(dso_chain, auto=False, mgmc_recorder=mgmc_chain)
    service.enrolments[mgmc] = Enrolment(mgmc, anonym, "mg1", "authorised")  # the file's word
    assert service.follow_chain(revoked, set()) == []
    states = [dso_state, mgmc_state]  # the running node's replicas (`EmbeddedLoop.revoked_on_chain`)
    service.revoked_on_chain = lambda chain, key: ks.revoked(key) in states[chain]
    assert service.revoke(mgmc, "olga").status == "revoked"  # the operator repeats it
    # what landed is not sent again (it would time out): only the MGMC chain's half
    assert mgmc_chain.sent == [("gov.revoke", mgmc), ("gov.revoke", anonym)] and dso_chain.sent == []


def test_only_a_complete_revocation_reads_as_revoked() -> None:
    mgmc, anonym = Keypair.generate().public, Keypair.generate().public
    queue = [(mgmc, anonym)]
    assert chain_word(node(State().revoke(mgmc, anonym), State().revoke(mgmc, anonym)), queue)[0] == {mgmc}
    assert chain_word(node(State().revoke(mgmc, anonym), None), queue)[0] == {mgmc}  # no MGMC chain followed
    assert chain_word(node(State().revoke(mgmc), None), queue)[0] == set()  # its anonym not yet
    assert chain_word(node(State(), State()), queue)[0] == set()


def test_the_loops_own_mg_half_revoked_stays_authorised() -> None:
    mgmc, anonym = Keypair.generate(), Keypair.generate()
    mgs = {"mg1": SimpleNamespace(node=mgmc.public.hex(), anonym=anonym.public.hex())}
    keys = (mgmc.public, anonym.public)
    half = loop_enrolments(node(State().revoke(*keys), State(), mgs))
    assert half[mgmc.public].status == "authorised"  # before: revoked
    done = loop_enrolments(node(State().revoke(*keys), State().revoke(*keys), mgs))
    assert done[mgmc.public].status == "revoked"


def account(roles: set[str], label: str = "") -> bytes:
    return ks.AccountRecord(frozenset(roles), True, label).encode()


def test_an_anonym_another_mg_holds_is_not_this_requests_approval() -> None:
    """Before, any account for the request's anonym read as 'its approval landed': a request naming the anonym of
    an enrolled MG (public on the chain; the chain refuses to enrol it again) sat pending, and the next start
    showed it authorised - the injection gate then took its key for its MG, no operator having approved it."""
    victim, anonym, rogue = (Keypair.generate().public for _ in range(3))
    state = State(
        {ks.account(victim): account({ks.ROLE_MGMC}, "mg1"), ks.account(anonym): account({ks.ROLE_ANONYM})}
    )
    queue = [(victim, anonym), (rogue, anonym)]
    assert chain_word(node(state, None), queue)[1] == {anonym}  # the victim's pair, landed
    service = EnrolmentService(Chain(), auto=False)
    service.enrolments[rogue] = Enrolment(rogue, anonym, "mg2", "pending")
    _, enrolled = chain_word(node(state, None), [(rogue, anonym)])
    assert enrolled == set() and service.follow_chain(set(), enrolled) == []  # before: mg2 authorised
    assert service.enrolments[rogue].status == "pending"
    # an anonym revoked since is no approval either
    assert chain_word(node(state.revoke(anonym), None), [(victim, anonym)])[1] == set()

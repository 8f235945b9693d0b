"""D14: `peergrid-dso serve`'s check of the loop's keys before the node starts (`live.stored_word`) reads the
revocations over both chains, as the node's start does (`live._word`). Before, it read the DSO chain's store
alone: a revocation the DSO chain holds and the MGMC chain not (half-done: a chain refused or timed out, then a
restart) was refused by `serve` in one line ("names MGMC ... revoked"), where the node, reading both, keeps the
MG authorised and tells the half-done revocation once, for the operator to repeat it (D9)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from peergrid_dso.live import stored_word
from peergrid_ledger.keys import Keypair
from peergrid_ledger.settings import ConfigError
from peergrid_ledger.store import BlockStore

from .test_d6_serve_chain_revoked import dso_chain_revoking


def chains(
    tmp_path: Path, dso: Keypair, mgmc: Keypair, anonym: Keypair, mgmc_revoked: bool
) -> SimpleNamespace:
    """A loop section: the DSO chain's store revoked both keys; the MGMC chain's store did too where
    `mgmc_revoked`, else it has no store yet (its genesis, as the node's follower starts from it)."""
    dso_genesis = dso_chain_revoking(tmp_path, dso, mgmc, anonym)
    (tmp_path / "mgmc").mkdir()
    if mgmc_revoked:
        mgmc_genesis = dso_chain_revoking(tmp_path / "mgmc", dso, mgmc, anonym, "mgmc-d14")
    else:
        mgmc_genesis = dso_chain_revoking(
            tmp_path / "mgmc", dso, Keypair.generate(), Keypair.generate(), "mgmc-d14"
        )
        for item in (tmp_path / "mgmc" / "dso.db").iterdir():
            item.unlink()  # no store yet: only the genesis file
    return SimpleNamespace(
        dso_chain=SimpleNamespace(genesis=dso_genesis, data_dir=tmp_path / "dso.db"),
        mgmc_chain=SimpleNamespace(genesis=mgmc_genesis, data_dir=tmp_path / "mgmc" / "dso.db"),
    )


def test_a_revocation_only_the_dso_chain_holds_is_half_done_not_refused(tmp_path: Path) -> None:
    dso, mgmc, anonym = (Keypair.generate() for _ in range(3))
    loop = chains(tmp_path, dso, mgmc, anonym, mgmc_revoked=False)
    word = stored_word(loop, [(mgmc.public, anonym.public)])
    assert word is not None and word[0] == set()  # before: {mgmc} from the DSO chain alone, and serve refused
    assert not any((tmp_path / "mgmc" / "dso.db").iterdir())  # reads; never creates the MGMC store


def test_a_revocation_both_chains_hold_is_revoked(tmp_path: Path) -> None:
    dso, mgmc, anonym = (Keypair.generate() for _ in range(3))
    loop = chains(tmp_path, dso, mgmc, anonym, mgmc_revoked=True)
    assert stored_word(loop, [(mgmc.public, anonym.public)]) == ({mgmc.public}, set())
    with BlockStore.open(tmp_path / "mgmc" / "dso.db"):  # the MGMC store held by another process
        assert stored_word(loop, [(mgmc.public, anonym.public)]) is None
    assert BlockStore.open(tmp_path / "dso.db").close() is None  # the DSO store was closed again


def test_an_mgmc_store_of_another_chain_is_refused_in_the_nodes_words(tmp_path: Path) -> None:
    dso, mgmc, anonym = (Keypair.generate() for _ in range(3))
    loop = chains(tmp_path, dso, mgmc, anonym, mgmc_revoked=True)
    loop.mgmc_chain.genesis = loop.dso_chain.genesis  # the MGMC store is another chain's
    with pytest.raises(ConfigError, match=r"dso\.db: holds another chain's store \(genesis differs\)$"):
        stored_word(loop, [(mgmc.public, anonym.public)])
    assert BlockStore.open(tmp_path / "dso.db").close() is None  # closed on the way out

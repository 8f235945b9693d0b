"""RFC 6962 Merkle trees: agreement with the RFC's recursive definition, proofs, and tamper detection."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid_ledger import merkle


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written recursively and independently of the implementation."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_root(leaves[:k])]


def test_known_roots() -> None:
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # the leaf hash of the empty string, as in RFC 6962 test data
    assert merkle.root([b""]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


@given(st.lists(st.binary(max_size=16), min_size=0, max_size=70))
@settings(max_examples=200, deadline=None)
def test_root_matches_rfc_definition(leaves: list[bytes]) -> None:
    assert merkle.root(leaves) == reference_root(leaves)
    assert merkle.MerkleTree(leaves).root == reference_root(leaves)


@given(st.lists(st.binary(max_size=16), min_size=1, max_size=70))
@settings(max_examples=100, deadline=None)
def test_every_leaf_proves_and_paths_match_rfc(leaves: list[bytes]) -> None:
    tree = merkle.MerkleTree(leaves)
    for i, leaf in enumerate(leaves):
        path = tree.proof(i)
        assert path == reference_path(i, leaves)
        assert merkle.verify_inclusion(leaf, i, len(leaves), path, tree.root)


@given(st.lists(st.binary(min_size=1, max_size=16), min_size=2, max_size=40), st.data())
@settings(max_examples=200, deadline=None)
def test_any_changed_byte_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = merkle.MerkleTree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    path = tree.proof(i)
    root = tree.root
    leaf = leaves[i]

    def flip(b: bytes) -> bytes:
        j = data.draw(st.integers(0, len(b) - 1))
        return b[:j] + bytes([b[j] ^ data.draw(st.integers(1, 255))]) + b[j + 1 :]

    assert not merkle.verify_inclusion(flip(leaf), i, len(leaves), path, root)
    assert not merkle.verify_inclusion(leaf, i, len(leaves), path, flip(root))
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        assert not merkle.verify_inclusion(
            leaf, i, len(leaves), [*path[:k], flip(path[k]), *path[k + 1 :]], root
        )
        assert not merkle.verify_inclusion(leaf, i, len(leaves), path[:-1], root)
        assert not merkle.verify_inclusion(leaf, i, len(leaves), [*path, path[0]], root)
    other = data.draw(st.integers(0, len(leaves) - 1).filter(lambda j: leaves[j] != leaf))
    assert not merkle.verify_inclusion(leaf, other, len(leaves), path, root)


def test_leaf_and_node_domains_differ() -> None:
    # an interior node must not pass as a leaf: the second-preimage trick
    a, b = b"a", b"b"
    root = merkle.root([a, b])
    forged_leaf = merkle.leaf_hash(a) + merkle.leaf_hash(b)
    assert merkle.root([forged_leaf]) != root
    assert not merkle.verify_inclusion(forged_leaf, 0, 1, [], root)


def test_out_of_range_indexes_fail_cleanly() -> None:
    tree = merkle.MerkleTree([b"x", b"y", b"z"])
    assert not merkle.verify_inclusion(b"x", 3, 3, tree.proof(0), tree.root)
    assert not merkle.verify_inclusion(b"x", -1, 3, tree.proof(0), tree.root)
    assert not merkle.verify_inclusion(b"x", 0, 0, [], tree.root)

"""Transaction inclusion proofs a third party checks with only a block header (no database).

A proof is a JSON document: the transaction's wire bytes, its index and the block's transaction count, the
RFC 6962 audit path, the signed header (header bytes and proposer seal) and the block's commit certificate.
`check_proof` re-derives everything from those bytes: the transaction decodes and its signature verifies,
the path leads to the header's `tx_root`, the seal verifies for the header's proposer, the certificate's
votes verify for this header, and - when the caller knows them - the header hash and the authority set
match. Pure apart from JSON parsing; returns a `ProofCheck` or raises `ProofError` naming what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import merkle
from .block import Block, Certificate, Header, InvalidBlock, verify_certificate
from .codec import DecodeError
from .tx import decode_tx
from .votes import COMMIT, PROPOSE, vote_ok

PROOF_TYPE = "peergrid-tx-inclusion-v1"


class ProofError(Exception):
    """A proof that does not hold (or is not a proof)."""


@dataclass(frozen=True, slots=True)
class ProofCheck:
    txid: bytes
    height: int
    block_hash: bytes
    chain: str
    commit_signers: tuple[bytes, ...]

    def summary(self) -> str:
        return (
            f"OK: transaction {self.txid.hex()} is in block {self.height} ({self.block_hash.hex()}) "
            f"on chain {self.chain!r}, committed by {len(self.commit_signers)} authority signature(s)"
        )


def build_proof(block: Block, certificate: Certificate, txid: bytes) -> dict[str, Any]:
    leaves = [tx.raw for tx in block.txs]
    index = next((i for i, tx in enumerate(block.txs) if tx.txid == txid), None)
    if index is None:
        raise ProofError(f"transaction {txid.hex()} is not in block {block.height}")
    tree = merkle.MerkleTree(leaves)
    return {
        "type": PROOF_TYPE,
        "chain": block.header.chain,
        "height": block.height,
        "txid": txid.hex(),
        "tx": leaves[index].hex(),
        "index": index,
        "tree_size": tree.size,
        "path": [node.hex() for node in tree.proof(index)],
        "header": block.header.encode().hex(),
        "seal": block.seal.hex(),
        "header_hash": block.hash.hex(),
        "certificate": certificate.encode().hex(),
    }


def _hex(doc: dict[str, Any], name: str) -> bytes:
    try:
        return bytes.fromhex(doc[name])
    except (KeyError, TypeError, ValueError):
        raise ProofError(f"proof field {name!r} is missing or not hex") from None


def check_proof(
    doc: Any, trusted_header_hash: bytes | None = None, authorities: Sequence[bytes] | None = None
) -> ProofCheck:
    if not isinstance(doc, dict) or doc.get("type") != PROOF_TYPE:
        raise ProofError(f"not a {PROOF_TYPE} document")
    try:
        header = Header.decode(_hex(doc, "header"))
        tx = decode_tx(_hex(doc, "tx"))
        certificate = Certificate.decode(_hex(doc, "certificate"))
    except DecodeError as exc:
        raise ProofError(f"proof holds malformed bytes: {exc}") from None
    index, size = doc.get("index"), doc.get("tree_size")
    if type(index) is not int or type(size) is not int or not isinstance(doc.get("path"), list):
        raise ProofError("proof index, tree_size or path is malformed")
    path = [_hex({"p": p}, "p") for p in doc["path"]]
    if tx.chain != header.chain:
        raise ProofError("transaction and header are for different chains")
    if not tx.signature_ok():
        raise ProofError("transaction signature does not verify")
    if not merkle.verify_inclusion(tx.raw, index, size, path, header.tx_root):
        raise ProofError("Merkle path does not lead to the header's transaction root")
    block_hash = header.hash
    if trusted_header_hash is not None and block_hash != trusted_header_hash:
        raise ProofError("header hash differs from the trusted one")
    if not vote_ok(
        header.chain, header.height, header.round, PROPOSE, block_hash, header.proposer, _hex(doc, "seal")
    ):
        raise ProofError("block seal does not verify for its proposer")
    if authorities is not None:
        try:
            verify_certificate(certificate, header, authorities)
        except InvalidBlock as exc:
            raise ProofError(f"commit certificate: {exc.reason}") from None
    else:
        if certificate.block != block_hash or certificate.height != header.height:
            raise ProofError("commit certificate is for another block")
        for signer, sig in certificate.votes:
            if not vote_ok(header.chain, header.height, header.round, COMMIT, block_hash, signer, sig):
                raise ProofError("a commit vote does not verify")
        if not certificate.votes:
            raise ProofError("commit certificate holds no votes")
    signers = tuple(s for s, _ in certificate.votes)
    return ProofCheck(tx.txid, header.height, block_hash, header.chain, signers)

"""`peergrid-ledger`: keys, genesis, inspection (blocks, an account's owner rules), verification, proofs, export and
a demo chain.

Exit status: 0 success; 1 a verification (verify, verify-proof) failed; 2 bad usage, bad input file or an
unusable store. Errors are one line on stderr, never a traceback. Private keys are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .cli_args import UsageError, public_key, write_json
from .cli_genesis import add_genesis_parser
from .cli_rules import add_rules_parser
from .codec import DecodeError
from .demo import NAMES, build_demo, demo_genesis, demo_key
from .genesis import GenesisError
from .keys import KeyFileError, Keypair, write_keyfile
from .proof import ProofError, build_proof, check_proof
from .store import BlockStore, StoreError
from .store_copy import opened_copy
from .tx import to_jsonable
from .verify import VerifyReport, verify_store

PROG = "peergrid-ledger"


def _fail(message: str, status: int = 2) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    raise SystemExit(status)


def _open_store(path: str) -> BlockStore:
    return BlockStore.open(path)


# ---------------------------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    keypair = Keypair.generate()
    write_keyfile(args.out, keypair)
    print(keypair.public.hex())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        if args.tx:
            txid = bytes.fromhex(args.tx)
            where = store.locate_tx(txid)
            if where is None:
                raise UsageError(f"no transaction {args.tx} in this store")
            block = store.block(where[0])
            doc = block.txs[where[1]].to_json() | {"height": where[0], "index": where[1]}
        elif args.genesis:
            doc = store.genesis.to_json() | {"hash": store.genesis.hash.hex()}
        else:
            height = store.head_height() if args.height is None else args.height
            if height == 0:
                doc = {"height": 0, "genesis": store.genesis.hash.hex()}
            else:
                try:
                    block = store.block(height)
                except KeyError:
                    raise UsageError(f"no block at height {height} (head is {store.head_height()})") from None
                cert = store.certificate(height)
                doc = {
                    "header": block.header.to_json(),
                    "seal": block.seal.hex(),
                    "certificate": {
                        "round": cert.round,
                        "votes": [[s.hex(), sig.hex()] for s, sig in cert.votes],
                    },
                    "txs": [tx.to_json() for tx in block.txs],
                }
    write_json(doc, None)
    return 0


def _verify_copy(db: str) -> VerifyReport:
    """Verify a copy of a store a running node holds locked (`store_copy.opened_copy`). A copy taken while the
    node writes can catch a compaction half-way (a table missing, or gone from under the copy), so a copy that
    cannot be taken or opened is retried with a fresh one; a store that was really tampered with fails every
    copy at the same place."""
    report: VerifyReport | None = None
    failed: StoreError | None = None
    for _ in range(3):
        try:
            with opened_copy(db) as store:
                report = verify_store(store)
        except StoreError as exc:
            failed = exc
            continue
        if report.ok:
            break
    if report is None:
        raise UsageError(f"no consistent copy could be opened in 3 tries, the last: {failed}")
    return report


def cmd_verify(args: argparse.Namespace) -> int:
    if args.copy:
        report = _verify_copy(args.db)
    else:
        with _open_store(args.db) as store:
            report = verify_store(store)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def cmd_prove(args: argparse.Namespace) -> int:
    txid = bytes.fromhex(args.tx)
    with _open_store(args.db) as store:
        where = store.locate_tx(txid)
        if where is None:
            raise UsageError(f"no transaction {args.tx} in this store")
        proof = build_proof(store.block(where[0]), store.certificate(where[0]), txid)
    write_json(proof, args.out)
    return 0


def cmd_verify_proof(args: argparse.Namespace) -> int:
    try:
        doc = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{args.file}: cannot read a JSON proof ({exc})") from None
    trusted = bytes.fromhex(args.header_hash) if args.header_hash else None
    authorities = [public_key(text) for text in args.authority] if args.authority else None
    try:
        check = check_proof(doc, trusted, authorities)
    except ProofError as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    print(check.summary())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = sys.stdout if args.out in (None, "-") else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with _open_store(args.db) as store:
            out.write(
                json.dumps({"genesis": store.genesis.to_json(), "hash": store.genesis.hash.hex()}) + "\n"
            )
            for height in range(1, store.head_height() + 1):
                block, cert = store.block(height), store.certificate(height)
                line = {
                    "height": height,
                    "header": block.header.to_json(),
                    "block": block.encode().hex(),
                    "certificate": cert.encode().hex(),
                    "txs": [to_jsonable(tx.to_json()) for tx in block.txs],
                }
                out.write(json.dumps(line, sort_keys=True) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    keys_dir = Path(args.keys or f"{args.db.rstrip('/')}-keys")
    genesis = demo_genesis({name: demo_key(name) for name in NAMES})
    store = BlockStore.create(args.db, genesis)
    try:
        demo = build_demo(store, args.blocks)
    finally:
        store.close()
    keys_dir.mkdir(parents=True, exist_ok=True)
    for name, keypair in demo.keys.items():
        path = keys_dir / f"{name}.key"
        if not path.exists():
            write_keyfile(path, keypair)
    (keys_dir / "genesis.json").write_text(json.dumps(genesis.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.blocks} blocks to {args.db}; keys and genesis.json in {keys_dir}")
    for kind, txid in sorted(demo.txids.items()):
        print(f"  {kind:22} {txid.hex()}")
    return 0


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="peergrid's proof-of-authority ledger tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="create an Ed25519 key file (mode 0600) and print its public key")
    p.add_argument("--out", required=True, help="key file to create (never overwritten)")
    p.set_defaults(func=cmd_keygen)

    add_genesis_parser(sub)

    p = sub.add_parser("show", help="print a block (default: the head), a transaction or the genesis as JSON")
    p.add_argument("--db", required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--height", type=int)
    group.add_argument("--tx", help="transaction id (hex)")
    group.add_argument("--genesis", action="store_true")
    p.set_defaults(func=cmd_show)

    add_rules_parser(sub)

    p = sub.add_parser(
        "verify", help="re-verify every block from genesis; exit 1 naming the first bad height"
    )
    p.add_argument("--db", required=True)
    p.add_argument(
        "--copy", action="store_true", help="verify a copy (for a store a running node holds locked)"
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("prove", help="write a JSON inclusion proof for a transaction")
    p.add_argument("--db", required=True)
    p.add_argument("--tx", required=True, help="transaction id (hex)")
    p.add_argument("--out", default="-", help="proof file (default stdout)")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("verify-proof", help="check a proof without the database")
    p.add_argument("file")
    p.add_argument("--header-hash", help="the block hash you trust (hex); otherwise reported")
    p.add_argument(
        "--authority",
        action="append",
        default=[],
        help="a trusted authority key for that height (repeat): the certificate must reach their quorum",
    )
    p.set_defaults(func=cmd_verify_proof)

    p = sub.add_parser("export", help="write the chain as JSON lines (genesis, then one line per block)")
    p.add_argument("--db", required=True)
    p.add_argument("--out", default="-")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="write a sample chain holding transactions of every kind")
    p.add_argument("--db", required=True, help="new store directory")
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--keys", help="where to write the demo keys (default DB-keys)")
    p.set_defaults(func=cmd_demo)

    # listed for --help only: `main` hands `node ...` to the replica daemon before parsing
    sub.add_parser(
        "node", help="run one ledger replica: node --config FILE (see node --help)", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["node"]:
        # the replica daemon: `peergrid-ledger node --config FILE` (consensus/node_cli.py)
        from .consensus.node_cli import main as node_main

        return node_main(words[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except (UsageError, StoreError, KeyFileError, GenesisError, DecodeError, ValueError) as exc:
        _fail(str(exc))
    except BrokenPipeError:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())

"""`peergrid-ledger rules`: the owner rules a chain holds for one key (the market contract's `mkt/rules/<key>`).

Promises: prints one JSON document from the store's committed state at its head: every entry the chain keeps
(`from_interval` and the rules, as `market.rules` or the genesis set them), the last interval the key took part
in (`mkt/last`; null: none), and the rules standing for `interval` (default: the first interval the key may still
change its rules from, after that last one: the rules its next trades meet). Prices are micro-units per Wh,
quantities Wh, as the contract keeps them; a key with no entry stands on no rules (the contract's bounds). Reads
only; `--copy` reads a copy of a store a running node holds locked (its LOCK file left behind).
"""

from __future__ import annotations

import argparse
from typing import Any

from .cli_args import UsageError, public_key, write_json
from .contracts.market_state import last_interval_key, rules_for, rules_key
from .state import read_obj
from .store import BlockStore, StoreError, StoreState
from .store_copy import CopyError, opened_copy


def rules_doc(store: BlockStore, key: bytes, interval: int | None) -> dict[str, Any]:
    """What `peergrid-ledger rules` prints for `key` (module)."""
    state = StoreState(store)
    last = read_obj(state, last_interval_key(key))
    at = (0 if last is None else int(last) + 1) if interval is None else interval
    return {
        "chain": store.genesis.chain,
        "height": store.head_height(),
        "key": key.hex(),
        "entries": [{"from_interval": int(f), "rules": r} for f, r in read_obj(state, rules_key(key)) or []],
        "last_interval": None if last is None else int(last),
        "interval": at,
        "standing": dict(rules_for(state, key, at)),
    }


def cmd_rules(args: argparse.Namespace) -> int:
    key = public_key(args.key)
    if args.interval is not None and args.interval < 0:
        raise UsageError(f"--interval {args.interval}: an interval is 0 or more")
    if not args.copy:
        with BlockStore.open(args.db) as store:
            doc = rules_doc(store, key, args.interval)
    else:
        try:
            with opened_copy(args.db) as store:
                doc = rules_doc(store, key, args.interval)
        except CopyError as exc:
            raise UsageError(str(exc)) from None
        except StoreError as exc:
            raise UsageError(f"{args.db}: its copy cannot be read ({exc}); try again") from None
    write_json(doc, None)
    return 0


def add_rules_parser(sub: Any) -> None:
    """The `rules` subcommand and its options, on `sub` (the CLI's subparsers)."""
    p = sub.add_parser(
        "rules", help="print the owner rules a chain holds for a key (market.rules, genesis) as JSON"
    )
    p.add_argument("--db", required=True, help="the chain's store (an MGMC's mgmc.db)")
    p.add_argument("key", help="the trading key (an MGMC's anonym): public key (hex) or key file")
    p.add_argument(
        "--interval",
        type=int,
        help="the interval whose rules to show as standing (default: the first the key may still change, after"
        " the last it traded in)",
    )
    p.add_argument(
        "--copy", action="store_true", help="read a copy (for a store a running node holds locked)"
    )
    p.set_defaults(func=cmd_rules)

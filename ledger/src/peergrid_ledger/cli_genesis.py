"""`peergrid-ledger genesis`: its options and the genesis document (and store) they make.

Promises: every genesis parameter given is checked by `Params` before anything is written (a negative limit
is refused, not written into a genesis file); options that only mean something beside another
(`--accept-wait-ms` without `--accept-rounds 2`, the settle numbers without `--settle-by-both`) are a
`UsageError`, never ignored; a genesis made without the newer options keeps the old genesis bytes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from .cli_args import UsageError, public_key, write_json
from .contracts.market_state import RULES_SHAPE
from .genesis import Account, Genesis, Params
from .keyspace import PARTICIPANT_ROLES
from .results import RuleError
from .schema import PRICE, QUANTITY, check
from .store import BlockStore


def cmd_genesis(args: argparse.Namespace) -> int:
    accounts: dict[bytes, Account] = {}
    for text in args.dso:
        key = public_key(text)
        accounts[key] = Account(key, ("dso",), "dso")
    for spec in args.account:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(f"--account {spec!r}: expected KEY:ROLE[,ROLE][:BALANCE]")
        key = public_key(parts[0])
        balance = int(parts[2]) if len(parts) == 3 else 0
        accounts[key] = Account(key, tuple(parts[1].split(",")), balance=balance)
    for key, rules in _preset_rules(args.rules, accounts).items():
        accounts[key] = replace(accounts[key], rules=rules)
    genesis = Genesis(
        chain=args.chain,
        time=args.time,
        authorities=tuple(public_key(t) for t in args.authority),
        accounts=tuple(accounts.values()),
        contracts=tuple(args.contract) if args.contract else ("auction", "market"),
        fee_coordinators=tuple(public_key(t) for t in args.fee_coordinator),
        # through from_value, so a negative limit is refused here rather than written into a genesis file
        params=Params.from_value(
            Params(
                credit_limit=args.credit_limit,
                max_reopens=args.max_reopens,
                cap_on_fills=int(args.cap_on_fills),
                accept_rounds=args.accept_rounds,
                anonyms_only=int(args.anonyms_only),
                uplift_claim_ms=args.uplift_claim_ms,
                uplift_max_spread=args.uplift_max_spread,
                max_rounds=args.max_rounds or 0,  # with or without --settle-by-both: a declared cap
                exchange_fee=args.exchange_fee,
                uplift_fund_cap=args.uplift_fund_cap,
                **_accept_wait(args),
                **_settle_params(args),
            ).to_value()
        ),
    )
    write_json(genesis.to_json(), args.out)
    if args.db:
        BlockStore.create(args.db, genesis).close()
    print(f"genesis {genesis.hash.hex()} for chain {genesis.chain!r}", file=sys.stderr)
    params = genesis.params
    if "uplift" in genesis.contracts and not params.settle_by_both and not params.uplift_max_spread:
        # review19 F6: a genesis cannot change later, and here every make-whole gain is bounded by 0
        print(
            "warning: the uplift contract on a chain without --settle-by-both (no DSO cover prices) and without"
            " --uplift-max-spread pays no make-whole gain",
            file=sys.stderr,
        )
    return 0


RULES_FORM = "KEY:FLOOR,CAP,MAX,CLEAN_ONLY,PREMIUM"
_NO_RULE = {"cap_price": PRICE.high, "max_quantity": QUANTITY.high}  # what an empty CAP or MAX stands for
_YES, _NO = ("true", "yes", "1"), ("false", "no", "0")


def _preset_rules(specs: list[str], accounts: dict[bytes, Account]) -> dict[bytes, dict[str, Any]]:
    """Each `--rules KEY:FLOOR,CAP,MAX,CLEAN_ONLY,PREMIUM` as the market contract keeps an account's rules
    (`market_state.RULES_SHAPE`: prices in micro-units per Wh, MAX in Wh; an empty CAP or MAX is no cap or no
    maximum, an empty FLOOR or PREMIUM 0; CLEAN_ONLY true/false, yes/no or 1/0), for a key given with `--account`
    as a participant (mgmc or anonym), once. Anything else is a `UsageError` naming the option and the field."""
    out: dict[bytes, dict[str, Any]] = {}
    for spec in specs:
        where = f"--rules {spec!r}"
        text, sep, values = spec.rpartition(":")
        fields = values.split(",")
        if not sep or len(fields) != 5:
            raise UsageError(f"{where}: expected {RULES_FORM}, e.g. <key>:150,250,15000,false,20")
        key = public_key(text)
        account = accounts.get(key)
        if account is None or not set(account.roles) & PARTICIPANT_ROLES:
            raise UsageError(
                f"{where}: the key must be given with --account as a participant ({', '.join(sorted(PARTICIPANT_ROLES))}):"
                " only a participant trades, so only its rules bind"
            )
        if key in out:
            raise UsageError(f"{where}: rules for this key were given already")
        rules: dict[str, Any] = {}
        for name, value in zip(
            ("floor_price", "cap_price", "max_quantity", "clean_only", "clean_premium"), fields, strict=True
        ):
            value = value.strip().lower()
            if name == "clean_only":
                if value not in _YES + _NO:
                    raise UsageError(f"{where}: CLEAN_ONLY {value!r}: expected true or false")
                rules[name] = value in _YES
                continue
            if not value:
                rules[name] = _NO_RULE.get(name, 0)
                continue
            try:
                rules[name] = int(value)
            except ValueError:
                raise UsageError(
                    f"{where}: {name} {value!r} is not a whole number ({RULES_FORM}: micro-units per Wh, Wh)"
                ) from None
        try:
            check(RULES_SHAPE, rules, "rules")
        except RuleError as exc:  # the schema's own words: which field, which bounds
            raise UsageError(f"{where}: {exc}") from None
        out[key] = rules
    return out


def _accept_wait(args: argparse.Namespace) -> dict[str, int]:
    """Genesis `accept_wait_ms` and `accept_window_ms`, only with `--accept-rounds 2`: alone they are a usage
    error, not ignored."""
    given = {
        k: v
        for k, v in (("accept_wait_ms", args.accept_wait_ms), ("accept_window_ms", args.accept_window_ms))
        if v is not None
    }
    if given and args.accept_rounds != 2:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags}: only with --accept-rounds 2")
    return given


def _settle_params(args: argparse.Namespace) -> dict[str, int]:
    """Genesis `settle_by_both`, its numbers and interval clock; the numbers alone are a usage error, not
    ignored (an epoch without an interval, or out of range, is refused by `Params`)."""
    numbers = {
        "settle_tolerance_wh": args.settle_tolerance_wh,
        "settle_wait_ms": args.settle_wait_ms,
        "settle_epoch_ms": args.settle_epoch_ms,
        "settle_interval_ms": args.settle_interval_ms,
    }
    given = {k: v for k, v in numbers.items() if v is not None}
    for flag in ("sealed_statements", "seller_vouched", "close_on_clock", "unpaid_as_debt"):
        if getattr(args, flag):
            given[flag] = 1
    for number in (
        "settle_tolerance_permille",
        "close_after_ms",
        "close_quiet_ms",
        "owed_limit",
    ):
        if getattr(args, number) is not None:
            given[number] = getattr(args, number)
    if given and not args.settle_by_both:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags}: only with --settle-by-both")
    return {"settle_by_both": 1, **given} if args.settle_by_both else {}


def add_genesis_parser(sub: Any) -> None:
    """The `genesis` subcommand and its options, on `sub` (the CLI's subparsers)."""
    p = sub.add_parser("genesis", help="write a genesis document (JSON), optionally initialising a store")
    p.add_argument("--chain", required=True, help="chain id, e.g. mgmc-feeder1 or dso-feeder1")
    p.add_argument(
        "--authority", action="append", required=True, help="authority public key (hex) or key file"
    )
    p.add_argument("--dso", action="append", default=[], help="DSO governance key (hex) or key file")
    p.add_argument("--account", action="append", default=[], help="KEY:ROLE[,ROLE][:BALANCE]")
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar=RULES_FORM,
        help="an --account's owner rules, preset from interval 0 (the market contract's mkt/rules; the MGMC may"
        " change them later with market.rules): FLOOR never sell below, CAP never buy above (micro-units per Wh;"
        " empty: no cap), MAX Wh per interval either side (empty: no maximum), CLEAN_ONLY true or false, PREMIUM"
        " what it pays above CAP for clean energy (micro-units per Wh); e.g. KEY:150,250,15000,false,20",
    )
    p.add_argument(
        "--contract", action="append", default=[], help="contract to enable (default: auction, market)"
    )
    p.add_argument("--time", type=int, default=0, help="genesis time, ms since the epoch")
    p.add_argument("--credit-limit", type=int, default=0, help="how far balances may go below zero")
    p.add_argument(
        "--max-reopens",
        type=int,
        default=0,
        help="how often the DSO may reopen a closed interval for re-bargaining (default 0: never)",
    )
    p.add_argument(
        "--cap-on-fills",
        action="store_true",
        help="a buyer's maximum quantity caps what the market allocates it, not the sum of its requests"
        " (genesis cap_on_fills 1; default: the old rule, and the old genesis bytes)",
    )
    p.add_argument(
        "--accept-rounds",
        type=int,
        default=1,
        help="the exchange's accept round a clear before the session's deadline needs settled: 2 = every"
        " member re-checked the clear's cut (genesis accept_rounds 2; default 1: the old rule, and the old"
        " genesis bytes)",
    )
    p.add_argument(
        "--accept-wait-ms",
        type=int,
        help="with --accept-rounds 2: after a session's deadline, how long a round waits for a member still"
        " trading before it stands on its latest accept (genesis accept_wait_ms; default 300000)",
    )
    p.add_argument(
        "--accept-window-ms",
        type=int,
        help="with --accept-rounds 2: the least time every member has after a session's close to accept"
        " before its deadline (a close raises an earlier deadline to this; genesis accept_window_ms; default"
        " 0: none, the coordinator's deadline as it set it - a live chain wants minutes)",
    )
    p.add_argument(
        "--anonyms-only",
        action="store_true",
        help="only an MGMC's anonym trades (offers, bids, moves, exchange members, positions, accepts), also"
        " without --settle-by-both: no MGMC trades with itself through its node key (genesis anonyms_only 1;"
        " needs an anonym account or a dso account to enrol one; default: the old rule, and the old bytes)",
    )
    p.add_argument(
        "--uplift-claim-ms",
        type=int,
        default=0,
        help="with the uplift contract: day-ahead make-whole claims land until the session's deadline plus this"
        " (genesis uplift_claim_ms; default 0: until the session's uplift is settled, the first settle closes"
        " them)",
    )
    p.add_argument(
        "--uplift-max-spread",
        type=int,
        default=0,
        help="with the uplift contract: the make-whole gain bound's spread, micro-units per Wh, in an interval"
        " the DSO prices no cover for (genesis uplift_max_spread; the widest retail - feed-in of the chain's"
        " MGs; default 0: there no gain is paid, only the surplus counts)",
    )
    p.add_argument(
        "--exchange-fee",
        type=int,
        default=0,
        help="with the exchange and uplift contracts: the fee on each side of every day-ahead trade, nano-currency"
        " per kWh, a whole number of ticks (multiples of 10^6 = 1 micro-unit per Wh; at most 10^7), paid into the"
        " uplift fund, which alone funds the make-whole (genesis exchange_fee; the DSO may change it with"
        " market.fee; default 0: no fee, the payers' claimed surplus funds it, and the old genesis bytes)",
    )
    p.add_argument(
        "--uplift-fund-cap",
        type=int,
        default=0,
        help="with --exchange-fee: the most the uplift fund keeps after a session's payout, micro-units; the rest"
        " goes back to that session's fee payers (genesis uplift_fund_cap; default 0: nothing carried over)",
    )
    p.add_argument(
        "--fee-coordinator",
        action="append",
        default=[],
        help="with --exchange-fee, at least once (at most 16): a key (hex or key file) whose exchange sessions take"
        " the fee and so may draw on the uplift fund - the edges' day-ahead coordinator is its session's lowest"
        " member key; also give it with --account (genesis fee_coordinators; any other opener's session opens"
        " at fee 0)",
    )
    p.add_argument(
        "--settle-by-both",
        action="store_true",
        help="a trade settles on what both parties state (genesis settle_by_both 1; needs --settle-interval-ms"
        " and an account with role dso; default: on the first party's settle, and the old genesis bytes)",
    )
    p.add_argument(
        "--sealed-statements",
        action="store_true",
        help="with --settle-by-both: each party commits to its settle statement before either reveals it, so"
        " neither can tailor its own to the other's (genesis sealed_statements 1)",
    )
    p.add_argument(
        "--seller-vouched",
        action="store_true",
        help="with --settle-by-both: statements that agree wait for the DSO's word on the seller's side, from its"
        " meter, until settle_wait_ms passed (genesis seller_vouched 1: a buyer's meter cannot show a P2P seller"
        " delivered)",
    )
    p.add_argument(
        "--close-on-clock",
        action="store_true",
        help="with --settle-by-both: no trade closes an interval before it starts plus --close-after-ms, nor a"
        " reopened one before its reopening plus that (genesis close_on_clock 1)",
    )
    p.add_argument(
        "--close-after-ms", type=int, help="with --close-on-clock: the bargaining window (default 0)"
    )
    p.add_argument(
        "--close-quiet-ms",
        type=int,
        help="with --close-on-clock: no trade closes an interval while its book (its start, a reopening, any"
        " offer, bid or move) changed within this many ms of block time, until the interval's end (genesis"
        " close_quiet_ms; at most --settle-interval-ms; a few block periods; default 0: no such rule)",
    )
    p.add_argument(
        "--max-rounds",
        type=int,
        help="the rounds one bargaining of an interval may take (2 to 1000; at least the MGMCs'"
        " market.max_rounds): an offer, bid or move past its opening's or reopening's round plus this is"
        " refused, on any chain; with --close-quiet-ms one key thus cannot hold a quiet close to the interval's"
        " end (genesis max_rounds; default: no cap)",
    )
    p.add_argument(
        "--unpaid-as-debt",
        action="store_true",
        help="with --settle-by-both: what a buyer cannot pay of an agreed trade within its credit becomes its debt"
        " to the seller (genesis unpaid_as_debt 1)",
    )
    p.add_argument(
        "--settle-tolerance-permille",
        type=int,
        help="with --settle-by-both: the statements' agreement tolerance is at most this share of the trade"
        " (per mille; default 0: the Wh tolerance alone)",
    )
    p.add_argument(
        "--owed-limit",
        type=int,
        help="with --settle-by-both: micro-units a member may owe and still buy (default 0: any debt bars it)",
    )
    p.add_argument(
        "--settle-tolerance-wh",
        type=int,
        help="with --settle-by-both: Wh the two statements may differ by and agree (default 0)",
    )
    p.add_argument(
        "--settle-wait-ms",
        type=int,
        help="with --settle-by-both: how long after the first statement the other party may state"
        " (default 3600000)",
    )
    p.add_argument(
        "--settle-interval-ms",
        type=int,
        help="with --settle-by-both (required there): the market interval's length; nobody settles a trade of"
        " interval k before epoch + (k + 1) * interval (block time, ms)",
    )
    p.add_argument(
        "--settle-epoch-ms",
        type=int,
        help="with --settle-interval-ms: when interval 0 starts (ms since 1970, default 0)",
    )
    p.add_argument("--out", default="-", help="genesis JSON file (default stdout)")
    p.add_argument("--db", help="also create a store holding this genesis")
    p.set_defaults(func=cmd_genesis)

"""Genesis: the chain id, first authorities, known accounts, enabled contracts and limits of one chain.

Promises: a `Genesis` has one canonical encoding and hash (`digest("genesis", chain, bytes)`); `initial_writes`
is the state before block 1; JSON (`to_json`/`from_json`) is for people and tools and maps one-to-one onto the
canonical form (byte strings as hex). Validation errors raise `GenesisError` with one line. Pure; no I/O.
`fee_coordinators` (with `params.exchange_fee` > 0 only, then required): the keys whose exchange sessions take the
genesis fee and so may draw on the uplift fund (`contracts/market_fee.sanctioned`) until the DSO posts a
`market.fee`; encoded only when named, so every genesis without a fee keeps its bytes and hash.
Contracts are named here and resolved to modules shipped with this package; code never comes from the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import keyspace as ks
from .codec import DecodeError, EncodeError, decode, encode
from .contracts import CONTRACTS
from .contracts.market import RULES_SHAPE
from .contracts.market_fee import MAX_COORDINATORS
from .genesis_params import LATE_PARAMS, GenesisError, Params
from .hashing import GENESIS, digest
from .results import RuleError
from .schema import check
from .state import StateTree

__all__ = ["MAX_GENESIS_BYTES", "Account", "Genesis", "GenesisError", "Params"]  # Params: genesis_params.py

MAX_GENESIS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Account:
    key: bytes
    roles: tuple[str, ...]
    label: str = ""
    balance: int = 0
    authorised: bool = True
    rules: dict[str, Any] | None = None  # market rules (see contracts.market.RULES_SHAPE), if preset


@dataclass(frozen=True)  # no slots: the encoding and hash are computed once (cached_property)
class Genesis:
    chain: str
    time: int
    authorities: tuple[bytes, ...]
    accounts: tuple[Account, ...] = ()
    contracts: tuple[str, ...] = ("market", "auction")
    params: Params = field(default_factory=Params)
    # the openers whose sessions the genesis' exchange fee reaches (module contract); () without a fee
    fee_coordinators: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not self.chain or len(self.chain) > 64:
            raise GenesisError("chain: 1 to 64 characters")
        if not self.authorities:
            raise GenesisError("authorities: at least one is needed")
        if len(set(self.authorities)) != len(self.authorities):
            raise GenesisError("authorities: duplicate key")
        for key in self.authorities:
            if type(key) is not bytes or len(key) != 32:
                raise GenesisError("authorities: each is a 32-byte public key")
        seen: set[bytes] = set()
        for acct in self.accounts:
            if type(acct.key) is not bytes or len(acct.key) != 32:
                raise GenesisError("accounts: each key is a 32-byte public key")
            if acct.key in seen:
                raise GenesisError(f"accounts: duplicate key {acct.key.hex()}")
            seen.add(acct.key)
            bad = sorted(set(acct.roles) - ks.ROLES)
            if bad:
                raise GenesisError(f"accounts: unknown roles {bad}")
            if type(acct.balance) is not int or not -(2**63) <= acct.balance < 2**63:
                raise GenesisError(f"accounts: balance of {acct.key.hex()[:16]}… is not a 64-bit integer")
            if type(acct.label) is not str or len(acct.label) > 64 or type(acct.authorised) is not bool:
                raise GenesisError(f"accounts: label or authorised of {acct.key.hex()[:16]}… is malformed")
            if acct.rules is not None:
                try:
                    check(RULES_SHAPE, acct.rules, "rules")
                except RuleError as exc:
                    raise GenesisError(f"accounts: {exc.detail}") from None
        if self.params.settle_by_both and not any(ks.ROLE_DSO in a.roles for a in self.accounts):
            # only the DSO settles a dispute (market_closing.settle): without one it would stay unpaid
            raise GenesisError("params.settle_by_both: needs an account with role dso (it settles disputes)")
        if self.params.anonyms_only and not any(
            ks.ROLE_ANONYM in a.roles or ks.ROLE_DSO in a.roles for a in self.accounts
        ):
            # only an anonym trades there, and only the DSO enrols one: without either nobody ever could
            raise GenesisError(
                "params.anonyms_only: needs an account with role anonym, or one with role dso to enrol one"
            )
        if self.params.exchange_fee and not {"exchange", "uplift"} <= set(self.contracts):
            # the fee is charged by the uplift contract on exchange sessions: elsewhere nothing would collect it
            raise GenesisError("params.exchange_fee: needs the exchange and uplift contracts")
        self._check_fee_coordinators(seen)
        unknown = sorted(set(self.contracts) - set(CONTRACTS))
        if unknown:
            raise GenesisError(f"contracts: unknown contract modules {unknown}")
        try:
            self.encode()
        except EncodeError as exc:
            raise GenesisError(f"genesis: a value has no canonical encoding ({exc})") from None

    def _check_fee_coordinators(self, accounts: set[bytes]) -> None:
        """A fee needs 1 … MAX_COORDINATORS distinct account keys to open the sessions it reaches; none
        without one (review26 R26-1: a fee any key's session took let a sham session drain the fund)."""
        named = self.fee_coordinators
        if not self.params.exchange_fee:
            if named:
                raise GenesisError("fee_coordinators: only with params.exchange_fee > 0")
            return
        if not 1 <= len(named) <= MAX_COORDINATORS:
            raise GenesisError(
                f"fee_coordinators: params.exchange_fee needs 1 to {MAX_COORDINATORS} keys whose sessions "
                "take the fee (an edge's day-ahead coordinator is its session's lowest member key)"
            )
        if len(set(named)) != len(named):
            raise GenesisError("fee_coordinators: duplicate key")
        for key in named:
            if type(key) is not bytes or key not in accounts:
                raise GenesisError("fee_coordinators: each is the key of one of the genesis' accounts")

    # -- canonical form
    def to_value(self) -> dict[str, Any]:
        named = {"fee_coordinators": sorted(self.fee_coordinators)} if self.fee_coordinators else {}
        return {
            "accounts": [
                {
                    "authorised": a.authorised,
                    "balance": a.balance,
                    "key": a.key,
                    "label": a.label,
                    "roles": sorted(a.roles),
                    "rules": a.rules,
                }
                for a in self.accounts
            ],
            "authorities": list(self.authorities),
            "chain": self.chain,
            "contracts": sorted(self.contracts),
            **named,
            "params": self.params.to_value(),
            "time": self.time,
        }

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return encode(self.to_value())

    @cached_property
    def hash(self) -> bytes:
        return digest(GENESIS, self.chain, self._encoded)

    @staticmethod
    def from_value(value: Any) -> Genesis:
        try:
            accounts = tuple(
                Account(
                    key=a["key"],
                    roles=tuple(a["roles"]),
                    label=a["label"],
                    balance=a["balance"],
                    authorised=a["authorised"],
                    rules=a["rules"],
                )
                for a in value["accounts"]
            )
            return Genesis(
                chain=value["chain"],
                time=value["time"],
                authorities=tuple(value["authorities"]),
                accounts=accounts,
                contracts=tuple(value["contracts"]),
                params=Params.from_value(value["params"]),
                fee_coordinators=tuple(value.get("fee_coordinators", ())),
            )
        except (KeyError, TypeError) as exc:
            raise GenesisError(f"genesis: malformed ({exc})") from None

    @staticmethod
    def decode(raw: bytes) -> Genesis:
        try:
            value = decode(raw, MAX_GENESIS_BYTES)
        except DecodeError as exc:
            raise GenesisError(f"genesis: {exc}") from None
        genesis = Genesis.from_value(value)
        if genesis.encode() != raw:
            raise GenesisError("genesis: not in canonical form")
        return genesis

    # -- JSON for people
    def to_json(self) -> dict[str, Any]:
        value = self.to_value()
        value["authorities"] = [k.hex() for k in self.authorities]
        if self.fee_coordinators:
            value["fee_coordinators"] = [k.hex() for k in sorted(self.fee_coordinators)]
        for acct in value["accounts"]:
            acct["key"] = acct["key"].hex()
        return value

    @staticmethod
    def from_json(doc: Any) -> Genesis:
        try:
            doc = dict(doc)
            doc["authorities"] = [bytes.fromhex(k) for k in doc["authorities"]]
            if "fee_coordinators" in doc:
                doc["fee_coordinators"] = [bytes.fromhex(k) for k in doc["fee_coordinators"]]
            accounts = []
            for acct in doc.get("accounts", []):
                acct = {"authorised": True, "balance": 0, "label": "", "rules": None, **acct}
                acct["key"] = bytes.fromhex(acct["key"])
                accounts.append(acct)
            doc["accounts"] = accounts
            doc.setdefault("contracts", ["auction", "market"])
            doc.setdefault("params", {})
            defaults = Params()  # people may spell out a late parameter's default; its encoding omits it
            doc["params"] = {
                k: v
                for k, v in dict(doc["params"]).items()
                if not (k in LATE_PARAMS and v == getattr(defaults, k, None))
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise GenesisError(f"genesis: malformed JSON ({exc})") from None
        return Genesis.from_value(doc)

    # -- the state before block 1
    def account_records(self) -> dict[bytes, ks.AccountRecord]:
        records: dict[bytes, ks.AccountRecord] = {}
        for acct in self.accounts:
            records[acct.key] = ks.AccountRecord(frozenset(acct.roles), acct.authorised, acct.label)
        for key in self.authorities:
            old = records.get(key, ks.AccountRecord(frozenset()))
            records[key] = ks.AccountRecord(old.roles | {ks.ROLE_AUTHORITY}, old.authorised, old.label)
        return records

    def initial_writes(self) -> dict[bytes, bytes | None]:
        writes: dict[bytes, bytes | None] = {}
        for key, record in self.account_records().items():
            writes[ks.account(key)] = record.encode()
        for acct in self.accounts:
            if acct.balance:
                writes[ks.balance(acct.key)] = ks.encode_int(acct.balance)
        writes[ks.AUTHSET] = encode([[1, sorted(self.authorities)]])
        for name in sorted(self.contracts):
            writes.update(CONTRACTS[name].genesis_writes(self))
        return writes

    def initial_state(self) -> StateTree:
        return StateTree(self.chain, {k: v for k, v in self.initial_writes().items() if v is not None})

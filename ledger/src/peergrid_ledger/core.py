"""Transaction kinds built into every chain: governance, enrolment, data and DSO records, evidence.

Each handler reads and writes through the overlay it is given and rejects by raising `RuleError` (via
`require`). Who may do what: governance, enrolment, authorisation, revocation, adjustment contracts,
switching and operator records need the `dso` role; data commitments, schedule contracts and equivalent
injections need an authorised participant (`mgmc` or `anonym`); evidence may come from any known key.
Switching records: a plan, then each executed step (`switching_step`, in order), then the result.
`gov.revoke` is final: the key leaves the authority set (from the next height, like every governance
change), is deauthorised, and every later transaction it signs is refused (`machine.apply`); a revoked key
is never enrolled or authorised again. Enrolment, revocation and `operator_action` name the operator (a
console user name or a user's key id) who decided them. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from . import keyspace as ks
from .codec import encode
from .hashing import CIPHERTEXT, digest
from .machine import BlockContext, KindSpec, require, require_participant, require_role
from .results import Event, Reason
from .schema import HASH, INTERVAL, KEY, LABEL, POWER, SIG, Bool, Bytes, Int, List, Map, OneOf, Shape, Str
from .state import Overlay, StateReader, read_obj
from .tx import Tx
from .votes import STEPS, vote_ok

MAX_CIPHERTEXT = 16 * 1024


# ---------------------------------------------------------------------------------------------- authorities


def authority_history(state: StateReader) -> list[tuple[int, list[bytes]]]:
    value = read_obj(state, ks.AUTHSET)
    return [(int(h), list(keys)) for h, keys in value] if value else []


def authorities_at(state: StateReader, height: int) -> list[bytes]:
    """The authority set (sorted public keys) that governs block `height`, as recorded in `state`."""
    current: list[bytes] = []
    for effective, keys in authority_history(state):
        if effective <= height:
            current = keys
    return current


def _change_authorities(view: Overlay, ctx: BlockContext, new_set: list[bytes]) -> None:
    history = authority_history(view)
    effective = ctx.height + ctx.genesis.params.authority_change_delay
    history = [(h, keys) for h, keys in history if h < effective]
    history.append((effective, sorted(new_set)))
    view.put_obj(ks.AUTHSET, [[h, keys] for h, keys in history])


def _latest_set(view: Overlay) -> list[bytes]:
    history = authority_history(view)
    return history[-1][1] if history else []


def _set_roles(
    view: Overlay, key: bytes, add: AbstractSet[str] = frozenset(), drop: AbstractSet[str] = frozenset()
) -> None:
    raw = view.get(ks.account(key))
    old = ks.AccountRecord.decode(raw) if raw is not None else ks.AccountRecord(frozenset())
    view.put(ks.account(key), ks.AccountRecord((old.roles | add) - drop, old.authorised, old.label).encode())


def add_authority(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    key = tx.body["key"]
    current = _latest_set(view)
    require(key not in current, Reason.DUPLICATE, "already an authority")
    _not_revoked(view, key, "new authority's")
    _change_authorities(view, ctx, [*current, key])
    _set_roles(view, key, add={ks.ROLE_AUTHORITY})
    return [("authority-added", {"key": key})]


def remove_authority(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    key = tx.body["key"]
    current = _latest_set(view)
    require(key in current, Reason.NOT_FOUND, "not an authority")
    require(len(current) > 1, Reason.INVALID, "cannot remove the last authority")
    _change_authorities(view, ctx, [k for k in current if k != key])
    _set_roles(view, key, drop={ks.ROLE_AUTHORITY})
    return [("authority-removed", {"key": key})]


def rotate_authority(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    old, new = tx.body["old"], tx.body["new"]
    current = _latest_set(view)
    require(old in current, Reason.NOT_FOUND, "old key is not an authority")
    require(new not in current, Reason.DUPLICATE, "new key is already an authority")
    _not_revoked(view, new, "new authority's")
    _change_authorities(view, ctx, [new if k == old else k for k in current])
    _set_roles(view, old, drop={ks.ROLE_AUTHORITY})
    _set_roles(view, new, add={ks.ROLE_AUTHORITY})
    return [("authority-rotated", {"old": old, "new": new})]


def revoke(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """Take a key out for good: out of the authority set (if in it), deauthorised, its later transactions
    refused. The DSO cannot revoke itself (that would leave nobody to govern)."""
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    key = tx.body["key"]
    require(key != tx.sender, Reason.INVALID, "the DSO cannot revoke its own key")
    raw = view.get(ks.account(key))
    require(raw is not None, Reason.NOT_FOUND, "no such account")
    require(view.get(ks.revoked(key)) is None, Reason.DUPLICATE, "key already revoked")
    current = _latest_set(view)
    if key in current:
        require(len(current) > 1, Reason.INVALID, "cannot revoke the last authority")
        _change_authorities(view, ctx, [k for k in current if k != key])
    assert raw is not None
    old = ks.AccountRecord.decode(raw)
    view.put(ks.account(key), ks.AccountRecord(old.roles - {ks.ROLE_AUTHORITY}, False, old.label).encode())
    view.put_obj(ks.revoked(key), {"height": ctx.height, "operator": tx.body["operator"], "txid": tx.txid})
    effective = ctx.height + ctx.genesis.params.authority_change_delay
    return [("revoked", {"key": key, "operator": tx.body["operator"], "effective": effective})]


def is_revoked(state: StateReader, key: bytes) -> bool:
    return state.get(ks.revoked(key)) is not None


def _not_revoked(view: Overlay, key: bytes, what: str) -> None:
    require(not is_revoked(view, key), Reason.FORBIDDEN, f"the {what} key was revoked; enrol a new key")


# ---------------------------------------------------------------------------------------------- enrolment


def enrol(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    mgmc, anonym, label = tx.body["mgmc"], tx.body["anonym"], tx.body["label"]
    require(mgmc != anonym, Reason.INVALID, "the anonym must differ from the MGMC's identity key")
    _not_revoked(view, mgmc, "MGMC")
    _not_revoked(view, anonym, "anonym")
    require(view.get(ks.account(anonym)) is None, Reason.DUPLICATE, "anonym already known")
    raw = view.get(ks.account(mgmc))
    old = ks.AccountRecord.decode(raw) if raw is not None else ks.AccountRecord(frozenset())
    view.put(ks.account(mgmc), ks.AccountRecord(old.roles | {ks.ROLE_MGMC}, True, label).encode())
    view.put(ks.account(anonym), ks.AccountRecord(frozenset({ks.ROLE_ANONYM}), True, "").encode())
    return [("enrolled", {"mgmc": mgmc, "anonym": anonym, **_operator_of(tx)})]


def authorise(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    key = tx.body["key"]
    raw = view.get(ks.account(key))
    require(raw is not None, Reason.NOT_FOUND, "no such account")
    assert raw is not None
    old = ks.AccountRecord.decode(raw)
    require(bool(old.roles & ks.PARTICIPANT_ROLES), Reason.INVALID, "only participants are authorised")
    if tx.body["authorised"]:
        _not_revoked(view, key, "participant's")
    view.put(ks.account(key), ks.AccountRecord(old.roles, tx.body["authorised"], old.label).encode())
    return [("authorised" if tx.body["authorised"] else "deauthorised", {"key": key, **_operator_of(tx)})]


# ---------------------------------------------------------------------------------------------- MGMC records


def der_commitment(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    key = ks.der_commitment(tx.sender, tx.body["interval"])
    require(view.get(key) is None, Reason.DUPLICATE, "this interval's data is already committed")
    view.put_obj(key, {"readings": tx.body["readings"], "root": tx.body["root"], "txid": tx.txid})


def schedule_contract(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    body = tx.body
    require(len(body["setpoints"]) > 0, Reason.INVALID, "a schedule needs at least one setpoint")
    key = ks.schedule_contract(tx.sender, body["interval"], body["der"])
    require(view.get(key) is None, Reason.DUPLICATE, "schedule for this DER and interval already recorded")
    view.put_obj(key, {"setpoints": body["setpoints"], "step_s": body["step_s"], "txid": tx.txid})


def equivalent_injection(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_participant(sender, tx.kind)
    key = ks.injection(tx.sender, tx.body["interval"])
    previous = read_obj(view, key)
    if previous is not None:
        require(tx.body["revision"] > previous["revision"], Reason.DUPLICATE, "revision must increase")
    view.put_obj(key, {"injection": tx.body["injection"], "revision": tx.body["revision"], "txid": tx.txid})


# ---------------------------------------------------------------------------------------------- DSO records


def adjustment_contract(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    to, interval, ciphertext = tx.body["to"], tx.body["interval"], tx.body["ciphertext"]
    require(view.get(ks.account(to)) is not None, Reason.NOT_FOUND, "addressee is not known")
    require(len(ciphertext) >= 48, Reason.INVALID, "too short to be a sealed box")
    ct_hash = digest(CIPHERTEXT, ctx.chain, ciphertext)
    view.put_obj(
        ks.adjustment(to, interval, tx.txid),
        {"ciphertext": ciphertext, "dso": tx.sender, "hash": ct_hash, "interval": interval, "to": to},
    )
    index_key = ks.adjustment_index(to, interval)
    index = read_obj(view, index_key) or []
    view.put_obj(index_key, [*index, tx.txid])
    return [("adjustment-contract", {"to": to, "interval": interval, "hash": ct_hash})]


def switching_plan(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> None:
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    key = ks.switching_plan(tx.body["plan"])
    require(view.get(key) is None, Reason.DUPLICATE, "plan id already used")
    switches = [a["switch"] for a in tx.body["actions"]]
    require(len(set(switches)) == len(switches), Reason.INVALID, "a switch appears twice in the plan")
    require(bool(switches), Reason.INVALID, "a plan needs at least one action")
    view.put_obj(key, {"actions": tx.body["actions"], "interval": tx.body["interval"], "result": None})


def _open_plan(view: Overlay, tx: Tx, sender: ks.AccountRecord) -> tuple[bytes, dict[str, Any]]:
    """The DSO's switching plan `tx` names, still waiting for its result: (state key, plan)."""
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    key = ks.switching_plan(tx.body["plan"])
    plan = read_obj(view, key)
    require(plan is not None, Reason.NOT_FOUND, "no such switching plan")
    require(plan["result"] is None, Reason.CLOSED, "plan already has its result")
    return key, plan


def switching_result(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    key, plan = _open_plan(view, tx, sender)
    planned = sorted(a["switch"] for a in plan["actions"])
    reported = sorted(r["switch"] for r in tx.body["results"])
    require(planned == reported, Reason.INVALID, "results must name exactly the plan's switches")
    plan["result"] = {"results": tx.body["results"], "txid": tx.txid}
    view.put_obj(key, plan)
    failed = [r["switch"] for r in tx.body["results"] if not r["ok"]]
    return [("switching-result", {"plan": tx.body["plan"], "failed": failed})]


def switching_step(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """One executed relay operation of a plan (rollbacks included), in order, before the plan's result."""
    key, plan = _open_plan(view, tx, sender)
    require(
        tx.body["switch"] in {a["switch"] for a in plan["actions"]}, Reason.INVALID, "switch not in the plan"
    )
    steps = plan.get("steps", [])
    require(tx.body["step"] == len(steps), Reason.INVALID, f"expected step {len(steps)}")
    plan["steps"] = [*steps, {**tx.body, "txid": tx.txid}]
    view.put_obj(key, plan)
    return [("switching-step", {"plan": tx.body["plan"], "step": tx.body["step"], "ok": tx.body["ok"]})]


def _operator_of(tx: Tx) -> dict[str, Any]:
    return {"operator": tx.body["operator"]} if "operator" in tx.body else {}


def operator_action(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    """Who did what at the DSO's console: the operator, the action, and the transactions it caused (which
    the DSO submits before this record, normally into the same block). The block is the record."""
    require_role(sender, {ks.ROLE_DSO}, tx.kind)
    body = tx.body
    require(len(set(body["txs"])) == len(body["txs"]), Reason.INVALID, "a transaction is named twice")
    return [("operator-action", {"operator": body["operator"], "action": body["action"], "txs": body["txs"]})]


# ---------------------------------------------------------------------------------------------- evidence


def equivocation_evidence(view: Overlay, tx: Tx, ctx: BlockContext, sender: ks.AccountRecord) -> list[Event]:
    body: dict[str, Any] = tx.body
    signer, height, round_, step = body["signer"], body["height"], body["round"], body["step"]
    first, second = body["first"], body["second"]
    require(step in STEPS, Reason.INVALID_EVIDENCE, f"unknown step {step!r}")
    require(first["block"] != second["block"], Reason.INVALID_EVIDENCE, "both votes are for the same block")
    require(height <= ctx.height, Reason.INVALID_EVIDENCE, "evidence from the future")
    require(
        signer in authorities_at(view, height), Reason.INVALID_EVIDENCE, "signer was not an authority then"
    )
    for vote in (first, second):
        ok = vote_ok(ctx.chain, height, round_, step, vote["block"], signer, vote["sig"])
        require(ok, Reason.INVALID_EVIDENCE, "a vote signature does not verify")
    key = ks.evidence(signer, height, round_, step)
    require(view.get(key) is None, Reason.DUPLICATE, "evidence already recorded")
    view.put(
        key, encode({"first": first, "recorded_at": ctx.height, "reporter": tx.sender, "second": second})
    )
    return [("equivocation", {"signer": signer, "height": height, "round": round_, "step": step})]


VOTE_SHAPE = Map({"block": HASH, "sig": SIG})
OPERATOR = LABEL  # a console user name, or a user's key id (hex)
MAX_ACTION_TXS = 256


def _with_operator(fields: dict[str, Shape]) -> OneOf:
    """A body as it was, or with the operator who decided it (both stay valid: older records still apply)."""
    return OneOf((Map(fields), Map({**fields, "operator": OPERATOR})))


KINDS: dict[str, KindSpec] = {
    "gov.add_authority": KindSpec(Map({"key": KEY}), add_authority),
    "gov.remove_authority": KindSpec(Map({"key": KEY}), remove_authority),
    "gov.rotate_authority": KindSpec(Map({"old": KEY, "new": KEY}), rotate_authority),
    "gov.revoke": KindSpec(Map({"key": KEY, "operator": OPERATOR}), revoke),
    "enrol": KindSpec(_with_operator({"mgmc": KEY, "anonym": KEY, "label": LABEL}), enrol),
    "authorise": KindSpec(_with_operator({"key": KEY, "authorised": Bool()}), authorise),
    "operator_action": KindSpec(
        Map({"operator": OPERATOR, "action": Str(128), "txs": List(HASH, MAX_ACTION_TXS)}), operator_action
    ),
    "der_commitment": KindSpec(
        Map({"interval": INTERVAL, "root": HASH, "readings": Int(0, 10**6)}), der_commitment
    ),
    "schedule_contract": KindSpec(
        Map({"interval": INTERVAL, "der": LABEL, "setpoints": List(POWER, 2880), "step_s": Int(1, 86_400)}),
        schedule_contract,
    ),
    "equivalent_injection": KindSpec(
        Map({"interval": INTERVAL, "injection": POWER, "revision": Int(0, 10**6)}), equivalent_injection
    ),
    "adjustment_contract": KindSpec(
        Map({"interval": INTERVAL, "to": KEY, "ciphertext": Bytes(max_size=MAX_CIPHERTEXT)}),
        adjustment_contract,
    ),
    "switching_plan": KindSpec(
        Map({"plan": LABEL, "interval": INTERVAL, "actions": List(Map({"switch": LABEL, "close": Bool()}))}),
        switching_plan,
    ),
    "switching_result": KindSpec(
        Map({"plan": LABEL, "results": List(Map({"switch": LABEL, "closed": Bool(), "ok": Bool()}))}),
        switching_result,
    ),
    "switching_step": KindSpec(
        Map(
            {
                "plan": LABEL,
                "step": Int(0, 10_000),
                "switch": LABEL,
                "close": Bool(),
                "ok": Bool(),
                "rollback": Bool(),
                "status": Str(16),  # read-back: closed, open, operating, unknown
                "at_ms": Int(0, 2**53),  # the DSO's wall clock; a record, not trusted time
                "detail": Str(256, 0),
            }
        ),
        switching_step,
    ),
    "evidence": KindSpec(
        Map(
            {
                "signer": KEY,
                "height": Int(1),
                "round": Int(0, 2**32),
                "step": Str(16),
                "first": VOTE_SHAPE,
                "second": VOTE_SHAPE,
            }
        ),
        equivocation_evidence,
    ),
}

"""DER data commitments, pure: readings become canonical leaves, an interval's leaves become one Merkle root.

Promises: `reading_leaf` encodes one good reading as the ledger's canonical bytes (integers only: quantities in
milli-units, time in ms), so the same reading always gives the same leaf on any machine; a PCC meter that signs
its readings (`meter_signed`) has its signed reading carried whole in the leaf's `signed` field (or, where its
block did not hold one, `unsigned`: why), beside the fields every leaf has, so old leaves decode as before and
a leaf without a signed reading is byte for byte what it was; a leaf of a device whose counters never roll
over (`counters_roll`: an MQTT driver's) says so, `rolls: false` (`counter_roll.ROLLS`, L2), so that metering
reads its counter going back as a reset, never a roll-over; a Modbus device's (acc32 counters, which roll)
carries no such field and is byte for byte what it was; `interval_of` buckets
wall-clock time into commitment intervals; `commitment_body` is the body of the ledger's `der_commitment`
transaction (`interval`, `root`, `readings`); `prove`/`check` give and check an RFC 6962 inclusion proof that
a third party verifies with only the committed root. No I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from peergrid_edge.meter_signed import Unsigned
from peergrid_ledger import merkle
from peergrid_ledger.codec import decode, encode
from peergrid_ledger.counter_roll import ROLLS
from peergrid_ledger.meter_signing import FIELD, SignedReading, signed_field

DER_COMMITMENT = "der_commitment"
# each driver protocol (`config.DeviceSettings.protocol`) and whether its energy counters can roll over: SunSpec's
# over Modbus are acc32 (natures.yaml: 101-103 WH, 201-204 TotWhExp / TotWhImp) and roll at 2^32 counts; MQTT
# telemetry's are JSON numbers, which never roll
COUNTERS_ROLL = {"modbus-tcp": True, "modbus-rtu": True, "mqtt": False}


def counters_roll(protocol: str) -> bool:
    """Whether the energy counters of a device read over `protocol` can roll over (`COUNTERS_ROLL`); a protocol
    no driver speaks is a `ValueError`, never a guess either way."""
    try:
        return COUNTERS_ROLL[protocol]
    except KeyError:
        raise ValueError(
            f"no driver reads protocol {protocol!r}: whether its counters roll, unknown"
        ) from None


def interval_of(wall_s: float, interval_s: float) -> int:
    return math.floor(wall_s / interval_s)


def reading_leaf(
    device: str,
    nature: str,
    at_s: float,
    reading: Mapping[str, float | None],
    signed: SignedReading | Unsigned | None = None,
    *,
    rolls: bool = True,
) -> bytes:
    """One reading's leaf; `signed`: the meter's signed reading polled with it (`meter_signed.meter_signed`);
    `rolls`: whether the device's counters can roll over (`counters_roll`; False adds `rolls: false`)."""
    milli = {
        quantity: round(value * 1000)
        for quantity, value in sorted(reading.items())
        if value is not None and math.isfinite(value)
    }
    fields: dict[str, Any] = {"at_ms": round(at_s * 1000), "device": device, "milli": milli, "nature": nature}
    if isinstance(signed, SignedReading):
        fields[FIELD] = signed_field(signed)
    elif isinstance(signed, Unsigned):
        fields["unsigned"] = signed.why[:200]
    if not rolls:
        fields[ROLLS] = False
    return encode(fields)


def leaf_record(leaf: bytes) -> dict[str, Any]:
    """A leaf back as a dict with engineering units (for people and JSON proofs)."""
    fields = decode(leaf)
    assert isinstance(fields, dict)
    values = {k: v / 1000 for k, v in fields["milli"].items()}
    record = {
        "device": fields["device"],
        "nature": fields["nature"],
        "at": fields["at_ms"] / 1000,
        "values": values,
    }
    if isinstance(fields.get(FIELD), dict):
        record[FIELD] = {k: v.hex() if isinstance(v, bytes) else v for k, v in fields[FIELD].items()}
    if "unsigned" in fields:
        record["unsigned"] = fields["unsigned"]
    if ROLLS in fields:
        record[ROLLS] = fields[ROLLS]
    return record


def commitment_body(interval: int, leaves: Sequence[bytes]) -> dict[str, Any]:
    return {"interval": interval, "readings": len(leaves), "root": merkle.root(leaves)}


@dataclass(frozen=True)
class InclusionProof:
    interval: int
    index: int
    tree_size: int
    leaf: bytes
    path: tuple[bytes, ...]
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf": self.leaf.hex(),
            "path": [p.hex() for p in self.path],
            "root": self.root.hex(),
            "reading": leaf_record(self.leaf),
        }


def prove(interval: int, leaves: Sequence[bytes], index: int) -> InclusionProof:
    tree = merkle.MerkleTree(leaves)
    return InclusionProof(interval, index, tree.size, leaves[index], tuple(tree.proof(index)), tree.root)


def check(proof: InclusionProof, committed_root: bytes) -> bool:
    """True when the proof shows its leaf in the tree whose root the ledger committed."""
    return merkle.verify_inclusion(proof.leaf, proof.index, proof.tree_size, proof.path, committed_root)

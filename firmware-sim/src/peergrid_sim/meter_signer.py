"""The PCC meter's signing: its latest counters signed with the meter's own Ed25519 key (vendor model 64204).

Promises: `MeterSigner.readings(reported)` is the signed reading of what the meter reports now, as the reading
names the signed meter's map binds (`maps/meter_signed.yaml`): the meter's clock in ms, its export and import
counters in whole Wh (rounded as model 203's TotWhExp / TotWhImp with TotWh_SF 0 render them, so both blocks of
one render show the same counters), its id and the signature as hex (`peergrid_ledger.meter_signing`, the one
encoding the DSO verifies). The private key never leaves this object (no repr, no reading carries it).
When it signs: at every render of the image, which the device does lazily on the first read after physics
moved (`SunSpecDevice.sync`), so a meter signs at most once per read and never a reading nobody reads (Ed25519
signing costs ~22 us here, a render far more). The meter's clock is its own real-time clock (injected; the
wall clock by default, as a field meter keeps legal time), not the accelerated physics clock: the MGMC stamps
its readings with its own wall clock, and the DSO compares the two. A counter it cannot sign (a fault forcing
it negative, not finite or past uint64) leaves the whole block not implemented, never a signature over a
clipped value: the reading is then unsigned, and the DSO says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from peergrid_ledger.codec import UINT64_MAX
from peergrid_ledger.keys import Keypair
from peergrid_ledger.meter_signing import meter_keypair, sign_reading

SEED_PARAM = "key_seed"  # the scenario's meter param that makes a meter sign (an integer)
SIGNED_READINGS = ("signed_ms", "signed_export_wh", "signed_import_wh", "signed_meter", "signature")


@dataclass
class MeterSigner:
    keypair: Keypair = field(repr=False)
    meter: str  # the id it signs under: the device's serial number
    wall: Callable[[], float] = time.time  # the meter's real-time clock (s)

    @classmethod
    def from_seed(cls, seed: float, mg: str, meter: str, serial: str) -> MeterSigner:
        if seed != int(seed) or seed < 0:
            raise ValueError(f"{SEED_PARAM} must be a non-negative integer, got {seed!r}")
        return cls(meter_keypair(int(seed), mg, meter), serial)

    @property
    def public_key(self) -> bytes:
        return self.keypair.public

    def readings(self, reported: Mapping[str, Any]) -> dict[str, Any]:
        exported, imported = reported.get("export_wh"), reported.get("import_wh")
        if not (_signable(exported) and _signable(imported)):
            return dict.fromkeys(SIGNED_READINGS)  # not implemented: nothing signed
        export_wh, import_wh = round(exported), round(imported)
        at_ms = round(self.wall() * 1000)
        signed = sign_reading(self.keypair, self.meter, at_ms, export_wh, import_wh)
        return {
            "signed_ms": at_ms,
            "signed_export_wh": export_wh,
            "signed_import_wh": import_wh,
            "signed_meter": self.meter,
            "signature": signed.signature.hex(),
        }


def _signable(value: object) -> TypeGuard[float]:
    """A counter a meter can sign: a finite number that rounds into 0..2**64-1."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return 0 <= round(value) <= UINT64_MAX

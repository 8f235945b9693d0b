"""Emulated SunSpec devices: one physics model behind one register image, plus the faults put on it.

Promises: a `SunSpecDevice` answers Modbus holding-register reads and writes exactly as its image says,
applies accepted writes to its physics at once (so a read-back sees them), and re-renders its image from
physics on `refresh`. Coils, discrete inputs and input registers are ILLEGAL_FUNCTION on a SunSpec device.
A PCC meter given a `key_seed` param signs what it reports at each render (`meter_signer`, vendor model
64204 in `maps/meter_signed.yaml`): a render writes the whole image before any read is answered (one event
loop, no await between), so a read of the 64204 block never mixes one reading's values with another's
signature; without the param the meter's image is today's, byte for byte. Its lifetime energy counters start
where a device in service would have them (`lifetime`), unless the scenario presets them.
Assumes the runtime advances physics. Never touches sockets or clocks; faults are data read by the shells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import physics, physics_site
from .image import DEVICE_FAILURE, ILLEGAL_FUNCTION, ILLEGAL_VALUE, MapError, RegisterImage, load_map
from .lifetime import power_on_counters
from .meter_signer import SEED_PARAM, SIGNED_READINGS, MeterSigner
from .modbus import READ_HOLDING
from .scenario import device_params_problem

PHYSICS = {
    "pv": (physics.PvInverter, "pv_inverter"),
    "battery": (physics.Battery, "battery"),
    "genset": (physics_site.Genset, "genset"),
    "load": (physics_site.Load, "load"),
    "meter": (physics_site.PccMeter, "meter"),
}


@dataclass
class Faults:
    """Communication and behaviour faults; each is cleared by setting it back to its default."""

    no_response: bool = False
    delay_s: float = 0.0
    exception: int | None = None
    exception_function: int | None = None  # only requests with this function code get the exception
    bad_crc: bool = False
    down_until: float = 0.0  # monotonic seconds: rebooting until then
    relay_fail: str | None = None  # "no_operation" | "wrong_status"
    ignore_setpoints: bool = False  # writes are acknowledged and read back, but the device does not follow
    exception_model: int | None = None  # reads touching this SunSpec model's points get DEVICE_FAILURE (4)
    silent_model: int | None = None  # reads touching this SunSpec model's points get no answer (a timeout)
    silent_model_late_s: float = 0.0  # > 0: those reads are answered this many seconds late instead of never

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (False, 0.0, None)}


@dataclass
class SunSpecDevice:
    name: str
    mg: str
    kind: str
    unit_id: int
    model: Any  # a physics model
    image: RegisterImage
    faults: Faults = field(default_factory=Faults)
    stale: bool = False  # physics moved since the image was last rendered
    forced: dict[str, Any] = field(
        default_factory=dict
    )  # reading name -> value reported instead of the truth
    signer: MeterSigner | None = None  # a PCC meter that signs its readings (64204)

    @classmethod
    def create(cls, name: str, mg: str, kind: str, unit_id: int, params: dict[str, Any]) -> SunSpecDevice:
        model_cls, map_name = PHYSICS[kind]
        params = dict(params)
        seed = params.pop(SEED_PARAM, None)
        if seed is not None and kind != "meter":
            raise TypeError(f"only a PCC meter signs its readings ({SEED_PARAM} on a {kind})")
        problem = device_params_problem(kind, params)
        if problem is not None:  # e.g. a 0 W rating, which the register image would divide by
            raise TypeError(problem)  # the runtime names the device (`_build_mg`), as for the model's own
        model = model_cls(**params)
        serial = f"{mg}-{name}"
        # a device in service: its counters not at SunSpec's "not accumulated" 0
        for counter, wh in power_on_counters(kind, serial, model, preset=params).items():
            setattr(model, counter, wh)
        signer = None if seed is None else MeterSigner.from_seed(seed, mg, name, serial)
        if signer is not None:
            map_name = "meter_signed"
        identity = {
            "manufacturer": "peergrid",
            "model_name": f"sim-{kind}",
            "version": "0.1.0",
            "serial": serial,
            "unit_id": unit_id,
        }
        image = RegisterImage.build(load_map(map_name), identity, model.peaks())
        known = set(model.readings()) | (set(SIGNED_READINGS) if signer is not None else set())
        unknown = sorted({e.read for e in image.dynamic if e.read} - known)
        if unknown:
            raise MapError(
                f"device map {map_name}: no reading named {', '.join(unknown)} in the {kind} physics"
            )
        device = cls(name, mg, kind, unit_id, model, image, signer=signer)
        device.refresh()
        return device

    def refresh(self) -> None:
        self.image.refresh(self.reported_readings())
        self.stale = False

    def mark_stale(self) -> None:
        """Physics advanced: render lazily, on the next read, so a tick never stalls the servers."""
        self.stale = True

    def sync(self) -> None:
        if self.stale:
            self.refresh()

    def readings(self) -> dict[str, Any]:
        """The physical truth (for tests and the control API)."""
        return dict(self.model.readings())

    def reported_readings(self) -> dict[str, Any]:
        """What the device reports: the truth with any stuck or forced values laid over it; a signing meter
        signs that (a forced counter is signed too: the meter itself reports it)."""
        reported = {**self.model.readings(), **self.forced}
        if self.signer is not None:
            reported.update(self.signer.readings(reported))
        return reported

    def reboot(self) -> None:
        """Registers and settings back to power-on defaults (energy counters are non-volatile)."""
        self.model.reset_settings()
        self.image.reset_stored()
        self.image.clear_forced()
        self.forced.clear()
        self.refresh()

    # --- modbus.Target ---
    def read_bits(self, table: int, address: int, count: int) -> list[int] | int:
        return ILLEGAL_FUNCTION

    def read_registers(self, table: int, address: int, count: int) -> list[int] | int:
        if table != READ_HOLDING:
            return ILLEGAL_FUNCTION
        if self.faults.exception_model is not None and self._touches(
            self.faults.exception_model, address, count
        ):
            return DEVICE_FAILURE
        self.sync()
        return self.image.read(address, count)

    def silent_for(self, pdu: bytes) -> bool:
        """Whether the request `pdu` is a holding-register read touching `faults.silent_model`'s points (not its
        ID and L header: discovery still lists the model), which `server.answer` leaves unanswered."""
        model = self.faults.silent_model
        if model is None or len(pdu) < 5 or pdu[0] != READ_HOLDING:
            return False
        return self._touches(model, int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big"))

    def _touches(self, model_id: int, address: int, count: int) -> bool:
        """The read [address, address + count) overlaps model `model_id`'s points (not its ID and L header,
        which a client's discovery walks: the device still lists the model, and fails reading it)."""
        body = [
            e
            for e in self.image.entries
            if e.key.split(".")[0] == str(model_id) and e.point.name not in ("ID", "L")
        ]
        if not body:
            return False
        first, last = body[0].address, body[-1].address + body[-1].point.size - 1
        return address <= last and first < address + count

    def write_bits(self, address: int, values: list[int]) -> int | None:
        return ILLEGAL_FUNCTION

    def write_registers(self, address: int, values: list[int]) -> int | None:
        plan = self.image.plan_write(address, values)
        if isinstance(plan, int):
            return plan
        for change in plan:
            if change.setting is not None and self.model.check(change.setting, change.value) is not None:
                return ILLEGAL_VALUE
        for change in plan:
            if self.faults.ignore_setpoints and change.setting is not None:
                self.sync()
                self.image.force(change.key, change.value)  # the register shows it, the physics never sees it
            elif change.setting is None:
                self.image.apply_stored(change)
            else:
                self.model.apply(change.setting, change.value)
        self.refresh()
        return None

"""The network the DSO node's settings name: the feeder and the driver of its relays.

Promises: `build_feeder(settings)` is the feeder of `loop.case` (case33bw, or a MATPOWER file with `loop.ties`)
with the MGs' buses of `loop.mgs`; a `ConfigError` names the key that is wrong. `relay_driver` is the driver of
`loop.relays_file`'s relays (checked by `services.switching_relays.load_relays`), or relays in memory without
one. The node builds both as it is assembled (`dso_node`), and `live.preflight` / `check-config` build them
before the web server starts (`switching_relays.check_relays`), so the two never read the settings apart.
Split out of `interval_node` (which still names both); reads files, opens no connection.
"""

from __future__ import annotations

from typing import Any

from peergrid_dso.loop_settings import LoopSettings
from peergrid_ledger.settings import ConfigError


def build_feeder(settings: LoopSettings) -> Any:
    """The feeder of `settings.case` (+ `ties`) with the MGs' buses; a `ConfigError` naming the key that is
    wrong (`loop.case`, `loop.ties`, `loop.mgs`), also in `live.preflight`, before the web server starts."""
    from peergrid_dso.feeder.model import FeederDataError

    buses = {mg: entry.bus for mg, entry in settings.mgs.items()}
    key = "loop.case"
    try:
        if settings.case == "case33bw":
            from peergrid_dso.feeder.cases import case33bw

            feeder = case33bw()  # its ties are its own: `ties` is for a MATPOWER case, as before
        else:
            from peergrid_dso.feeder.cases import load_ties
            from peergrid_dso.feeder.matpower import load_matpower

            feeder = load_matpower(settings.case)
            if settings.ties is not None:
                key = "loop.ties"
                feeder = load_ties(feeder, settings.ties)
        key = "loop.mgs"
        return feeder.with_mg_buses(buses) if buses else feeder
    except FeederDataError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def relay_driver(settings: LoopSettings, feeder: Any) -> Any:
    """The relays of `relays_file` (checked: `services.switching_relays.load_relays`), or in memory."""
    from peergrid_dso.services.switching_relays import relay_driver as configured

    return configured(settings.relays_file, settings.relays_tls, feeder)

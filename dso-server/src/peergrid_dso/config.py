"""The DSO server's one typed config (rendered by Ansible; written by peergrid-testbed in the lab).

Without `loop:` the server is the lab console (an in-process DSO chain, relays in memory, a simulated
market). With `loop:` it IS the DSO of the closed loop: it runs the DSO node (`peergrid_dso.live`) on the
feeder's broker, and the console shows and operates that node's chain, relays and market.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from peergrid_dso.broker_tls import BrokerTls
from peergrid_dso.console.settings import ConsoleSettings
from peergrid_dso.loop_settings import LoopSettings
from peergrid_dso.services.health_listener import HealthListenerSettings
from peergrid_ledger.settings import BrokerTlsSettings, StrictSettings


class BrokerSettings(BrokerTlsSettings):
    """The feeder's broker, for the loop's DSO node and the health listener. TLS (the pilot), as on the
    edge: the feeder CA, and the DSO's client certificate whose CN the broker's ACLs use."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    # the reconnect back-off's bound (s) after a lost connection, for the health listener and the loop's DSO
    # node (`live_reconnect`), as the edge's `broker.reconnect_max_s`; unset: 2 s for both, the ledger
    # transport's (the listener's was the edge's 10 s, which made the console's 'back' late: C3)
    reconnect_max_s: float | None = Field(None, ge=1, le=600)

    def tls(self) -> BrokerTls | None:
        if self.ca_file is None:
            return None
        return BrokerTls(ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file)


class HttpSettings(StrictSettings):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # HTTPS (the pilot: the MGMCs' enrolment requests and the console cross the site's network): a certificate of
    # the operator's CA naming the address the MGMCs use (edge.yaml enrolment.url), and its key. Both or neither.
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both(self) -> HttpSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("http.cert_file and http.key_file go together (HTTPS needs both)")
        for path in (self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file")
        return self


class DsoSettings(StrictSettings):
    node_id: str = Field("dso", min_length=1)
    feeder: str = Field("feeder1", min_length=1)
    broker: BrokerSettings = BrokerSettings()
    http: HttpSettings = HttpSettings()
    console: ConsoleSettings = ConsoleSettings()
    # /api/health is not ok when the health listener heard nothing for `silent_after_s` (None: not judged)
    health_listener: HealthListenerSettings = HealthListenerSettings()
    loop: LoopSettings | None = None  # the closed loop's DSO node (key, chains, feeder case, MGs, relays)

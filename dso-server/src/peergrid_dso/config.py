"""The DSO server's one typed config (rendered by Ansible; written by peergrid-testbed in the lab)."""

from __future__ import annotations

from pydantic import Field

from peergrid_dso.console.settings import ConsoleSettings
from peergrid_ledger.settings import StrictSettings


class BrokerSettings(StrictSettings):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)


class HttpSettings(StrictSettings):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class DsoSettings(StrictSettings):
    node_id: str = Field("dso", min_length=1)
    feeder: str = Field("feeder1", min_length=1)
    broker: BrokerSettings = BrokerSettings()
    http: HttpSettings = HttpSettings()
    console: ConsoleSettings = ConsoleSettings()

"""The edge daemon's one typed config, rendered by Ansible to /etc/peergrid/edge.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from peergrid_ledger.settings import StrictSettings


class BrokerSettings(StrictSettings):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    keepalive_s: int = Field(30, ge=5)


class DeviceSettings(StrictSettings):
    name: str = Field(min_length=1)
    nature: Literal["pv", "battery", "genset", "load", "meter"]
    protocol: Literal["modbus-tcp"] = "modbus-tcp"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=247)
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(1.0, gt=0)


class EdgeSettings(StrictSettings):
    node_id: str = Field(min_length=1)
    mg: str = Field(min_length=1)
    feeder: str = Field("feeder1", min_length=1)
    broker: BrokerSettings = BrokerSettings()
    data_dir: Path = Path("/var/lib/peergrid")
    health_period_s: float = Field(1.0, gt=0)
    devices: list[DeviceSettings] = Field(default_factory=list)

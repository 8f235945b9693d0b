"""The console's part of the DSO config (`console:` in the DSO server's YAML)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from peergrid_ledger.settings import StrictSettings

# case33bw buses where the lab's six MGs connect (firmware-sim's ieee33 scenario).
LAB_MG_BUSES = {"mg1": 18, "mg2": 22, "mg3": 25, "mg4": 30, "mg5": 33, "mg6": 14}  # as scenarios/ieee33.yaml


class ConsoleSettings(StrictSettings):
    users_file: Path | None = None
    session_idle_s: float = Field(1800.0, gt=0)
    session_max_s: float = Field(12 * 3600.0, gt=0)
    secure_cookies: bool = False  # set true behind TLS (the pilot); the lab serves plain HTTP on loopback
    login_max_failures: int = Field(5, ge=1)
    mg_buses: dict[str, int] = Field(default_factory=lambda: dict(LAB_MG_BUSES))
    market_intervals: int = Field(8, ge=1, le=96)
    refresh_s: float = Field(1.0, gt=0)
    plans_kept: int = Field(20, ge=0)  # decided plans the Operations view keeps (PLANS_KEPT_DECIDED)
    # Require an operator session and CSRF token for the DSO REST API's operator actions (issuing enrolment
    # tokens, approving/revoking enrolments, creating/approving switching plans, running reconfiguration/OPF).
    # On unless a config turns it off: an unauthenticated switching approval must never be the default.
    guard_dso_api: bool = True
    lab_market: bool = True  # lab: simulate a day of bargaining on an MGMC chain for the market view
    lab_drift: bool = True  # lab: MG injections wobble so the live view moves; off for deterministic tests

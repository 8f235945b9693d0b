"""DSO services: power flow, reconfiguration, OPF/security loop, switching, enrolment (pure cores)."""

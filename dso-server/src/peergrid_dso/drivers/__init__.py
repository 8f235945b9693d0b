"""Field-device drivers used by the DSO services (relays over Modbus)."""

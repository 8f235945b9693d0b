"""peergrid firmware-sim: emulated SunSpec DERs, feeder relays and MQTT sensors driven by physics on a clock."""

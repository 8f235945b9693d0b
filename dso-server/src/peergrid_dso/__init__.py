"""peergrid DSO node: feeder model, reconfiguration and OPF, security loop, switching, REST API and console."""

"""peergrid MGMC daemon for the Raspberry Pi. Must never import pandapower, pandas or the web stack."""

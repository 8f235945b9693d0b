"""Consensus tests: engine, mempool, simulation, ledger adapter, transport, replica processes."""

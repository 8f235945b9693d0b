"""BFT proof-of-authority consensus for the ledger (QBFT / IBFT 2.0 style), sans I/O at its core.

`engine.Engine` decides blocks from events; `app.Application` is what it needs from a chain; `mempool`
holds pending transactions; `simulation` checks the engine under a seeded hostile network; the MQTT
transport, catch-up sync and the node runner are the I/O shells around it.
"""

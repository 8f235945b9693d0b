"""peergrid's permissioned proof-of-authority ledger, shared by every node (edge, DSO, tools)."""

"""Console users, password hashes, sessions, CSRF tokens and roles (viewer < operator < admin).

Promises: passwords are stored only as argon2id hashes (argon2-cffi); a session is an unguessable random
token held server-side with an idle and an absolute expiry; every state-changing request must carry the
session's CSRF token; roles are checked on the server, never trusted from the browser. Every refusal is
counted and logged by `SecurityLog`. Sessions (as hashes), the security log and the operators' audit trail
are kept in the console state file (`store.ConsoleDb`, SQLite beside the user file) across restarts.
I/O only through the user file, the state file and an injected clock.
"""

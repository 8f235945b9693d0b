"""Console users, password hashes, sessions, CSRF tokens and roles (viewer < operator < admin).

Promises: passwords are stored only as argon2id hashes (argon2-cffi); a session is an unguessable random
token held server-side with an idle and an absolute expiry; every state-changing request must carry the
session's CSRF token; roles are checked on the server, never trusted from the browser. Every refusal is
counted and logged by `SecurityLog`. Pure apart from the user file (`UserStore`) and an injected clock.
"""

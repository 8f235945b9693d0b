"""Users, password hashes, sessions, CSRF and the login throttle, with an injected clock; the user CLI;
sessions, the security log and the audit trail kept across a restart, and a damaged state file refused."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from console.helpers import PASSWORD, fast_hasher
from peergrid_dso.auth import cli as user_cli
from peergrid_dso.auth.security import SecurityLog
from peergrid_dso.auth.sessions import LoginThrottle, SessionStore, check_csrf
from peergrid_dso.auth.store import ConsoleDb, ConsoleStateError
from peergrid_dso.auth.users import User, UserError, UserStore
from peergrid_dso.cli import main as dso_main
from peergrid_dso.console.operations import Operations


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_passwords_are_stored_only_as_argon2id_hashes_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    UserStore(path, hasher=fast_hasher()).add("olga", "operator", PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text
    assert json.loads(text)["users"]["olga"]["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = UserStore(path, hasher=fast_hasher())
    assert again.authenticate("olga", PASSWORD) == User("olga", "operator")
    assert again.authenticate("olga", PASSWORD + "x") is None
    assert again.authenticate("nobody", PASSWORD) is None
    assert again.authenticate("olga", "x" * 10_000) is None


@pytest.mark.parametrize(
    ("name", "role", "password", "why"),
    [
        ("Olga", "operator", PASSWORD, "user name"),
        ("o", "operator", PASSWORD, "user name"),
        ("olga;rm", "operator", PASSWORD, "user name"),
        ("olga", "root", PASSWORD, "role"),
        ("olga", "operator", "short", "password"),
    ],
)
def test_bad_users_are_refused(tmp_path: Path, name: str, role: str, password: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        UserStore(tmp_path / "u.json", hasher=fast_hasher()).add(name, role, password)
    assert not (tmp_path / "u.json").exists()


def test_duplicates_need_replace_and_roles_rank(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.json", hasher=fast_hasher())
    store.add("olga", "viewer", PASSWORD)
    with pytest.raises(UserError, match="already exists"):
        store.add("olga", "admin", PASSWORD)
    assert store.add("olga", "admin", PASSWORD, replace=True).can("operator")
    assert not User("v", "viewer").can("operator") and User("o", "operator").can("viewer")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"type": "something-else", "users": {}}',
        '{"type": "peergrid-console-users-v1", "users": {"olga": {"role": "god", "hash": "$argon2id$x"}}}',
        '{"type": "peergrid-console-users-v1", "users": {"olga": {"role": "admin", "hash": "plain"}}}',
    ],
)
def test_a_malformed_user_file_is_refused_by_name(tmp_path: Path, content: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(UserError, match=str(path)):
        UserStore(path)


def test_sessions_expire_when_idle_or_old_and_end_at_logout() -> None:
    clock = Clock()
    store = SessionStore(idle_s=60, max_s=300, clock=clock)
    user = User("olga", "operator")
    s = store.create(user)
    assert len(s.sid) >= 43 and s.sid != s.csrf
    clock.now += 59
    assert store.get(s.sid) is s
    clock.now += 61
    assert store.get(s.sid) is None  # idle too long
    s2 = store.create(user)
    for _ in range(7):
        clock.now += 50
        store.get(s2.sid)
    assert store.get(s2.sid) is None  # older than max_s although used
    s3 = store.create(user)
    store.end(s3.sid)
    assert store.get(s3.sid) is None
    assert store.get(None) is None and store.get("x" * 500) is None


def test_csrf_tokens_must_match_exactly() -> None:
    s = SessionStore().create(User("olga", "operator"))
    assert check_csrf(s, s.csrf)
    other = s.csrf[:-1] + ("B" if s.csrf.endswith("A") else "A")  # one character off (the token may end in A)
    assert not check_csrf(s, None) and not check_csrf(s, "") and not check_csrf(s, other)


def test_login_throttle_blocks_after_failures_and_forgets_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert not throttle.blocked("user:olga")
        throttle.fail("user:olga", "client:1")
    assert throttle.blocked("user:olga") and throttle.blocked("client:1")
    clock.now += 61
    assert not throttle.blocked("user:olga")


def test_user_cli_adds_lists_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    users = tmp_path / "users.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        dso_main(["user", "--users", str(users), "add", "adam", "--role", "admin", "--password-stdin"]) == 0
    )
    assert user_cli.main(["--users", str(users), "list"]) == 0
    out = capsys.readouterr().out
    assert "adam\tadmin" in out and PASSWORD not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert user_cli.main(["--users", str(users), "add", "adam", "--role", "viewer", "--password-stdin"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert UserStore(users).authenticate("adam", PASSWORD) == User("adam", "admin")


def test_user_cli_reads_the_user_file_from_the_server_config(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "dso.yaml"
    config.write_text(f"console:\n  users_file: {tmp_path / 'u.json'}\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        user_cli.main(["--config", str(config), "add", "vera", "--role", "viewer", "--password-stdin"]) == 0
    )
    assert (tmp_path / "u.json").exists()
    config.write_text("console: {}\n")
    assert user_cli.main(["--config", str(config), "list"]) == 2
    assert "users_file is not set" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ durable state


def test_sessions_survive_a_restart_stored_only_as_hashes(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "console-state.sqlite"
    db = ConsoleDb.open(path)
    store = SessionStore(idle_s=60, max_s=300, clock=clock, db=db)
    olga, vera = store.create(User("olga", "operator")), store.create(User("vera", "viewer"))
    ended = store.create(User("olga", "operator"))
    store.end(ended.sid)
    db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (olga.sid, olga.csrf, vera.sid, ended.sid):
        assert secret.encode() not in raw  # neither ids nor CSRF tokens reach the disk
    clock.now += 30
    again = SessionStore(idle_s=60, max_s=300, clock=clock, db=ConsoleDb.open(path))  # the server restarted
    back = again.get(olga.sid)
    assert back is not None and back.user == User("olga", "operator") and back.csrf == olga.csrf
    assert check_csrf(back, olga.csrf)
    assert again.get(ended.sid) is None  # logged out before the restart: stays out
    assert again.get("not-a-session") is None
    clock.now += 61
    assert again.get(vera.sid) is None  # idle expiry counts across the restart
    again.end_user("olga")
    assert SessionStore(clock=clock, db=ConsoleDb.open(path)).get(olga.sid) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_security_log_and_audit_trail_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "console-state.sqlite"
    log = SecurityLog(db=ConsoleDb.open(path))
    log.refuse("forbidden", "POST /console/api/switch: needs role operator", user="vera", client="10.0.0.9")
    log.refuse("csrf", "missing or wrong CSRF token", user="olga")
    log.refuse("forbidden", "again", user="vera")
    ops = Operations(None, None, db=ConsoleDb.open(path))  # type: ignore[arg-type]
    entry = {"user": "olga", "action": "open branch 7", "txids": ["ab" * 32], "height": 3, "at": 1.5}
    ops.db.add_audit(entry["at"], entry)  # type: ignore[union-attr]
    restarted = SecurityLog(db=ConsoleDb.open(path))
    snap = restarted.snapshot()
    assert snap["counts"]["forbidden"] == 2 and snap["counts"]["csrf"] == 1 and snap["total"] == 3
    assert [(r["reason"], r["user"]) for r in snap["recent"]] == [
        ("forbidden", "vera"), ("csrf", "olga"), ("forbidden", "vera")]  # fmt: skip
    restarted.refuse("bad_login", "wrong user name or password", user="mallory")
    assert SecurityLog(db=ConsoleDb.open(path)).snapshot()["total"] == 4
    assert Operations(None, None, db=ConsoleDb.open(path)).audit == [entry]  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["garbage", "header", "foreign"])
def test_a_damaged_or_foreign_state_file_is_refused_by_name_and_left_untouched(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "console-state.sqlite"
    if damage == "foreign":
        other = sqlite3.connect(path)
        other.execute("CREATE TABLE readings (t REAL)")
        other.commit()
        other.close()
    else:
        log = SecurityLog(db=ConsoleDb.open(path))
        for i in range(50):
            log.refuse("forbidden", f"attempt {i}", user="vera")
        log.db.close()  # type: ignore[union-attr]
        data = bytearray(path.read_bytes())
        if damage == "garbage":
            data = bytearray(b"this is not a database " * 100)
        else:
            data[0:16] = b"X" * 16  # the SQLite header
        path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(ConsoleStateError) as err:
        ConsoleDb.open(path)
    message = str(err.value)
    assert str(path) in message and "left untouched" in message and "\n" not in message
    assert path.read_bytes() == before  # nothing overwritten, nothing lost


def test_a_logged_in_operator_stays_logged_in_across_a_server_restart(users_file: Path) -> None:
    from fastapi.testclient import TestClient

    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings

    settings = DsoSettings.model_validate(
        {"console": {"users_file": str(users_file), "lab_market": False, "lab_drift": False}}
    )
    base = "http://127.0.0.1:8080"
    with TestClient(create_app(settings, listen=False), base_url=base) as first:
        r = first.post("/console/api/login", json={"username": "olga", "password": PASSWORD})
        assert r.status_code == 200
        cookie, csrf = first.cookies.get("pg_session"), r.json()["csrf"]
        viewer = first.post("/console/api/login", json={"username": "vera", "password": PASSWORD}).json()
        first.post("/console/api/plans", headers={"X-CSRF-Token": viewer["csrf"]})  # refused: a viewer
    with TestClient(create_app(settings, listen=False), base_url=base) as second:
        second.cookies.set("pg_session", cookie)
        me = second.get("/console/api/session")
        assert me.status_code == 200 and me.json() == {"user": "olga", "role": "operator", "csrf": csrf}
        counts = second.app.state.console.security.snapshot()["counts"]  # type: ignore[attr-defined]
        assert counts["forbidden"] >= 1
        assert second.post("/console/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert second.get("/console/api/session").status_code == 401


def test_serve_refuses_a_damaged_state_file_in_one_line(tmp_path: Path, users_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    state = users_file.parent / "console-state.sqlite"
    state.write_bytes(b"not sqlite at all")
    config = tmp_path / "dso.yaml"
    config.write_text(f"console:\n  users_file: {users_file}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        dso_main(["serve", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(state) in err and "left untouched" in err
    assert state.read_bytes() == b"not sqlite at all"

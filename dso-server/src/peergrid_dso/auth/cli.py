"""`peergrid-dso user ...`: an admin manages console users in the user file (add, list, remove).

Promises: the password is read from stdin (`--password-stdin`, for scripts) or prompted twice without echo;
it never appears on the command line or in output. Exit status 0 on success, 2 on bad arguments, a bad
config or a refused user operation, with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from peergrid_dso.auth.users import ROLES, UserError, UserStore

PROGRAM = "peergrid-dso user"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="manage DSO console users")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--users", type=Path, help="the console user file")
    where.add_argument("--config", type=Path, help="the DSO server config (its console.users_file)")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create a user (or replace one with --replace)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--replace", action="store_true", help="overwrite an existing user (new password/role)")
    sub.add_parser("list", help="list users and roles")
    rm = sub.add_parser("remove", help="delete a user")
    rm.add_argument("name")
    return parser


def _users_file(args: argparse.Namespace) -> Path:
    if args.users is not None:
        return Path(args.users)
    from peergrid_dso.config import DsoSettings
    from peergrid_ledger.settings import ConfigError, load_settings

    try:
        settings = load_settings(args.config, DsoSettings)
    except ConfigError as err:
        raise UserError(str(err)) from None
    users_file = settings.console.users_file
    if users_file is None:
        raise UserError(f"{args.config}: console.users_file is not set")
    return Path(users_file)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = UserStore(_users_file(args))
        if args.action == "add":
            user = store.add(args.name, args.role, _password(args), replace=args.replace)
            print(f"user {user.name} ({user.role}) saved in {store.path}")
        elif args.action == "list":
            for user in store.users():
                print(f"{user.name}\t{user.role}")
        elif args.action == "remove":
            store.remove(args.name)
            print(f"user {args.name} removed")
    except UserError as err:
        print(f"{PROGRAM}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

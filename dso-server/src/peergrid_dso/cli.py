"""`peergrid-dso`: the DSO server's command line."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from peergrid_ledger.settings import ConfigError, exit_with_config_error, load_settings

PROGRAM = "peergrid-dso"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="peergrid DSO server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the DSO server (REST API and console)")
    serve.add_argument("--config", required=True, help="config file (YAML)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = sub.add_parser(
        "check-config",
        help="validate a config file and what its loop section names (key, geneses, tariff, feeder, relays), "
        "without the broker; exit 0 'ok', or 2 with one line",
    )
    check.add_argument("--config", required=True, help="config file (YAML)")
    from peergrid_dso.commands import reconfigure

    reconfigure.add_arguments(
        sub.add_parser("reconfigure", help="loss-minimising radial switch state of a feeder")
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    from peergrid_dso.auth.store import ConsoleDb, ConsoleStateError, console_db_path
    from peergrid_dso.config import DsoSettings

    try:
        settings = load_settings(args.config, DsoSettings)
        if (state_file := console_db_path(settings.console.users_file)) is not None:
            ConsoleDb.open(state_file).close()  # a damaged console state file: one line and exit 2, untouched
        from peergrid_dso.live import preflight  # the closed loop's key, geneses, relays file

        warnings = preflight(settings)
    except ConsoleStateError as err:
        exit_with_config_error(PROGRAM, ConfigError(str(err)))
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    say_warnings(warnings)
    import uvicorn

    from peergrid_dso.app import create_app

    uvicorn.run(
        create_app(settings), host=settings.http.host, port=settings.http.port, log_level=args.log_level
    )
    return 0


def check_config(args: argparse.Namespace) -> int:
    """What `serve` checks before it starts, less the broker (Ansible validates a rendered dso.yaml with it
    before it replaces the working one): the console state file too (`check_console_state`). Reads; never
    writes, creates or removes a file beside the config's."""
    from peergrid_dso.auth.store import console_db_path
    from peergrid_dso.config import DsoSettings
    from peergrid_dso.live import preflight

    try:
        settings = load_settings(args.config, DsoSettings)
        if (state_file := console_db_path(settings.console.users_file)) is not None:
            check_console_state(state_file)
        warnings = preflight(settings, broker=False)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    say_warnings(warnings)
    loop = settings.loop
    what = "no loop section" if loop is None else f"loop: {len(loop.mgs)} MGs on {loop.case}"
    counted = f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}" if warnings else ""
    print(f"{args.config}: ok ({what}{counted})")
    return 0


def check_console_state(path: Path) -> None:
    """`ConfigError` with `serve`'s own line (`ConsoleDb.open`'s verdict) when the console state file (the
    sessions, security log and operators' audit trail `serve` keeps in the DSO's data dir) is one `serve`
    would refuse: not SQLite, damaged, or not the console's. Judged on a copy in a temporary directory, the
    file and its write-ahead log as found: SQLite, even read-only, makes `-wal`/`-shm` files beside a WAL
    database, and `ConsoleDb.open` itself writes. Missing or empty is fine (`serve` makes it). A copy taken
    while a running server checkpoints may be torn: a refused copy is taken and judged once more."""
    from peergrid_dso.auth.store import ConsoleDb, ConsoleStateError

    if not path.exists() and not path.is_symlink():
        return
    wal = path.with_name(path.name + "-wal")
    refused = ""
    for _attempt in range(2 if wal.is_file() else 1):
        with tempfile.TemporaryDirectory(prefix="peergrid-dso-check-") as scratch:
            copy = Path(scratch) / path.name
            try:
                shutil.copyfile(path, copy)
                if wal.is_file():
                    shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            except OSError as exc:
                why = exc.strerror or exc
                raise ConfigError(f"{path}: cannot read the console state file: {why}") from None
            if copy.stat().st_size == 0:
                return
            try:
                ConsoleDb.open(copy).close()
                return
            except ConsoleStateError as err:
                refused = f"{path}{str(err).removeprefix(str(copy))}"
    raise ConfigError(refused)


def say_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"{PROGRAM}: WARNING: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["user"]:  # console users (add/list/remove): its own parser in peergrid_dso.auth.cli
        from peergrid_dso.auth.cli import main as user_main

        return user_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "check-config":
        return check_config(args)
    if args.command == "reconfigure":
        from peergrid_dso.commands import reconfigure

        return reconfigure.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

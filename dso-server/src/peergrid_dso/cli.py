"""`peergrid-dso`: the DSO server's command line: its arguments, and each command dispatched (`serve` here;
`check-config` in `check_config`, `reconfigure` in `commands.reconfigure`, `user` in `auth.cli`)."""

from __future__ import annotations

import argparse
import sys

from peergrid_dso.check_config import PROGRAM, check_config, say_warnings
from peergrid_ledger.settings import ConfigError, exit_with_config_error, load_settings


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["user"]:  # console users (add/list/remove): its own parser in peergrid_dso.auth.cli
        from peergrid_dso.auth.cli import main as user_main

        return user_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "reconfigure":
        from peergrid_dso.commands import reconfigure

        return reconfigure.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

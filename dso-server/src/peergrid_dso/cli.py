"""`peergrid-dso`: the DSO server's command line: its arguments, and each command dispatched (`serve` here;
`check-config` in `check_config`, `reconfigure` in `commands.reconfigure`, `user` in `auth.cli`).

`serve --listen-fd N` serves on a listening TCP socket its launcher bound and handed over as file descriptor N
(the lab's testbed: it knows the port before the server starts, and no other process can take it in
between); an fd that is not one exits 2 with one line before anything else is read.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import stat
import sys

from peergrid_dso.check_config import PROGRAM, check_config, say_warnings
from peergrid_ledger.settings import ConfigError, exit_with_config_error, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="peergrid DSO server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the DSO server (REST API and console)")
    serve.add_argument("--config", required=True, help="config file (YAML)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--listen-fd", type=int, default=None, metavar="N",
        help="serve on the listening TCP socket inherited as file descriptor N (bound by the launcher, e.g. "
        "peergrid-testbed); the config's http.host and http.port are then not bound",
    )  # fmt: skip
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


class ListenFdError(ValueError):
    """`--listen-fd` names no listening TCP socket."""


def inherited_listener(fd: int) -> socket.socket:
    """The listening TCP socket (IPv4 or IPv6) open as `fd`, its family read from the socket itself (uvicorn's
    own `fd=` takes every fd for a Unix socket, so accepted TCP connections would miss TCP_NODELAY), or
    `ListenFdError` saying what `fd` is instead."""
    where = f"--listen-fd {fd}"
    try:
        mode = os.fstat(fd).st_mode
    except (OSError, OverflowError):
        raise ListenFdError(f"{where}: not an open file descriptor") from None
    if not stat.S_ISSOCK(mode):
        kinds = {stat.S_ISFIFO: "a pipe", stat.S_ISREG: "a file", stat.S_ISCHR: "a character device",
                 stat.S_ISDIR: "a directory"}  # fmt: skip
        kind = next((name for test, name in kinds.items() if test(mode)), "another kind of file")
        raise ListenFdError(f"{where}: not a socket ({kind})")
    with socket.socket(fileno=os.dup(fd)) as probe:  # its own fd: closing the probe leaves `fd` open
        tcp = probe.family in (socket.AF_INET, socket.AF_INET6) and probe.type == socket.SOCK_STREAM
        if not tcp or probe.proto not in (0, socket.IPPROTO_TCP):
            family, type_ = (getattr(v, "name", v) for v in (probe.family, probe.type))
            raise ListenFdError(f"{where}: not a TCP socket ({family}, {type_})")
        if not probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ListenFdError(
                f"{where}: a TCP socket that does not listen (its launcher binds it and calls listen first)"
            )
    listener = socket.socket(fileno=fd)
    listener.set_inheritable(False)  # inherited for this process to serve on, not to pass on to its children
    return listener


def serve(args: argparse.Namespace) -> int:
    from peergrid_dso.auth.store import ConsoleDb, ConsoleStateError, console_db_path
    from peergrid_dso.config import DsoSettings

    listener = None
    if args.listen_fd is not None:
        try:
            listener = inherited_listener(args.listen_fd)
        except ListenFdError as err:
            print(f"{PROGRAM}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
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
    from uvicorn.config import STARTUP_FAILURE

    from peergrid_dso.app import create_app
    from peergrid_dso.logs import log_config

    logs = log_config(args.log_level)  # every line with its time and level (uvicorn applies it as it starts)
    if listener is None:
        uvicorn.run(
            create_app(settings), host=settings.http.host, port=settings.http.port, log_level=args.log_level,
            log_config=logs,
        )  # fmt: skip
        return 0
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level=args.log_level, log_config=logs))
    host, port = listener.getsockname()[:2]  # (uvicorn names no address for sockets it is handed)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    logging.getLogger("uvicorn.error").info("serving on http://%s (inherited fd %d)", where, args.listen_fd)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C after its graceful shutdown
        pass
    return 0 if server.started else STARTUP_FAILURE


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

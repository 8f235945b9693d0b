"""`peergrid-dso`: the DSO server's command line: its arguments, and each command dispatched (`serve` and
`enrolment` here; `check-config` in `check_config`, `reconfigure` in `commands.reconfigure`, `user` in `auth.cli`).

`enrolment token create --config C [--label MG]` issues a one-time enrolment token into the DSO's token file
(`services.enrolment_tokens`, beside the console's user file) and prints it, alone on stdout, once: for the
operator's Ansible vault (`flash_enrolment_token`). It writes the file the running server reads on every request,
under the same lock, rather than calling the REST API: that needs an operator's console session and CSRF token,
so a password in a script, while the file is reached only by who may already read the DSO's data directory (its
user, or root; run as root the file keeps the directory's owner). `enrolment token list` shows each token's
label and whether and by which MGMC it was used (the tokens themselves are not kept). A config without
`console.users_file` has no data directory: exit 2 with one line, as for a damaged token file.

`serve --listen-fd N` serves on a listening TCP socket its launcher bound and handed over as file descriptor N
(the lab's testbed: it knows the port before the server starts, and no other process can take it in
between); an fd that is not one exits 2 with one line before anything else is read. A bad config or data
`serve` finds before the web server starts, or only as its app starts (a `ConfigError` in the lifespan: the
node's own start, `app.StartRefusal`), is one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import stat
import sys
from functools import partial

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
    enrolment = sub.add_parser("enrolment", help="MGMC enrolment tokens (create, list)")
    tokens = enrolment.add_subparsers(dest="enrolment_command", required=True).add_parser(
        "token", help="one-time enrolment tokens in the DSO's data directory"
    )
    token_sub = tokens.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="issue a token and print it (once) on stdout")
    create.add_argument("--config", required=True, help="the DSO server's config file (YAML)")
    create.add_argument(
        "--label", default=None, help="the MG the token is for: a request under another is refused"
    )
    listing = token_sub.add_parser("list", help="the tokens issued: label, issued, used by which MGMC")
    listing.add_argument("--config", required=True, help="the DSO server's config file (YAML)")
    from peergrid_dso.commands import reconfigure

    reconfigure.add_arguments(
        sub.add_parser("reconfigure", help="loss-minimising radial switch state of a feeder")
    )
    # listed for --help only: `main` hands `user ...` to its own parser (peergrid_dso.auth.cli) before this one
    sub.add_parser("user", help="console users (add, list, remove): peergrid-dso user --help")
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
    from peergrid_dso.services.enrolment_tokens import TokenStore, TokenStoreError, token_store_path

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
        if (tokens := token_store_path(settings.console.users_file)) is not None:
            TokenStore.open(tokens)  # a damaged enrolment token file: the same, never read as no token
        from peergrid_dso.live import preflight, stored_word  # the closed loop's key, geneses, relays file
        from peergrid_dso.services.enrolment_file import check_at_start

        # a damaged enrolment file, or the loop's keys for an MG that enrolled again with new ones: the same,
        # with the chains' word on revocations read from their stores before the node opens them
        loop = settings.loop
        word = None if loop is None else partial(stored_word, loop)
        warnings = check_at_start(settings.console.users_file, loop, word) + preflight(settings)
    except (ConsoleStateError, TokenStoreError) as err:
        exit_with_config_error(PROGRAM, ConfigError(str(err)))
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    say_warnings(warnings)
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    http = settings.http  # with cert_file and key_file: HTTPS (the pilot's MGMCs enrol over it)

    from peergrid_dso.app import StartRefusal, create_app
    from peergrid_dso.logs import log_config

    logs = log_config(args.log_level)  # every line with its time and level (uvicorn applies it as it starts)
    # a ConfigError raised only as the app starts (the node's own start): one line and exit 2 all the same
    app = StartRefusal(create_app(settings))
    if listener is None:
        try:
            uvicorn.run(
                app, host=settings.http.host, port=settings.http.port, log_level=args.log_level,
                log_config=logs, ssl_certfile=http.cert_file, ssl_keyfile=http.key_file,
            )  # fmt: skip
        except SystemExit:  # (uvicorn.run's own exit when the start failed: 3)
            if app.refused is not None:
                exit_with_config_error(PROGRAM, app.refused)
            raise
        return 0
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=args.log_level,
            log_config=logs,
            ssl_certfile=http.cert_file,
            ssl_keyfile=http.key_file,
        )
    )
    host, port = listener.getsockname()[:2]  # (uvicorn names no address for sockets it is handed)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scheme = "http" if http.cert_file is None else "https"
    logging.getLogger("uvicorn.error").info(
        "serving on %s://%s (inherited fd %d)", scheme, where, args.listen_fd
    )
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C after its graceful shutdown
        pass
    except SystemExit:  # (uvicorn's own exit when the start failed: 3)
        if app.refused is not None:
            exit_with_config_error(PROGRAM, app.refused)
        raise
    return 0 if server.started else STARTUP_FAILURE


def enrolment_tokens(args: argparse.Namespace) -> int:
    """`enrolment token create|list`: see the module's docstring."""
    import secrets
    import time

    from peergrid_dso.config import DsoSettings
    from peergrid_dso.services.enrolment_tokens import TokenStore, TokenStoreError, token_store_path

    try:
        settings = load_settings(args.config, DsoSettings)
        path = token_store_path(settings.console.users_file)
        if path is None:
            raise ConfigError(
                f"{args.config}: console.users_file is not set, so the DSO server keeps no data directory and "
                "holds its enrolment tokens in memory: issue them through the running server instead"
            )
        store = TokenStore(path)  # (each call reads the file, refusing a damaged one)
        if args.token_command == "create":
            token = secrets.token_urlsafe(16)  # as EnrolmentService's own source
            store.issue(token, args.label)
            print(token)
            return 0
        for record in sorted(store.records().values(), key=lambda r: r.issued_at):
            issued = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(record.issued_at))
            used = "unused" if record.used_by is None else f"used by MGMC {record.used_by.hex()[:12]}"
            print(f"{issued}  {record.label or '(any MG)'}  {used}")
        return 0
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    except (TokenStoreError, ValueError, OSError) as err:
        print(f"{PROGRAM}: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["user"]:  # console users (add/list/remove): its own parser in peergrid_dso.auth.cli
        from peergrid_dso.auth.cli import main as user_main

        return user_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "enrolment":
        return enrolment_tokens(args)
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "reconfigure":
        from peergrid_dso.commands import reconfigure

        return reconfigure.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

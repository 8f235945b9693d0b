"""`peergrid-edge`: the MGMC daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from peergrid_ledger.settings import ConfigError, exit_with_config_error, load_settings

PROGRAM = "peergrid-edge"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="peergrid microgrid master controller (MGMC) daemon"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, help="config file (YAML), e.g. /etc/peergrid/edge.yaml")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from peergrid_edge.config import EdgeSettings

    try:
        settings = load_settings(args.config, EdgeSettings)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(settings.devices)} devices)")
        return 0
    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_edge.notify import setup_logging

    setup_logging(args.log_level)

    asyncio.run(EdgeDaemon(settings).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

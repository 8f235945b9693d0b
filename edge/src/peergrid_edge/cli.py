"""`peergrid-edge`: the MGMC daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

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
    prove = sub.add_parser(
        "prove", help="print a JSON inclusion proof of one stored reading (run while the daemon is stopped)"
    )
    prove.add_argument("--config", required=True)
    prove.add_argument("--interval", type=int, required=True, help="commitment interval number")
    prove.add_argument(
        "--index", type=int, default=None, help="reading number in the interval (default: list)"
    )
    enrol = sub.add_parser(
        "enrol",
        help="ask the DSO named in the config's enrolment section for this MGMC's enrolment once (as the daemon "
        "does at its start) and print its status; exit 0 authorised, 3 pending, 1 otherwise",
    )
    enrol.add_argument("--config", required=True)
    day = sub.add_parser(
        "day",
        help="summarise one day of this MG's trading for its owner from the record file and the MGMC chain "
        "replica: per interval and for the day its trades, what the chain settled for each, money in and out, "
        "cost against the DSO-only figure; flags trades the two disagree on",
    )
    day.add_argument("--config", help="the daemon's config: its market.record_file and <data_dir>/mgmc.db")
    day.add_argument(
        "--records", type=Path, help="the record file (default: the config's market.record_file)"
    )
    day.add_argument(
        "--ledger", type=Path, help="the MGMC chain replica (default: the config's <data_dir>/mgmc.db)"
    )
    day.add_argument("--day", help="the day's stamp as the records hold it (default: the records' last day)")
    day.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    return parser


def prove(settings: object, interval: int, index: int | None) -> int:
    """Print the proof (or the interval's readings) as JSON; exit 1 with one line when there is none."""
    import json

    import plyvel

    from peergrid_edge.commitments import leaf_record
    from peergrid_edge.config import EdgeSettings
    from peergrid_edge.store import EdgeStore

    assert isinstance(settings, EdgeSettings)
    try:
        store = EdgeStore(settings.data_dir / "edge.db", create=False)  # a reader never makes a store
    except plyvel.Error as exc:
        print(f"{PROGRAM}: cannot open the store (is the daemon running?): {exc}", file=sys.stderr)
        return 1
    try:
        if index is None:
            readings = [leaf_record(leaf) for leaf in store.leaves(interval)]
            print(
                json.dumps({"interval": interval, "sealed": store.is_sealed(interval), "readings": readings})
            )
            return 0
        try:
            proof = store.prove(interval, index)
        except (KeyError, IndexError) as exc:
            print(f"{PROGRAM}: {exc.args[0]}", file=sys.stderr)
            return 1
        print(json.dumps(proof.to_json()))
        return 0
    finally:
        store.close()


def enrol(settings: object) -> int:
    """One ask of the DSO (`enrolment.Enroller`), logged to stderr; the status on stdout."""
    import logging

    from peergrid_edge.config import EdgeSettings
    from peergrid_edge.enrolment import Enroller
    from peergrid_ledger import keys

    assert isinstance(settings, EdgeSettings)
    if settings.enrolment is None:
        print(f"{PROGRAM}: the config has no enrolment section: nothing to enrol with", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:  # made by peergrid-edge-keygen (or the daemon's first start)
        identity = keys.read_keyfile(settings.node_key_file())
    except keys.KeyFileError as err:
        print(f"{PROGRAM}: {err}", file=sys.stderr)
        return 2
    status = asyncio.run(Enroller.from_settings(settings, identity).run(turns=1))
    print(status)
    return {"authorised": 0, "pending": 3}.get(status, 1)


def day(args: argparse.Namespace) -> int:
    """`peergrid-edge day`: the owner's day (`day_summary.day_report`); exit 2 with one line when the records
    or the replica cannot be read."""
    from peergrid_edge.day_summary import DayError, day_report

    records, ledger = args.records, args.ledger
    if args.config is not None and (records is None or ledger is None):
        from peergrid_edge.config import EdgeSettings

        try:
            settings = load_settings(args.config, EdgeSettings)
        except ConfigError as err:
            exit_with_config_error(PROGRAM, err)
        records = records or (settings.market.record_file if settings.market is not None else None)
        ledger = ledger or settings.data_dir / "mgmc.db"
    if records is None or ledger is None:
        print(f"{PROGRAM} day: give --config, or --records and --ledger", file=sys.stderr)
        return 2
    try:
        print(day_report(records, ledger, args.day, args.json))
    except DayError as err:
        print(f"{PROGRAM} day: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "day":
        return day(args)
    from peergrid_edge.config import EdgeSettings

    try:
        settings = load_settings(args.config, EdgeSettings)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(settings.devices)} devices)")
        return 0
    if args.command == "prove":
        return prove(settings, args.interval, args.index)
    if args.command == "enrol":
        return enrol(settings)
    from peergrid_controller.scenario import ScenarioError
    from peergrid_edge.daemon import EdgeDaemon
    from peergrid_edge.notify import setup_logging
    from peergrid_edge.task_watch import TaskDied
    from peergrid_ledger.keys import KeyFileError

    setup_logging(args.log_level)

    # a store it cannot open (its own edge.db, a replica's: `store.open_store`), a key or a scenario it cannot use
    # (each error names its file; review25 F7: those came as a traceback): one line, exit 2
    try:
        daemon = EdgeDaemon(settings)
    except ConfigError as err:
        exit_with_config_error(PROGRAM, err)
    except (KeyFileError, ScenarioError) as err:
        exit_with_config_error(PROGRAM, ConfigError(str(err)))
    try:
        asyncio.run(daemon.run())
    except TaskDied as died:  # logged with its traceback (CRITICAL) as it died; systemd restarts on failure
        print(f"{PROGRAM}: {died}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

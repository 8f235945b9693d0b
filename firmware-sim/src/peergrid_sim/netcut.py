"""`python -m peergrid_sim.netcut --listen PORT|--listen-fd FD --to HOST:PORT --cut-file FILE`: a pullable cable.

Promises: forwards TCP between one Pi's daemon and the broker on loopback; while `--cut-file` exists every
open connection is dropped and new ones are closed at once (the Pi is cut off from the broker, as if its
network link failed); once the file is gone, connections pass again. The fault tests use it to island one
MGMC without touching the others. Never binds anything but loopback. With `--listen-fd` it serves on a
listening socket its launcher bound and handed over (the testbed does: a port picked first and bound later
by the child could be taken in between).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def serve(listen: int | socket.socket, host: str, port: int, cut: Path) -> None:
    open_pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if cut.exists():
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        open_pairs.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            open_pairs.discard(pair)

    if isinstance(listen, socket.socket):
        server = await asyncio.start_server(handle, sock=listen)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            if cut.exists():
                for a, b in list(open_pairs):
                    a.close()
                    b.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netcut", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", type=int, help="loopback port to listen on")
    where.add_argument("--listen-fd", type=int, help="an inherited listening socket's file descriptor")
    parser.add_argument("--to", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--cut-file", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    listen = args.listen if args.listen_fd is None else socket.socket(fileno=args.listen_fd)
    asyncio.run(serve(listen, host, int(port), args.cut_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""M7 (review37 R37-4): a message the edge link published and the broker had not acknowledged when the connection
was lost is never sent after it, and a `publish_confirmed` waiting on it is told False at the loss, not at its
timeout.

Before: paho 2.2 keeps every QoS 1 message without its PUBACK (sent, or queued behind its in-flight window) and
sends it again, with DUP, after the reconnect, however long the outage: a device setpoint the dispatcher had
given up on reached the device late and could override its fallback until the next write, and a waiter was told
False only at its own timeout (R37's fake broker: the same command again 3 s later).

Over a real Mosquitto behind a pullable cable (a relay in this file that can hold what the link sends, then drop
the connection): a watcher subscribed on the broker itself sees neither the held command nor the held
transaction after the cable is mended, only what the link published afterwards. Over R37's fake broker: a
PUBLISH never acknowledged, the connection dropped, and nothing old on the second connection. A reconnect paho
starts without telling the link of the loss (its select() failing) drops them too, before the new socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from helpers_wait import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from peergrid_edge.link import MqttLink
from peergrid_sim.broker import MosquittoBroker

COMMAND_TOPIC = "peergrid/f1/mg1/pv/set"
TX_TOPIC = "peergrid/f1/mg1/tx"
STALE = b'{"limit_pct": 0}'
GUARD_S = 30.0  # only against a hang: the waiter's own timeout is an hour


class Cable:
    """A TCP relay from the link to a broker: `hold()` keeps what the link sends from reaching the broker,
    `pull()` drops the connection (with what it held) and closes every new one until `mend()`."""

    def __init__(self, to_port: int) -> None:
        self.to_port = to_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = bytearray()
        self._holding = threading.Event()
        self._pulled = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self._pulled.is_set():
                _shut(conn)
                continue
            up = socket.create_connection(("127.0.0.1", self.to_port))
            with self._lock:
                self._open += [conn, up]
            threading.Thread(target=self._pipe, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_link: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_link and self._holding.is_set():
                    with self._lock:
                        self.held += data
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(src)
            _shut(dst)

    def hold(self) -> None:
        self._holding.set()

    def pull(self) -> None:
        self._pulled.set()
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            _shut(conn)
        self._holding.clear()

    def mend(self) -> None:
        self._pulled.clear()

    def close(self) -> None:
        self.listener.close()
        self.pull()


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(
            socket.SHUT_RDWR
        )  # wakes a recv() blocked on it in another thread; close() alone may not
    except OSError:
        pass
    conn.close()


class Watcher:
    """A client on the broker itself, subscribed to the MG's topics: what reached the broker, in order."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="m7-watcher")
        self.client.on_connect = lambda c, *_: c.subscribe("peergrid/f1/mg1/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.seen.append((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.seen]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def confirmed_once_back(link: MqttLink, payload: bytes) -> None:
    """Publish `payload` on the command topic until the broker acknowledged it (False at once while the link is
    down; each try its own payload, so one acknowledged late is told apart)."""
    for attempt in range(600):
        if await link.publish_confirmed(COMMAND_TOPIC, payload + b"-%d" % attempt, timeout_s=5.0):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the link never came back")


def test_a_command_and_a_transaction_held_at_the_loss_never_reach_mosquitto_after_it(tmp_path: Path) -> None:
    async def main(broker: MosquittoBroker, cable: Cable, watcher: Watcher) -> None:
        link = MqttLink("edge-m7", "127.0.0.1", cable.port, keepalive_s=5, reconnect_max_s=1.0)
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), GUARD_S)
            cable.hold()
            assert link.publish(COMMAND_TOPIC, STALE, qos=1)  # a device command: taken by paho, on the wire
            waiter = asyncio.ensure_future(link.publish_confirmed(TX_TOPIC, b"tx-held", timeout_s=3600.0))
            assert await asyncio.to_thread(wait_until, lambda: b"tx-held" in cable.held)
            cable.pull()
            assert await asyncio.wait_for(waiter, GUARD_S) is False  # told at the loss
            assert link.dropped_unacknowledged == 2
            cable.mend()
            await confirmed_once_back(link, b"fresh")
            await confirmed_once_back(link, b"last")  # sent after anything paho re-sent at the CONNACK
            assert await asyncio.to_thread(
                wait_until, lambda: any(p.startswith(b"last-") for p in watcher.payloads())
            )
        finally:
            link.stop()

    with MosquittoBroker(tmp_path / "broker") as broker:
        cable = Cable(broker.port)
        watcher = Watcher(broker.port)
        try:
            assert watcher.subscribed.wait(GUARD_S)
            asyncio.run(main(broker, cable, watcher))
        finally:
            watcher.stop()
            cable.close()
    payloads = watcher.payloads()
    assert STALE not in payloads and b"tx-held" not in payloads, payloads
    assert all(p.startswith((b"fresh-", b"last-")) for p in payloads), payloads


# --- R37's fake broker ---------------------------------------------------------------------------------------


def read_packet(conn: socket.socket) -> tuple[int | None, bytes]:
    head = conn.recv(1)
    if not head:
        return None, b""
    length, factor = 0, 1
    while True:
        byte = conn.recv(1)[0]
        length += (byte & 0x7F) * factor
        factor *= 128
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return None, b""
        body += chunk
    return head[0], body


def publish_payload(body: bytes) -> bytes:
    """A QoS 1 PUBLISH's payload (after its topic and packet id)."""
    return body[2 + int.from_bytes(body[:2], "big") + 2 :]


class ForgetfulBroker:
    """Its first connection takes one PUBLISH and drops without a PUBACK; the second (once `back` is set)
    acknowledges every PUBLISH and records its payload and DUP flag."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first: list[bytes] = []
        self.after: list[tuple[bytes, bool]] = []
        self.back = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        read_packet(conn)
        conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
        while True:
            kind, body = read_packet(conn)
            if kind is None:
                break
            if kind >> 4 == 3:  # PUBLISH: taken, never acknowledged, and the connection drops
                self.first.append(publish_payload(body))
                _shut(conn)
                break
        while not self.back.is_set():  # away: every attempt closed at once
            try:
                refused, _ = self.listener.accept()
            except OSError:
                return
            if self.back.is_set():
                conn = refused
                break
            _shut(refused)
        else:
            conn, _ = self.listener.accept()
        read_packet(conn)
        conn.sendall(b"\x20\x02\x00\x00")
        try:
            while True:
                kind, body = read_packet(conn)
                if kind is None:
                    break
                if kind >> 4 == 3:
                    self.after.append((publish_payload(body), bool(kind & 0x08)))
                    packet_id = body[2 + int.from_bytes(body[:2], "big") :][:2]
                    conn.sendall(b"\x40\x02" + packet_id)  # PUBACK
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_r37_a_publish_never_acknowledged_is_not_sent_again_after_the_reconnect() -> None:
    """One command on the wire, one transaction queued behind paho's in-flight window (1 here): the connection
    drops; the waiter hears False at once and the broker's second connection gets only what came after."""
    broker = ForgetfulBroker()

    async def main() -> None:
        link = MqttLink("edge-m7-r37", "127.0.0.1", broker.port, reconnect_max_s=1.0)
        link.client.max_inflight_messages_set(1)  # so the second message waits in paho's queue, never sent
        link.start()
        try:
            await asyncio.wait_for(link.connected.wait(), GUARD_S)
            assert link.publish(COMMAND_TOPIC, STALE, qos=1)
            waiter = asyncio.ensure_future(link.publish_confirmed(TX_TOPIC, b"tx-queued", timeout_s=3600.0))
            assert await asyncio.wait_for(waiter, GUARD_S) is False  # told at the loss, not in an hour
            assert link.dropped_unacknowledged == 2
            broker.back.set()
            await confirmed_once_back(link, b"fresh")
        finally:
            link.stop()

    try:
        asyncio.run(main())
    finally:
        broker.close()
    assert broker.first == [STALE]
    payloads = [payload for payload, _ in broker.after]
    assert STALE not in payloads and b"tx-queued" not in payloads, broker.after
    assert payloads and all(p.startswith(b"fresh-") for p in payloads), broker.after
    assert not any(dup for _, dup in broker.after), broker.after


def test_a_reconnect_paho_starts_without_telling_the_loss_drops_them_before_the_new_socket() -> None:
    """paho's loop can end a connection with no on_disconnect (its select() failing) and go straight to
    `reconnect()`, which readies every unacknowledged message for the new connection: the link's
    `on_pre_connect`, called there before the socket is made, drops them and tells their waiters."""

    async def main() -> None:
        link = MqttLink(
            "edge-m7-pre", "127.0.0.1", 9
        )  # never started: paho's hook is called as reconnect() does
        link.loop = asyncio.get_running_loop()
        info = link.client.publish(COMMAND_TOPIC, STALE, qos=1)  # kept by paho for the next connection
        assert info.mid in link.client._out_messages
        waiter: asyncio.Future[bool] = link.loop.create_future()
        link._acks[info.mid] = waiter
        link.client.on_pre_connect(link.client, None)
        assert link.client._out_messages == {}
        assert await asyncio.wait_for(waiter, GUARD_S) is False
        assert link.dropped_unacknowledged == 1

    asyncio.run(main())

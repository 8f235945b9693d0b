"""An edge stopping while a device refuses its connection leaves no failed task behind: the poll's time bound
runs in the poll's own task. Before, the bound was asyncio.wait_for, whose inner task met the stop's
cancellation inside pymodbus' connect; pymodbus (its own wait_for, Python 3.11, CPython gh-86296) swallowed it
on its failed attempt and returned False, so that task ended with DeviceError('cannot connect') that nobody
read, and the loop logged 'Task exception was never retrieved' at ERROR with its traceback (U2's lab stopped
with Ctrl-C at 06:11 UTC 2026-12-07: mgmc-mg4.log, its firmware-sim ended beside it)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from peergrid_edge.config import DeviceSettings
from peergrid_edge.modbus import SunSpecModbusDriver
from peergrid_edge.polling import poll_once


class RefusingClient:
    """A TCP client whose connect attempt is under way when the stop comes, and fails: the cancellation it
    receives is taken for that failure and it returns False, as pymodbus' connect does in that race."""

    connected = False

    def __init__(self) -> None:
        self.attempting = asyncio.Event()

    async def connect(self) -> bool:
        self.attempting.set()
        try:
            await asyncio.Event().wait()  # the connect attempt, refused as the stop arrives
        except asyncio.CancelledError:
            return False  # swallowed, as pymodbus' wait_for does
        return True

    def close(self) -> None:
        pass


async def _stop_during_connect() -> list[dict[str, Any]]:
    unread: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unread.append(context))
    device = DeviceSettings(name="load", nature="load", port=1502, timeout_s=1.0)
    driver = SunSpecModbusDriver(device)
    client = RefusingClient()
    driver._tcp = client  # type: ignore[assignment]
    poll = asyncio.create_task(poll_once(driver, device))
    await client.attempting.wait()
    poll.cancel()  # the edge's stop
    with contextlib.suppress(asyncio.CancelledError):
        await poll
    assert poll.cancelled()  # the stop stopped it: the swallowed cancellation was raised again
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()  # a task's unread exception is told when the task is collected
    await asyncio.sleep(0)
    return unread


def test_a_stop_during_a_refused_connect_leaves_no_unread_task_exception() -> None:
    unread = asyncio.run(_stop_during_connect())
    assert [c.get("message") for c in unread] == []


async def _read_stopped_during_connect() -> bool:
    device = DeviceSettings(name="load", nature="load", port=1502, timeout_s=1.0)
    driver = SunSpecModbusDriver(device)
    client = RefusingClient()
    driver._tcp = client  # type: ignore[assignment]
    read = asyncio.create_task(driver.read_all())  # no wait_for around it: the stop meets the driver itself
    await client.attempting.wait()
    read.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await read
    return read.cancelled()


def test_a_stop_during_a_refused_connect_stops_the_read_not_taken_for_a_refused_connection() -> None:
    """Where connect swallowed the stop's cancellation the driver raises it again (the task is still
    cancelling): without that, read_all took it for 'cannot connect', returned its failed snapshot, and the
    task the stop cancelled ran on."""
    assert asyncio.run(_read_stopped_during_connect())

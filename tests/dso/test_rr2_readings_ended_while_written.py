"""RR2 (review of D13): a readings post whose disputes end while its line is written off the loop
(`dispute_intake.ReadingsIntake.offer_readings_kept`) is answered as taken, but not held, and its line is
forgotten in the kept file: what the settler holds stays bounded by the disputes it waits on. D13 added the
branch without a test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .test_d12_sealed_readings_kept import kept_lines, withheld
from .test_disputes_node import final_blocks, settler_for


def test_a_set_whose_disputes_ended_while_it_was_written_is_not_held_and_forgotten(tmp_path: Path) -> None:
    m = withheld()
    settler, _, _ = settler_for(m, tmp_path)
    final_blocks(m, settler)
    node = m.nodes["s"].public
    bucket, leaves = next((b, v) for (who, b), v in sorted(m.sealed.items()) if who == node)
    keep = settler.kept.keep_off_loop

    async def ended_meanwhile(key: Any, kept: Any) -> None:
        await keep(key, kept)
        settler.pending.clear()  # every dispute reading it settled while the line was fsynced

    settler.kept.keep_off_loop = ended_meanwhile  # type: ignore[method-assign]

    async def post() -> int:
        taken = await settler.offer_readings_kept(node, bucket, leaves)
        await settler.kept.settled()
        return taken

    assert asyncio.run(post()) == len(leaves)
    assert (node, bucket) not in settler.sealed  # not held: no pending dispute reads it
    assert (node, bucket) not in settler.kept.lines  # forgotten: the next rewrite leaves it out
    assert kept_lines(tmp_path) == []  # written, then the file rewritten with no live set (module: none live)


def test_a_set_a_pending_dispute_still_reads_is_held_after_its_write(tmp_path: Path) -> None:
    m = withheld()
    settler, _, _ = settler_for(m, tmp_path)
    final_blocks(m, settler)
    node = m.nodes["s"].public
    bucket, leaves = next((b, v) for (who, b), v in sorted(m.sealed.items()) if who == node)
    assert asyncio.run(settler.offer_readings_kept(node, bucket, leaves)) == len(leaves)
    assert (node, bucket) in settler.sealed and (node, bucket) in settler.kept.lines

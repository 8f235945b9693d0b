"""Where each bus goes on the one-line diagram: the feeder drawn as a tree of horizontal runs.

Promises: `one_line_layout(feeder)` gives every bus an (x, y) grid position: from the substation the longest
path of normally-closed branches runs along row 0; every other child starts a new row below, one column to the
right of its parent (the classic one-line drawing). Buses that only ties reach are put on rows of their own.
Pure; deterministic for a given feeder.
"""

from __future__ import annotations

from peergrid_dso.feeder.model import Feeder


def one_line_layout(feeder: Feeder) -> dict[int, tuple[int, int]]:
    children: dict[int, list[int]] = {i: [] for i in range(feeder.n_bus)}
    adjacent: dict[int, list[int]] = {i: [] for i in range(feeder.n_bus)}
    for b in feeder.branches:
        if b.closed:
            adjacent[b.from_bus].append(b.to_bus)
            adjacent[b.to_bus].append(b.from_bus)
    seen = {feeder.root}
    order = [feeder.root]
    for bus in order:  # breadth-first spanning tree over normally-closed branches
        for nxt in sorted(adjacent[bus]):
            if nxt not in seen:
                seen.add(nxt)
                children[bus].append(nxt)
                order.append(nxt)
    depth: dict[int, int] = {}
    for bus in reversed(order):
        depth[bus] = 1 + max((depth[c] for c in children[bus]), default=0)
    pos: dict[int, tuple[int, int]] = {}
    next_row = [1]

    def place(bus: int, x: int, y: int) -> None:
        pos[bus] = (x, y)
        kids = sorted(children[bus], key=lambda c: (-depth[c], c))
        if not kids:
            return
        place(kids[0], x + 1, y)
        for kid in kids[1:]:
            row = next_row[0]
            next_row[0] += 1
            place(kid, x + 1, row)

    place(
        feeder.root, 0, 0
    )  # recursion depth = longest run, well under Python's limit for feeders < 900 buses
    for bus in range(feeder.n_bus):
        if bus not in pos:
            pos[bus] = (0, next_row[0])
            next_row[0] += 1
    return pos

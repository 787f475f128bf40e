"""sweep.workermem: a worker's peak RSS during a cell, and its RSS after the cell once what
the cell freed is handed back (cyclic garbage collected, malloc arenas trimmed)."""
from __future__ import annotations

import gc

from sweep.workermem import RELEASE_KB, CellMemory, rss_kb


def cyclic_model(n: int) -> None:
    """n objects that point at each other (as VMAs, mms and anon_vmas do), with the cyclic
    collector off (as simulate_cell runs): only a collection frees them."""
    nodes = [{"payload": bytearray(512)} for _ in range(n)]
    for a, b in zip(nodes, nodes[1:] + nodes[:1]):
        a["next"], b["prev"] = b, a


def test_a_cell_reports_its_peak_and_leaves_nothing_behind() -> None:
    with CellMemory():                       # settle: the first reading of this process
        pass
    was_on = gc.isenabled()
    gc.disable()
    try:
        with CellMemory() as mem:
            cyclic_model(200_000)            # ~130 MB of cyclic garbage
    finally:
        if was_on:
            gc.enable()
    assert mem.peak_kb - mem.before_kb > RELEASE_KB
    assert mem.peak_kb - mem.before_kb > 80 * 1024
    assert mem.after_kb - mem.before_kb < 20 * 1024, (mem.before_kb, mem.peak_kb, mem.after_kb)
    assert abs(rss_kb()[0] - mem.after_kb) < 20 * 1024


def test_the_peak_is_the_cells_own() -> None:
    """A big cell, then a small one: the small one's peak is not the big one's."""
    with CellMemory() as big:
        data = bytearray(100 * 1024 * 1024)
        data[::4096] = b"x" * len(data[::4096])          # touched: resident
        del data
    with CellMemory() as small:
        pass
    assert big.peak_kb - big.before_kb > 90 * 1024
    assert small.peak_kb < big.peak_kb - 80 * 1024

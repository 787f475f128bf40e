"""What happened in a run, beside the object counts: operations by kind (munmaps, partial
munmaps, exits, mremaps, ...), compactions (process_madvise(MADV_PAGEOUT) calls) and the
rmap walks reclaim made for them.  The sweep puts these in every row
(sweep/runner.simulate_cell), so a cell shows that the behaviours of its workload happened.
"""
from __future__ import annotations

from collections import Counter
from itertools import chain, islice
from typing import TYPE_CHECKING, Iterable, Iterator

from . import trace as T
from .rmap import WalkCost
from .swap import PAGEOUT_WALK

if TYPE_CHECKING:
    from .machine import Machine

# row column -> what it counts
OP_COLUMNS = ("ops_mmap", "ops_munmap", "ops_munmap_partial", "ops_mprotect", "ops_mremap",
              "ops_madvise_dontneed", "ops_fork", "ops_exec", "ops_exit", "compactions")
WALK_COLUMNS = tuple(f"pageout_{k}" for k in ("walks", "avcs_visited", "vmas_visited",
                                              "vmas_not_mapping", "root_lock_read",
                                              "lockless_walks"))
MACHINE_COLUMNS = ("vma_merges", "pageout_pages", "pageout_skipped", "pageout_incomplete",
                   "swapin_pages")
COLUMNS = MACHINE_COLUMNS + OP_COLUMNS + WALK_COLUMNS

_KIND = {T.Mmap: "ops_mmap", T.Munmap: "ops_munmap", T.Mprotect: "ops_mprotect",
         T.MremapResize: "ops_mremap", T.MremapMove: "ops_mremap", T.Fork: "ops_fork",
         T.Exec: "ops_exec", T.Exit: "ops_exit"}


class OpTally:
    """Counts a stream's operations as they pass.  A compaction is a maximal run of
    consecutive ``madvise pageout`` of one process (one process_madvise() call over the
    app's anonymous ranges); a partial munmap names a sub-range of its region."""

    def __init__(self) -> None:
        self.n: Counter[str] = Counter()
        self._pageout_pid: int | None = None

    def wrap(self, ops: Iterable[T.Op]) -> Iterator[T.Op]:
        """ops, counted as they pass, a chunk at a time: types are counted in C, only munmaps
        and madvises are looked at one by one (the workloads are open-loop generators, so
        reading a few hundred ops ahead of the machine changes nothing).  The ops are handed
        on by itertools in C, without a Python frame per op."""
        it = iter(ops)
        chunks = iter(lambda: list(islice(it, 256)), [])
        return chain.from_iterable(map(self._count, chunks))

    def _count(self, chunk: list[T.Op]) -> list[T.Op]:
        """Counts a chunk's ops; -> the chunk."""
        n = self.n
        types = Counter(map(type, chunk))
        for t, k in types.items():
            if t in _KIND:
                n[_KIND[t]] += k
        if T.Munmap in types:
            n["ops_munmap_partial"] += sum(1 for op in chunk if type(op) is T.Munmap
                                           and (op.first or op.count is not None))
        if T.Madvise not in types:
            self._pageout_pid = None
            return chunk
        pid = self._pageout_pid
        for op in chunk:
            if type(op) is T.Madvise:
                if op.advice == "pageout":
                    if pid != op.pid:
                        n["compactions"] += 1
                    pid = op.pid
                    continue
                if op.advice == "dontneed":
                    n["ops_madvise_dontneed"] += 1
            pid = None
        self._pageout_pid = pid
        return chunk


def counts(m: Machine, tally: OpTally) -> dict[str, int]:
    """The activity columns of a run (COLUMNS)."""
    out = {k: int(tally.n.get(k, 0)) for k in OP_COLUMNS}
    walk = m.walk_costs.get(PAGEOUT_WALK) or WalkCost()
    out.update({k: int(v) for k, v in walk.as_dict("pageout_").items() if k in WALK_COLUMNS})
    c = m.counts()
    out.update({k: int(c[k]) for k in MACHINE_COLUMNS})
    return out

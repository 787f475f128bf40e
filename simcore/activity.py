"""What happened in a run, beside the object counts: operations by kind (munmaps, partial
munmaps, exits, mremaps, ...), compactions (process_madvise(MADV_PAGEOUT) calls) and the
rmap walks reclaim made for them.  The sweep puts these in every row
(sweep/runner.simulate_cell), so a cell shows that the behaviours of its workload happened.
"""
from __future__ import annotations

from collections import Counter
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
        n = self.n
        by_type: dict[type, int] = dict.fromkeys(_KIND, 0)   # summed into n at the end
        pageout_pid = self._pageout_pid
        try:
            for op in ops:
                t = type(op)
                if t in by_type:
                    by_type[t] += 1
                    if t is T.Munmap and (op.first or op.count is not None):
                        n["ops_munmap_partial"] += 1
                    pageout_pid = None
                elif t is T.Madvise:
                    if op.advice == "pageout":
                        if pageout_pid != op.pid:
                            n["compactions"] += 1
                        pageout_pid = op.pid
                    else:
                        pageout_pid = None
                        if op.advice == "dontneed":
                            n["ops_madvise_dontneed"] += 1
                else:
                    pageout_pid = None
                yield op
        finally:
            self._pageout_pid = pageout_pid
            for t, k in by_type.items():
                if k:
                    n[_KIND[t]] += k


def counts(m: Machine, tally: OpTally) -> dict[str, int]:
    """The activity columns of a run (COLUMNS)."""
    out = {k: int(tally.n.get(k, 0)) for k in OP_COLUMNS}
    walk = m.walk_costs.get(PAGEOUT_WALK) or WalkCost()
    out.update({k: int(v) for k, v in walk.as_dict("pageout_").items() if k in WALK_COLUMNS})
    c = m.counts()
    out.update({k: int(c[k]) for k in MACHINE_COLUMNS})
    return out

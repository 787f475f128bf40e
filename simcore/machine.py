"""The simulated machine: processes, slab counters, folios; applies trace operations.

``Machine`` holds the state and dispatches each trace operation to the kernel function that
implements it (mmap.py, mprotect.py, madvise.py, mlock.py, mremap.py, fork.py, fault.py,
rmap.py).  ``Machine.run(ops)`` replays a trace.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

from . import trace as T
from .check import check_machine
from .errors import InvariantError
from .fault import CowBatch, do_user_addr_fault
from .folio import FolioTable
from .fork import ForkRecord, copy_mm
from .layout import Layout
from .madvise import do_madvise
from .mlock import do_mlock
from .mm import MM, mm_alloc
from .mmap import do_mmap, exec_mmap, exit_mm, vm_munmap
from .mprotect import do_mprotect_pkey
from .mremap import mremap_move, mremap_resize
from .policy import Policy, make_policy
from .rmap import rmap_range
from .slab import CACHES, Slab
from .timemodel import FAULT_KINDS, RootLocks

# trace operation -> the kernel entry point that carries it out
DISPATCH: dict[type, Callable[[Machine, T.Op], None]] = {
    T.Mmap: do_mmap, T.Touch: do_user_addr_fault, T.Mprotect: do_mprotect_pkey,
    T.Madvise: do_madvise, T.Mlock: do_mlock, T.Munmap: vm_munmap,
    T.MremapResize: mremap_resize, T.MremapMove: mremap_move,
    T.Fork: copy_mm, T.Exec: exec_mmap, T.Exit: exit_mm, T.Rmap: rmap_range,
}


class Machine:
    """A simulated kernel: every process of one trace under one policy."""

    def __init__(self, policy: Policy | str = "eager", pmd_pages: int = 512,
                 check: bool = False, swap: bool = False) -> None:
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.pmd_pages = pmd_pages
        self.slab = Slab(CACHES + tuple(c.name for c in self.policy.caches))
        self.folios = FolioTable()
        self.layout = Layout(pmd_pages=pmd_pages)
        self.anon_vmas: dict[int, object] = {}
        self.check = check
        self.ops_done = 0
        # new_id() -> 1, 2, 3, ...: object ids (a C counter: ~10^6 VMAs per android cell)
        self.new_id: Callable[[], int] = itertools.count(1).__next__
        self.observers: list[Callable[[Machine, T.Op], None]] = []
        self.walk_costs: dict = {}
        self.root_lock_write = 0                  # anon_vma root rwsem write acquisitions
        self.fork_ptes = 0                        # page-table entries copied by forks so far
        self.forks: list[ForkRecord] = []         # one per fork (fork.copy_mm)
        self.faults = dict.fromkeys(FAULT_KINDS, 0)   # faults by kind (fault.py), for timemodel
        self.locks = RootLocks()                  # anon_vma root rwsem holds per root (timemodel)
        self.vma_merges = 0                       # vma_merge_*_range() that merged
        self.swap = swap                          # a swap device (zram): MADV_PAGEOUT swaps out
        self.swapped = False                      # a swap entry was ever made (swap.py)
        self.pageout_pages = self.pageout_skipped = self.pageout_incomplete = 0
        self.swapin_pages = 0
        if self.policy.tracks_frees:
            self.folios.on_free = lambda ids: self.policy.folios_freed(self, ids)
        self.procs: dict[int, MM] = {0: mm_alloc(self, 0, "boot")}

    def run(self, ops: Iterable[T.Op]) -> Machine:
        """apply() each op.  Without checked mode and observers the loop dispatches itself
        (the same steps as apply(), without a call per op: the android cells apply ~10^5-10^6
        ops), and a policy that allows it takes runs of write touches together (a touch the
        batch does not take is faulted with the span its layout lookup gave: CowBatch.span)."""
        if self.check or self.observers:
            for op in ops:
                self.apply(op)
            return self
        # a policy that allows it takes runs of write touches as one COW pass (fault.CowBatch)
        batch = CowBatch(self) if self.policy.batch_cow_faults else None
        touch, dispatch, done = T.Touch, DISPATCH, 0
        queued = False                                # touches may wait in the batch
        try:
            for op in ops:
                t = op.__class__                      # op types are final (no subclasses)
                span = None
                if t is touch and batch is not None:
                    if batch.add(op):
                        queued = True
                        continue
                    span = batch.span                 # the layout's span of op, or None
                if queued:                            # (add() may have flushed them itself)
                    batch.flush()
                    queued = False
                try:
                    if span is None:
                        dispatch[t](self, op)
                    else:
                        do_user_addr_fault(self, op, span)
                except InvariantError as exc:
                    exc.attach(op)
                    raise
                done += 1
        finally:
            self.ops_done += done
            # the touches still queued at the end, or before a line `ops` itself could not
            # give (a bad trace line), are done as one after another would do them; after
            # an error of an op the queue is empty (flush() empties it first)
            if batch is not None:
                batch.flush()
        return self

    def apply(self, op: T.Op) -> None:
        """Carry out op; in checked mode check every invariant afterwards.  An InvariantError
        raised by op or the check gets op (as trace JSON) and its trace line attached."""
        try:
            DISPATCH[type(op)](self, op)
            self.ops_done += 1
            if self.check:
                check_machine(self)
        except InvariantError as exc:
            exc.attach(op)
            raise
        for observer in self.observers:
            observer(self, op)

    def release(self) -> None:
        """Break the model's reference cycles (mm <-> VMA, VMA -> chain -> anon_vma -> tree
        -> VMA, an anon_vma's root and parent, the machine's own free hook), so that
        dropping the machine frees it by reference counting at once instead of waiting for
        the cyclic GC (which a cell runs without).  The machine is unusable afterwards.
        Every cycle through a VMA passes its mm's list or a live anon_vma's tree (a freed
        anon_vma's tree is empty; a policy's vma.priv refers to no VMA or mm), so the VMAs
        (~10^6 in a cell) are left as they are (tests/test_release.py)."""
        for mm in self.procs.values():
            mm.vmas, mm.starts, mm.priv = [], [], None
        for av in self.anon_vmas.values():
            av.root = av.parent = None
            av.tree = []
        self.folios.on_free = None
        self.procs, self.anon_vmas, self.observers = {}, {}, []

    def counts(self) -> dict[str, int]:
        out = self.slab.counts()
        out.update(self.policy.stats())
        out["anon_vma_root_lock_write"] = self.root_lock_write
        out["processes"] = len(self.layout.alive())
        out["folios"] = int(self.folios.live)
        out.update(vma_merges=self.vma_merges, pageout_pages=self.pageout_pages,
                   pageout_skipped=self.pageout_skipped,
                   pageout_incomplete=self.pageout_incomplete, swapin_pages=self.swapin_pages)
        return out


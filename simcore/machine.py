"""The simulated machine: processes, slab counters, folios; applies trace operations.

Each ``op_*`` method is one system call of the trace vocabulary, built from the
kernel functions in the other modules.  ``Machine.run(ops)`` replays a trace.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from . import trace as T
from .fault import handle_mm_fault, populate_vma_page_range
from .folio import FolioTable
from .fork import dup_mmap
from .layout import PROT, PROT_EXEC, PROT_READ, PROT_WRITE, Layout
from .mm import MM
from .pagetable import free_pgtables, pmd_range, reclaim_empty_pt, split_huge_edges, zap_pte_range
from .policy import Policy, make_policy
from .slab import Slab
from .vma import (F_EXCL, F_WRITE, VM_ACCOUNT, VM_DONTCOPY, VM_EXEC, VM_HUGEPAGE, VM_LOCKED,
                  VM_LOCKED_MASK, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_MERGEABLE,
                  VM_NOHUGEPAGE, VM_READ, VM_SHARED, VM_WIPEONFORK, VM_WRITE, VMA, File,
                  pt_set, pt_take, split_vma, vm_area_alloc, vm_area_dup, vm_area_free, vma_merge_new_range,
                  vma_modify_flags)

TraceError = T.TraceError
_ADVICE_FLAGS = {  # madvise_vma_behavior(): (flags set, flags cleared)
    "dontfork": (VM_DONTCOPY, 0), "dofork": (0, VM_DONTCOPY),
    "wipeonfork": (VM_WIPEONFORK, 0), "keeponfork": (0, VM_WIPEONFORK),
    "hugepage": (VM_HUGEPAGE, VM_NOHUGEPAGE), "nohugepage": (VM_NOHUGEPAGE, VM_HUGEPAGE),
    "mergeable": (VM_MERGEABLE, 0), "unmergeable": (0, VM_MERGEABLE),
}


def prot_to_flags(prot: int) -> int:
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


class Machine:
    """A simulated kernel: every process of one trace under one policy."""

    def __init__(self, policy: Policy | str = "eager", pmd_pages: int = 512,
                 check: bool = False) -> None:
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.pmd_pages = pmd_pages
        self.slab = Slab()
        self.folios = FolioTable()
        self.layout = Layout(pmd_pages=pmd_pages)
        self.procs: dict[int, MM] = {0: MM(0)}
        self.anon_vmas: dict[int, object] = {}
        self.check = check
        self.ops_done = 0
        self._next_id = 0
        self.observers: list[Callable[[Machine, T.Op], None]] = []
        self.walk_costs: dict = {}
        self.oracle: dict[str, int] = {}          # checked mode: rmap completeness/precision
        self.root_lock_write = 0                  # anon_vma root rwsem write acquisitions
        self.fork_ptes = 0                        # page-table entries copied by forks so far
        self.forks: list[tuple[int, int, int, int, int]] = []   # per fork: see op_fork
        if self.policy.tracks_frees:
            self.folios.on_free = lambda ids: self.policy.folios_freed(self, ids)

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- running ---------------------------------------------------------
    def run(self, ops: Iterable[T.Op]) -> Machine:
        for op in ops:
            self.apply(op)
        return self

    def apply(self, op: T.Op) -> None:
        handler = _DISPATCH[type(op)]
        handler(self, op)
        self.ops_done += 1
        if self.check:
            from .check import check_machine
            try:
                check_machine(self)
            except AssertionError as exc:
                raise AssertionError(f"after line {op.line} ({T.to_json(op)}): {exc}") from None
        for observer in self.observers:
            observer(self, op)

    def counts(self) -> dict[str, int]:
        out = self.slab.counts()
        out.update(self.policy.stats())
        out["anon_vma_root_lock_write"] = self.root_lock_write
        out["processes"] = len(self.layout.alive())
        out["folios"] = int(self.folios.live)
        return out

    def mm(self, op: T.Op) -> MM:
        return self.procs[op.pid]

    # ---- helpers ---------------------------------------------------------
    def _one_vma(self, op: T.Op, start: int, count: int, what: str) -> VMA:
        vma = self.mm(op).vma_at(start)
        if vma is None or vma.vm_end < start + count:
            raise TraceError(op.line, f"{what}: the range spans more than one VMA (EFAULT)")
        return vma

    def _each_vma(self, mm: MM, start: int, end: int) -> Iterable[tuple[VMA, int, int]]:
        """Walk [start, end) VMA by VMA, re-looking up after each step (VMAs may merge)."""
        addr = start
        while addr < end:
            vma = mm.vma_at(addr)
            seg_end = min(end, vma.vm_end)
            yield vma, addr, seg_end
            addr = seg_end

    def _modify_flags(self, mm: MM, start: int, end: int, newflags: Callable[[VMA], int],
                      after: Callable[[VMA, int, int, int], None] | None = None) -> None:
        """The vma_modify_flags() loop of mprotect/madvise/mlock; `after(vma, a, b, oldflags)`
        runs on each VMA once its flags are set."""
        for vma, a, b in self._each_vma(mm, start, end):
            old, flags = vma.vm_flags, newflags(vma)
            if flags != old:
                split_huge_edges(self, mm, a, b)
                vma = vma_modify_flags(self, vma, a, b, flags)
            if after is not None:
                after(vma, a, b, old)

    def do_munmap(self, mm: MM, start: int, end: int) -> None:
        """do_vmi_munmap(): split at the edges, then unmap and free the VMAs inside."""
        vmas = mm.range(start, end)
        if not vmas:
            return
        split_huge_edges(self, mm, start, end)
        if vmas[0].vm_start < start:
            split_vma(self, vmas[0], start, new_below=True)
        last = mm.vma_at(end - 1)
        if last is not None and last.vm_end > end:
            split_vma(self, last, end, new_below=False)
        for vma in mm.range(start, end):
            self._remove_vma(vma)
        free_pgtables(self, mm, start, end)

    def _remove_vma(self, vma: VMA) -> None:
        zap_pte_range(self, vma, 0, vma.pages)
        vma.mm.remove(vma)
        self.policy.unlink_anon_vmas(self, vma)       # free_pgtables() -> unlink_anon_vmas()
        vm_area_free(self, vma)

    def exit_mmap(self, mm: MM) -> None:
        """exit_mmap(): unmap, unlink and free every VMA."""
        for vma in list(mm.vmas):
            self._remove_vma(vma)
        mm.pt_pmds.clear()

    # ---- operations ------------------------------------------------------
    def op_mmap(self, op: T.Mmap) -> None:
        span = self.layout.mmap(op)
        mm = self.mm(op)
        flags = prot_to_flags(PROT[op.prot]) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        shared = op.kind in ("shared_anon", "shared_file")
        if shared:
            flags |= VM_SHARED | VM_MAYSHARE
        elif flags & VM_WRITE:
            flags |= VM_ACCOUNT                            # accountable_mapping()
        if op.kind == "anon":
            file, pgoff = None, span.start                 # do_mmap(): pgoff = addr >> PAGE_SHIFT
        elif op.kind == "shared_anon":
            file, pgoff = File("dev/zero", shmem=True), 0              # shmem_zero_setup(): a file of its own
        else:
            file = mm.files.setdefault(op.file, File(op.file))
            pgoff = op.offset
        start, end = span.start, span.start + span.count
        vma = vma_merge_new_range(self, mm, start, end, pgoff, flags, file)
        if vma is None:
            vma = vm_area_alloc(self, mm, start, end, pgoff, flags, file)
            mm.insert(vma)
        if op.populate:
            self._populate(mm, start, end)

    def _populate(self, mm: MM, start: int, end: int) -> None:
        """__mm_populate()."""
        for vma, a, b in self._each_vma(mm, start, end):
            populate_vma_page_range(self, vma, a - vma.vm_start, b - vma.vm_start)

    def op_touch(self, op: T.Touch) -> None:
        span = self.layout.access(op)
        for vma, a, b in self._each_vma(self.mm(op), span.start, span.start + span.count):
            handle_mm_fault(self, vma, a - vma.vm_start, b - vma.vm_start, op.write)

    def op_mprotect(self, op: T.Mprotect) -> None:
        span = self.layout.access(op)
        mm = self.mm(op)
        access = prot_to_flags(PROT[op.prot])

        def newflags(vma: VMA) -> int:                     # mprotect_fixup()
            old = vma.vm_flags
            new = (old & ~(VM_READ | VM_WRITE | VM_EXEC)) | access
            if new & VM_WRITE:
                if not old & (VM_ACCOUNT | VM_WRITE | VM_SHARED):
                    new |= VM_ACCOUNT
            elif old & VM_ACCOUNT and vma.is_anonymous() and not self.policy.vma_has_anon(vma):
                new &= ~VM_ACCOUNT
            return new

        def fixup(vma: VMA, a: int, b: int, old: int) -> None:
            change_protection(vma, a, b)
            # a private VM_LOCKED VMA becoming writable is populated to break COW
            if (old & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and vma.vm_flags & VM_WRITE:
                populate_vma_page_range(self, vma, a - vma.vm_start, b - vma.vm_start)

        self._modify_flags(mm, span.start, span.start + span.count, newflags, fixup)

    def op_madvise(self, op: T.Madvise) -> None:
        span = self.layout.access(op)
        mm = self.mm(op)
        start, end = span.start, span.start + span.count
        advice = op.advice
        vmas = mm.range(start, end)
        if advice in _ADVICE_FLAGS:
            set_, clear = _ADVICE_FLAGS[advice]
            if advice == "wipeonfork" and any(v.vm_file is not None or v.vm_flags & VM_SHARED
                                              for v in vmas):
                raise TraceError(op.line, "madvise wipeonfork on a file or shared mapping (EINVAL)")
            if advice == "mergeable":
                eligible = lambda v: not v.vm_flags & VM_SHARED        # vma_ksm_compatible()
            else:
                eligible = lambda v: True
            self._modify_flags(mm, start, end,
                               lambda v: (v.vm_flags | set_) & ~clear if eligible(v) else v.vm_flags,
                               lambda v, a, b, old: self.policy.madvise(self, v, advice))
            return
        if advice in ("dontneed", "pageout", "cold") and any(v.vm_flags & VM_LOCKED for v in vmas):
            raise TraceError(op.line, f"madvise {advice} on mlocked memory (EINVAL)")
        if advice == "dontneed":                           # zap_page_range_single()
            for vma, a, b in self._each_vma(mm, start, end):
                split_huge_edges(self, mm, a, b)
                zap_pte_range(self, vma, a - vma.vm_start, b - vma.vm_start)
            reclaim_empty_pt(self, mm, start, end)
        elif advice == "collapse":
            for vma, _, _ in self._each_vma(mm, start, end):
                self.policy.madvise(self, vma, advice)
        # pageout, cold, collapse: no rmap object changes (R22); folios stay as they are

    def op_mlock(self, op: T.Mlock) -> None:
        span = self.layout.access(op)
        mm = self.mm(op)
        start, end = span.start, span.start + span.count
        if op.lock:
            if any(not v.vm_flags & (VM_READ | VM_WRITE | VM_EXEC) for v in mm.range(start, end)):
                raise TraceError(op.line, "mlock of PROT_NONE pages (ENOMEM)")
            self._modify_flags(mm, start, end, lambda v: v.vm_flags | VM_LOCKED)
            self._populate(mm, start, end)
        else:
            self._modify_flags(mm, start, end, lambda v: v.vm_flags & ~VM_LOCKED_MASK)

    def op_munmap(self, op: T.Munmap) -> None:
        span = self.layout.munmap(op)
        self.do_munmap(self.mm(op), span.start, span.start + span.count)

    def op_mremap_resize(self, op: T.MremapResize) -> None:
        peek = self.layout.peek(op)
        vma = self._one_vma(op, peek.start, peek.count, "mremap")
        if op.pages > peek.count and vma.vm_end != peek.start + peek.count:
            raise TraceError(op.line, "mremap: cannot grow in place over a mapping (ENOMEM)")
        if op.pages > peek.count and vma.vm_file is not None and vma.vm_file.shmem:
            raise TraceError(op.line, "mremap: growing a shared_anon mapping leaves pages past "
                                      "its shmem object's end (SIGBUS on access)")
        mm = self.mm(op)
        old, pages = self.layout.mremap_resize(op)
        if pages < old.count:
            self.do_munmap(mm, old.start + pages, old.start + old.count)
        elif pages > old.count:
            grow = pages - old.count
            pt_set(vma, [(vma.pages, pt_take(vma, 0, vma.pages)), (grow, None)])
            vma.vm_end += grow                              # vma_merge_extend(): no merge
            if vma.vm_flags & VM_LOCKED:
                populate_vma_page_range(self, vma, vma.pages - grow, vma.pages)

    def op_mremap_move(self, op: T.MremapMove) -> None:
        peek = self.layout.peek(op)
        self._one_vma(op, peek.start, peek.count, "mremap")
        src, dest = self.layout.mremap_move(op)
        self.move_vma(self.mm(op), src.start, src.count, dest)

    def move_vma(self, mm: MM, old: int, count: int, new: int) -> None:
        """move_vma(): copy_vma() at the new place, move the page tables, unmap the old range."""
        vma = mm.vma_at(old)
        split_huge_edges(self, mm, old, old + count)
        pgoff = vma.vm_pgoff + (old - vma.vm_start)
        new_vma = self.copy_vma(vma, new, count, pgoff)
        entries = pt_take(vma, old - vma.vm_start, old - vma.vm_start + count)
        if entries is not None:                             # move_page_tables()
            lo = new - new_vma.vm_start
            pt_set(new_vma, [(lo, pt_take(new_vma, 0, lo)), (count, entries),
                             (new_vma.pages - lo - count, pt_take(new_vma, lo + count, new_vma.pages))])
            vma.pte[old - vma.vm_start:old - vma.vm_start + count] = -1
            vma.ptef[old - vma.vm_start:old - vma.vm_start + count] = 0
            p = self.pmd_pages
            if any(pmd in mm.pt_pmds for pmd in pmd_range(old, old + count, p)):
                mm.pt_pmds.update(pmd_range(new, new + count, p))
            self.policy.pages_moved(self, new_vma, "mremap")
        self.do_munmap(mm, old, old + count)

    def copy_vma(self, vma: VMA, addr: int, count: int, pgoff: int) -> VMA:
        """copy_vma(): merge the new range with a neighbour, or a copy of vma with a cloned chain."""
        mm = vma.mm
        if vma.is_anonymous() and not self.policy.vma_has_anon(vma):
            pgoff = addr                                   # unfaulted anon: pgoff follows address
        merged = vma_merge_new_range(self, mm, addr, addr + count, pgoff, vma.vm_flags,
                                     vma.vm_file, anon_vma=vma.anon_vma, copied_from=vma)
        if merged is not None:
            return merged
        new = vm_area_dup(self, vma)
        new.vm_start, new.vm_end, new.vm_pgoff = addr, addr + count, pgoff
        self.policy.copy_vma(self, new, vma)
        mm.insert(new)
        return new

    def op_fork(self, op: T.Fork) -> None:
        """fork(); records (VMAs copied, AVCs cloned, anon_vmas allocated, PTEs copied,
        PTEs a lazy upgrade scanned) for the fork cost model."""
        self.layout.fork(op)
        child = MM(op.child)
        before = (list(self.slab.allocs), self.fork_ptes,
                  self.policy.stats().get("lazy_upgrade_ptes", 0))
        dup_mmap(self, self.mm(op), child)
        self.procs[op.child] = child
        allocs, ptes, scanned = before
        self.forks.append((self.slab.allocs[0] - allocs[0], self.slab.allocs[2] - allocs[2],
                           self.slab.allocs[1] - allocs[1], self.fork_ptes - ptes,
                           self.policy.stats().get("lazy_upgrade_ptes", 0) - scanned))

    def op_exec(self, op: T.Exec) -> None:
        self.layout.exec(op)
        self.exit_mmap(self.mm(op))
        self.procs[op.pid] = MM(op.pid)

    def op_exit(self, op: T.Exit) -> None:
        self.layout.exit(op)
        self.exit_mmap(self.mm(op))
        del self.procs[op.pid]

    def op_rmap(self, op: T.Rmap) -> None:
        span = self.layout.access(op)
        from .rmap import rmap_range
        rmap_range(self, self.mm(op), span.start, span.start + span.count, op.walk)


def change_protection(vma: VMA, a: int, b: int) -> None:
    """change_protection(): write-protect, or make exclusive anon entries writable again."""
    if vma.ptef is None:
        return
    lo, hi = a - vma.vm_start, b - vma.vm_start
    flags = vma.ptef[lo:hi]
    if vma.vm_flags & VM_WRITE:
        excl = (flags & F_EXCL) != 0
        flags[excl] |= np.uint8(F_WRITE)
    else:
        flags &= ~np.uint8(F_WRITE)


_DISPATCH = {
    T.Mmap: Machine.op_mmap, T.Touch: Machine.op_touch, T.Mprotect: Machine.op_mprotect,
    T.Madvise: Machine.op_madvise, T.Mlock: Machine.op_mlock, T.Munmap: Machine.op_munmap,
    T.MremapResize: Machine.op_mremap_resize, T.MremapMove: Machine.op_mremap_move,
    T.Fork: Machine.op_fork, T.Exec: Machine.op_exec, T.Exit: Machine.op_exit,
    T.Rmap: Machine.op_rmap,
}


def simulate(ops: Iterable[T.Op], policy: str | Policy = "eager", check: bool = False) -> Machine:
    """Replay ops on a fresh machine and return it."""
    return Machine(policy, check=check).run(ops)

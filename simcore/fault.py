"""Page faults and population (mm/memory.c, mm/huge_memory.c, mm/gup.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import InvariantError
from .mm import MM, for_each_vma_range
from .policy.base import FAULT_COW, FAULT_NEW, FAULT_PREPARE
from .pagetable import _concatenate, pmd_range, split_huge_pmd
from .slab import AVC
from .swap import do_swap_page
from .vma import (F_EXCL, F_HUGE, F_WRITE, PTE_FILE, PTE_NONE, PTE_ZERO, VM_HUGEPAGE,
                  VM_LOCKONFAULT, VM_NOHUGEPAGE, VM_SHARED, VM_WRITE, VMA, VM_ACCESS_FLAGS,
                  pt_ensure)

if TYPE_CHECKING:
    from . import trace as T
    from .machine import Machine

WX = F_WRITE | F_EXCL
_WX = np.uint8(WX)


def handle_mm_fault(m: Machine, vma: VMA, lo: int, hi: int, write: bool) -> None:
    """One access to each page [lo, hi) of vma (relative to vm_start), ascending."""
    if vma.vm_flags & VM_SHARED:
        # shmem / page cache: no anonymous folios, only a page table
        vma.mm.pt_pmds.update(pmd_range(vma.vm_start + lo, vma.vm_start + hi, m.pmd_pages))
        return
    if vma.vm_file is None and (vma.vm_flags & (VM_HUGEPAGE | VM_NOHUGEPAGE)) == VM_HUGEPAGE:
        pt_ensure(vma)
        _fault_thp_range(m, vma, lo, hi, write)
    elif vma.pte is None and write:
        _fault_new_ptes(m, vma, lo, hi)
    else:
        pt_ensure(vma)
        _fault_ptes(m, vma, lo, hi, write)


def _fault_thp_range(m: Machine, vma: VMA, lo: int, hi: int, write: bool) -> None:
    """A hugepage-eligible VMA: PMD-sized blocks take the huge path while their PMD is none."""
    p = m.pmd_pages
    base = vma.vm_start
    for pmd in pmd_range(base + lo, base + hi, p):
        a, b = max(lo, pmd * p - base), min(hi, (pmd + 1) * p - base)
        whole = pmd * p >= vma.vm_start and (pmd + 1) * p <= vma.vm_end
        if whole and pmd not in vma.mm.pt_pmds:
            blk = slice(pmd * p - base, (pmd + 1) * p - base)
            if not vma.ptef[blk.start] & F_HUGE:
                do_huge_pmd_anonymous_page(m, vma, blk, write)
                continue
            if not write or _huge_pmd_write_ok(m, vma, blk):
                continue
            split_huge_pmd(m, vma, pmd)          # do_huge_pmd_wp_page(): fallback
        _fault_ptes(m, vma, a, b, write)


def do_huge_pmd_anonymous_page(m: Machine, vma: VMA, blk: slice, write: bool) -> None:
    """do_huge_pmd_anonymous_page(): vmf_anon_prepare() first, even for a read fault;
    a read maps the huge zero page, a write a new PMD-sized folio."""
    if write:
        fid = new_anon_folios(m, vma, np.array([vma.vm_pgoff + blk.start]), nr=m.pmd_pages)
        vma.pte[blk] = fid[0]
        vma.ptef[blk] = F_WRITE | F_EXCL | F_HUGE
    else:
        avcs = m.slab.allocs[AVC]
        m.policy.anon_fault(m, vma, FAULT_PREPARE)
        m.faults["prepare"] += m.slab.allocs[AVC] != avcs   # __anon_vma_prepare() linked
        vma.pte[blk] = PTE_ZERO
        vma.ptef[blk] = F_HUGE


def _huge_pmd_write_ok(m: Machine, vma: VMA, blk: slice) -> bool:
    """do_huge_pmd_wp_page(): True if the PMD mapping can be written without a split."""
    fid = int(vma.pte[blk.start])
    if fid < 0:
        return False                       # huge zero page: split and fall back
    flags = vma.ptef[blk]
    if flags[0] & F_EXCL:
        m.faults["reuse"] += not flags[0] & F_WRITE   # a write fault only if read-only
        flags |= F_WRITE
        return True
    if m.folios.mapcount[fid] == m.pmd_pages:     # only this PMD maps it: reuse
        m.faults["reuse"] += 1
        m.policy.move_anon_rmap(m, vma, np.array([fid]))
        flags |= _WX
        return True
    return False


# _fault_new_ptes(): up to this many pages are faulted row by row (FolioTable.alloc_few())
FEW_PAGES = 8


def _fault_new_ptes(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """_fault_ptes() for a write to a VMA without page-table entries yet: do_anonymous_page()
    for every page of [lo, hi).  (A few pages -- most such VMAs have 1-4 -- entry by entry:
    new_anon_folios() with FolioTable.alloc_few(), the same folios, entries and counts.)"""
    vma.mm.pt_pmds.update(pmd_range(vma.vm_start + lo, vma.vm_start + hi, m.pmd_pages))
    pt_ensure(vma)                       # before the policy's fault hook, which may read it
    n = hi - lo
    if n > FEW_PAGES:
        vma.pte[lo:hi] = new_anon_folios(m, vma, np.arange(vma.vm_pgoff + lo, vma.vm_pgoff + hi))
        vma.ptef[lo:hi] = _WX
        return
    mapping, mkind = vmf_anon_prepare(m, vma, FAULT_NEW, n)
    ids = m.folios.alloc_few(mapping, mkind, vma.vm_pgoff + lo, n)
    m.policy.folios_added(m, vma, mkind, n)
    pte, ptef = vma.pte, vma.ptef
    for i, fid in enumerate(ids, lo):
        pte[i] = fid
        ptef[i] = WX


def _fault_ptes(m: Machine, vma: VMA, lo: int, hi: int, write: bool) -> None:
    """handle_pte_fault() over [lo, hi): do_anonymous_page / do_cow_fault / do_wp_page."""
    vma.mm.pt_pmds.update(pmd_range(vma.vm_start + lo, vma.vm_start + hi, m.pmd_pages))
    pte, flags = vma.pte[lo:hi], vma.ptef[lo:hi]
    if m.swapped:
        do_swap_page(m, vma, lo, hi)       # swap entries first (swap.py)
    if not write:
        none = pte == PTE_NONE
        if none.any():
            pte[none] = PTE_ZERO if vma.vm_file is None else PTE_FILE
        return
    folios = m.folios
    if not folios.large and pte.min() >= 0 and not (flags & (F_WRITE | F_EXCL)).any():
        # every page is a shared COW page (after fork): copy those still mapped elsewhere
        if (folios.mapcount[pte] > 1).all():
            wp_page_copy(m, vma, slice(lo, hi))
            return
    new = (pte < 0).nonzero()[0]          # none, zero page or page cache: a new anon folio
    if len(new):
        pte[new] = new_anon_folios(m, vma, vma.vm_pgoff + lo + new)
        flags[new] = _WX
    ro = ((flags & F_WRITE) == 0).nonzero()[0]
    if len(ro):
        do_wp_page(m, vma, lo + ro)


def do_wp_page(m: Machine, vma: VMA, idx: np.ndarray) -> None:
    """do_wp_page() for present read-only anon entries idx of vma."""
    pte, flags, folios = vma.pte, vma.ptef, m.folios
    excl = (flags[idx] & F_EXCL) != 0
    if excl.any():
        flags[idx[excl]] |= np.uint8(F_WRITE)        # PageAnonExclusive: reuse
        m.faults["reuse"] += int(np.count_nonzero(excl))
        idx = idx[~excl]
        if not len(idx):
            return
    ids = pte[idx]
    if folios.large:
        small = folios.nr[ids] == 1
        for i in idx[~small]:                        # large folios: one page at a time
            _wp_large(m, vma, int(i))
        idx, ids = idx[small], ids[small]
    reuse = folios.mapcount[ids] == 1                # wp_can_reuse_anon_folio()
    if reuse.any():
        m.faults["reuse"] += int(np.count_nonzero(reuse))
        m.policy.move_anon_rmap(m, vma, ids[reuse])
        flags[idx[reuse]] |= _WX
        idx = idx[~reuse]
    if len(idx):
        wp_page_copy(m, vma, idx)


def _wp_large(m: Machine, vma: VMA, i: int) -> None:
    fid = int(vma.pte[i])
    if m.folios.mapcount[fid] == np.count_nonzero(vma.pte == fid):   # all mappings are ours
        m.faults["reuse"] += 1
        m.policy.move_anon_rmap(m, vma, np.array([fid]))
        vma.ptef[vma.pte == fid] |= _WX
    else:
        wp_page_copy(m, vma, np.array([i]))


def wp_page_copy(m: Machine, vma: VMA, idx: np.ndarray | slice) -> None:
    """wp_page_copy(): anon_vma_prepare(), a new exclusive folio per page, old mapping dropped
    (idx: entries of vma, an index array or a slice)."""
    if isinstance(idx, slice):
        old = vma.pte[idx].copy()
        index = np.arange(vma.vm_pgoff + idx.start, vma.vm_pgoff + idx.stop)
    else:
        old = vma.pte[idx]                           # fancy indexing: already a copy
        index = vma.vm_pgoff + idx
    vma.pte[idx] = new_anon_folios(m, vma, index, fault=FAULT_COW)
    vma.ptef[idx] = _WX
    m.folios.put(old)


def vmf_anon_prepare(m: Machine, vma: VMA, fault: str, n: int) -> tuple[int, int]:
    """vmf_anon_prepare() before n new folios of vma (fault: FAULT_NEW, or FAULT_COW from
    wp_page_copy()): the policy's anon_fault(), counted -> the folios' (mapping, mkind)."""
    avcs = m.slab.allocs[AVC]
    mapping, mkind = m.policy.anon_fault(m, vma, fault)
    faults = m.faults                                # counts for simcore/timemodel.py
    faults[fault] += n
    faults["prepare"] += m.slab.allocs[AVC] != avcs  # __anon_vma_prepare() linked an AVC
    return mapping, mkind


def new_anon_folios(m: Machine, vma: VMA, index: np.ndarray, nr: int = 1,
                    fault: str = FAULT_NEW) -> np.ndarray:
    """vmf_anon_prepare() + folio_add_new_anon_rmap() for folios at `index` in vma
    (fault: FAULT_NEW, or FAULT_COW from wp_page_copy())."""
    mapping, mkind = vmf_anon_prepare(m, vma, fault, len(index))
    ids = m.folios.alloc(mapping, mkind, index, nr)
    m.policy.folios_added(m, vma, mkind, len(ids))
    return ids


def populate_vma_page_range(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """populate_vma_page_range(): write faults for private writable VMAs (to break COW),
    read faults otherwise; nothing for VM_LOCKONFAULT or PROT_NONE."""
    if vma.vm_flags & VM_LOCKONFAULT or not vma.vm_flags & VM_ACCESS_FLAGS:
        return
    write = (vma.vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE
    handle_mm_fault(m, vma, lo, hi, write)


def mm_populate(m: Machine, mm: MM, start: int, end: int) -> None:
    """__mm_populate(): populate_vma_page_range() over every VMA of [start, end)."""
    for vma, a, b in for_each_vma_range(mm, start, end):
        populate_vma_page_range(m, vma, a - vma.vm_start, b - vma.vm_start)


def do_user_addr_fault(m: Machine, op: T.Touch,
                       span: tuple[int, int, VMA | None] | None = None) -> None:
    """The trace's `touch`: the process accesses each page of the range (one
    handle_mm_fault() per page, via do_user_addr_fault()).  span: from CowBatch.add() of a
    touch it did not take, the (start, count) that m.layout.access(op) already gave and the
    VMA holding all of it (or None), which its vma_lookup() found."""
    if span is None:
        (start, count), vma = m.layout.access(op), None
    else:
        start, count, vma = span
    if vma is None:
        mm = m.procs[op.pid]
        vma = mm.vma_lookup(start)
        if vma is None or vma.vm_end < start + count:         # several VMAs: the iterator
            for vma, a, b in for_each_vma_range(mm, start, start + count):
                handle_mm_fault(m, vma, a - vma.vm_start, b - vma.vm_start, op.write)
            return
    handle_mm_fault(m, vma, start - vma.vm_start, start + count - vma.vm_start, op.write)


# ---- a run of write touches as one array pass ---------------------------------
class CowBatch:
    """Consecutive write `touch`es of one process, each of a range inside one VMA the policy
    accepts (Policy.cow_batchable: mainline, a VMA that has an anon_vma; no two of the same
    VMA), collected so that their copy-on-write faults (wp_page_copy() of every page) are
    carried out as one array operation.

    Only where the order of those faults cannot be observed: the policy says its
    anon_fault()/folios_added() of such a VMA touch no folio or page table and no state
    another fault reads (Policy.batch_cow_faults, Policy.cow_batchable); only small folios
    and no swap entries; the pages of distinct VMAs of one mm map distinct small folios, so
    no fault of the run reads what another changed; the shared folios keep a mapping
    (mapcount > 1), so nothing is freed and the folio ids come out in the order one fault
    after another would allocate them.  A range whose entries are not all COW-shared goes
    through Machine.apply() in its place in the run, after the ranges before it.

    A write touch of a VMA without page-table entries yet (the first write to a fresh VMA,
    no COW) is not queued: add() faults it itself (_fault_new_ptes(), what handle_mm_fault()
    does for it), after the touches queued before it -- one trip less through the run loop."""
    __slots__ = ("m", "pid", "queue", "seen", "batchable", "span")

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.batchable = m.policy.cow_batchable
        self.pid = -1
        self.queue: list[tuple[T.Touch, VMA, int, int]] = []   # (op, vma, lo, hi)
        self.seen: set[int] = set()
        # add(): (start, count, VMA or None) of a refused op, for do_user_addr_fault()
        self.span: tuple[int, int, VMA | None] | None = None

    def add(self, op: T.Touch) -> bool:
        """Queue op (or, a first write to a VMA without page-table entries, fault it now);
        False: op is not one for the batch (the caller flushes, then applies it, with
        ``span`` -- if not None, the (start, count) the layout gave op and the VMA holding
        all of it, or None -- for do_user_addr_fault())."""
        m = self.m
        self.span = None
        if not op.write or m.swapped or m.folios.large:
            return False
        if op.pid != self.pid and self.queue:
            self.flush()
        self.pid = op.pid
        mm = m.procs.get(op.pid)
        if mm is None:
            return False
        try:
            start, count = m.layout.access(op)
        except Exception:            # a bad op: Machine.apply() raises it, the run before it done
            return False
        vma = mm.vma_lookup(start)
        # (touches change no layout and no VMA: the span is still op's after a flush)
        if vma is None or vma.vm_end < start + count:
            self.span = (start, count, None)
            return False
        if vma.pte is None and not vma.vm_flags & (VM_SHARED | VM_HUGEPAGE):
            # a first write to a VMA without page-table entries: handle_mm_fault() takes it
            # to _fault_new_ptes(); done here, after the touches queued before it
            if self.queue:
                self.flush()
            lo = start - vma.vm_start
            try:
                _fault_new_ptes(m, vma, lo, lo + count)
            except InvariantError as exc:
                exc.attach(op)                     # as Machine.run() does for its ops
                raise
            m.ops_done += 1
            return True
        if (vma.pte is None or vma.vm_flags & (VM_SHARED | VM_HUGEPAGE) or vma.id in self.seen
                or not self.batchable(vma)):
            self.span = (start, count, vma)
            return False
        self.seen.add(vma.id)
        lo = start - vma.vm_start
        self.queue.append((op, vma, lo, lo + count))
        return True

    def flush(self) -> None:
        """Carry out the queued touches in order (handle_mm_fault() -> _fault_ptes()), the
        runs of all-COW-shared ranges as one wp_page_copy() pass each."""
        m, queue = self.m, self.queue
        if not queue:
            return
        self.queue, self.seen = [], set()
        # the entries and flags of every range, concatenated (a whole VMA's arrays unsliced)
        ptes, flags, sizes = [], [], []
        for _, v, a, b in queue:
            if b - a == len(v.pte):
                ptes.append(v.pte)
                flags.append(v.ptef)
            else:
                ptes.append(v.pte[a:b])
                flags.append(v.ptef[a:b])
            sizes.append(b - a)
        total = sum(sizes)
        old, flg = _concatenate(ptes, total), _concatenate(flags, total)
        ends = np.cumsum(sizes)
        shared = (old >= 0) & ((flg & _WX) == 0)          # present, read-only, not exclusive
        shared &= m.folios.mapcount[np.where(shared, old, 0)] > 1
        starts = np.empty_like(ends)
        starts[0], starts[1:] = 0, ends[:-1]
        ok = np.logical_and.reduceat(shared, starts).tolist()
        n, i = len(queue), 0
        while i < n:
            if not ok[i]:
                m.apply(queue[i][0])                     # the general fault path
                i += 1
                continue
            j = i + 1
            while j < n and ok[j]:
                j += 1
            self._copy(queue[i:j], old[starts[i]:ends[j - 1]])
            m.ops_done += j - i
            i = j

    def _copy(self, run: list[tuple[T.Touch, VMA, int, int]], old: np.ndarray) -> None:
        """wp_page_copy() of every page of each range, as _fault_ptes() would one after
        another: vmf_anon_prepare() (nothing to prepare: Policy.cow_batchable), a new
        exclusive folio per page, the old mapping dropped (nothing freed: each old folio is
        mapped elsewhere too)."""
        m = self.m
        policy, folios, p = m.policy, m.folios, m.pmd_pages
        anon_fault = policy.anon_fault
        targets = [anon_fault(m, v, FAULT_COW) for _, v, _, _ in run]
        sizes = np.array([b - a for _, _, a, b in run])
        first = np.array([v.vm_start + a for _, v, a, _ in run])     # one mm: the run's pid
        pmds, last = first // p, (first + sizes - 1) // p
        pt_pmds = run[0][1].mm.pt_pmds
        if (last - pmds).max() <= 1:
            pt_pmds.update(pmds.tolist())
            pt_pmds.update(last.tolist())
        else:
            for a, b in zip(pmds.tolist(), last.tolist()):
                pt_pmds.update(range(a, b + 1))
        ends = np.cumsum(sizes)
        pgoff = np.array([v.vm_pgoff + a for _, v, a, _ in run])
        index = np.repeat(pgoff - (ends - sizes), sizes) + np.arange(len(old))
        mkind = targets[0][1]
        if folios.nfree or any(t[1] != mkind for t in targets):
            # freed rows are reused from the top of the stack: one range after another
            ids = np.concatenate([folios.alloc(mapping, kind, index[e - n:e])
                                  for (mapping, kind), n, e in zip(targets, sizes.tolist(),
                                                                   ends.tolist())])
        else:                                            # fresh rows, in fault order
            ids = folios.alloc(np.repeat([t[0] for t in targets], sizes), mkind, index)
        m.faults[FAULT_COW] += len(old)
        added = policy.folios_added
        wx = np.full(len(ids), _WX, np.uint8)
        a = 0
        for (_, v, lo, hi), (_, kind) in zip(run, targets):
            b = a + hi - lo
            if b - a == len(v.pte):      # every entry of the VMA: it takes slices of the new
                v.pte, v.ptef = ids[a:b], wx[a:b]        # arrays, as copy_page_ranges() gives
            else:
                v.pte[lo:hi] = ids[a:b]
                v.ptef[lo:hi] = _WX
            added(m, v, kind, b - a)
            a = b
        folios.put(old)

"""mremap() (mm/mremap.c): shrink and expand in place, and moves (remap_move(), move_vma(),
copy_vma() of mm/vma.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import trace as T
from .errors import InvariantError
from .trace import TraceError
from .fault import mm_populate
from .mm import MM
from .mmap import do_vmi_munmap
from .pagetable import pmd_range, split_huge_edges
from .vma import VM_LOCKED, VMA, pt_set, pt_take, vm_area_dup, vma_merge_new_range

if TYPE_CHECKING:
    from .machine import Machine


def mremap_resize(m: Machine, op: T.MremapResize) -> None:
    """mremap() without MREMAP_MAYMOVE of a whole region (mremap_at())."""
    peek = m.layout.peek(op)
    mm = m.procs[op.pid]
    end = peek.start + peek.count
    if op.pages < peek.count:
        m.layout.mremap_resize(op)
        shrink_vma(m, mm, peek.start + op.pages, end)
    elif op.pages > peek.count:
        expand_vma(m, op, mm, end, op.pages - peek.count)
    else:
        m.layout.mremap_resize(op)                      # MREMAP_NO_RESIZE


def shrink_vma(m: Machine, mm: MM, start: int, end: int) -> None:
    """shrink_vma(): do_vmi_munmap() of the tail, whatever VMAs it spans (check_prep_vma()
    lets a shrink cross VMA boundaries)."""
    do_vmi_munmap(m, mm, start, end)


def expand_vma(m: Machine, op: T.MremapResize, mm: MM, end: int, delta: int) -> None:
    """expand_vma() -> expand_vma_in_place().  A trace grows the VMA that holds its region's
    last page (the kernel executor calls mremap() on that page alone: check_prep_vma()
    refuses an old range that crosses the end of its VMA)."""
    vma = mm.vma_lookup(end - 1)
    if vma is None:
        raise TraceError(op.line, "mremap: no VMA at the region's last page (EFAULT)")
    if vma.vm_end != end:                               # vrm_can_expand_in_place()
        raise TraceError(op.line, "mremap: cannot grow in place over a mapping (ENOMEM)")
    if vma.vm_file is not None and vma.vm_file.shmem:
        raise TraceError(op.line, "mremap: growing a shared_anon mapping leaves pages past "
                                  "its shmem object's end (SIGBUS on access)")
    m.layout.mremap_resize(op)
    vma = vma_merge_extend(m, vma, delta)
    if vma.vm_flags & VM_LOCKED:                        # vrm->populate_expand: mm_populate()
        mm_populate(m, mm, end, end + delta)


def vma_merge_extend(m: Machine, vma: VMA, delta: int) -> VMA:
    """vma_merge_extend(): vma_merge_new_range() of [vm_end, vm_end + delta) with vma as prev
    (and as the source of flags, file, pgoff and anon_vma; vmg->middle is NULL), so the
    extension also absorbs the next VMA when it reaches it and R15 allows the merge."""
    merged = vma_merge_new_range(m, vma.mm, vma.vm_end, vma.vm_end + delta,
                                 vma.vm_pgoff + vma.pages, vma.vm_flags, vma.vm_file,
                                 anon_vma=m.policy.vma_anon_vma(vma), extended=vma)
    if merged is not vma:           # the kernel's -ENOMEM; every policy must allow this merge
        raise InvariantError("merge", f"vma_merge_extend() did not extend {vma!r} by {delta} "
                                      "pages (R15: a VMA always merges with its own extension)")
    return merged


def mremap_move(m: Machine, op: T.MremapMove) -> None:
    """mremap(MREMAP_MAYMOVE | MREMAP_FIXED) with old_len == new_len: remap_move()."""
    src, dest = m.layout.mremap_move(op)
    remap_move(m, m.procs[op.pid], src.start, src.count, dest)


def remap_move(m: Machine, mm: MM, start: int, count: int, new: int) -> None:
    """remap_move() (6.17+): every VMA in [start, start + count) moves by its own
    mremap_to() -> move_vma(), to the same offset from new as from start, so the gaps
    between VMAs keep their size.  The kernel refuses (EFAULT) a gap at the start, and a
    VMA that is not vma_multi_allowed() (userfaultfd armed, or a file whose
    get_unmapped_area may not honour MAP_FIXED) when the range spans more than it; no
    trace can express either (the layout rejects the first, the second needs uffd or an
    unusual file system)."""
    end, addr = start + count, start
    while (vma := mm.find_vma(addr)) is not None and vma.vm_start < end:
        a, b = max(addr, vma.vm_start), min(end, vma.vm_end)   # for_each_vma_range(), gaps skipped
        move_vma(m, mm, a, b - a, new + (a - start))
        addr = b


def move_vma(m: Machine, mm: MM, old: int, count: int, new: int) -> None:
    """move_vma(): copy_vma() at the new place, move_page_tables(), unmap the old range."""
    vma = mm.vma_lookup(old)
    split_huge_edges(m, mm, old, old + count)
    pgoff = vma.vm_pgoff + (old - vma.vm_start)
    new_vma = copy_vma(m, vma, new, count, pgoff)
    entries = pt_take(vma, old - vma.vm_start, old - vma.vm_start + count)
    if entries is not None:                             # move_page_tables()
        lo = new - new_vma.vm_start
        pt_set(new_vma, [(lo, pt_take(new_vma, 0, lo)), (count, entries),
                         (new_vma.pages - lo - count, pt_take(new_vma, lo + count, new_vma.pages))])
        vma.pte[old - vma.vm_start:old - vma.vm_start + count] = -1
        vma.ptef[old - vma.vm_start:old - vma.vm_start + count] = 0
        p = m.pmd_pages
        if any(pmd in mm.pt_pmds for pmd in pmd_range(old, old + count, p)):
            mm.pt_pmds.update(pmd_range(new, new + count, p))
        m.policy.pages_moved(m, new_vma, "mremap")
    do_vmi_munmap(m, mm, old, old + count)


def copy_vma(m: Machine, vma: VMA, addr: int, count: int, pgoff: int) -> VMA:
    """copy_vma(): merge the new range with a neighbour, or a copy of vma with a cloned chain."""
    mm = vma.mm
    if vma.is_anonymous() and not m.policy.vma_has_anon(vma):
        pgoff = addr                                   # unfaulted anon: pgoff follows address
    merged = vma_merge_new_range(m, mm, addr, addr + count, pgoff, vma.vm_flags,
                                 vma.vm_file, anon_vma=m.policy.vma_anon_vma(vma),
                                 copied_from=vma)
    if merged is not None:
        return merged
    new = vm_area_dup(m, vma)
    new.vm_start, new.vm_end, new.vm_pgoff = addr, addr + count, pgoff
    m.policy.copy_vma(m, new, vma)
    mm.insert(new)
    return new

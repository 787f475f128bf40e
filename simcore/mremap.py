"""mremap() (mm/mremap.c): resize in place, and move_vma() with copy_vma() (mm/vma.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import trace as T
from .trace import TraceError
from .fault import populate_vma_page_range
from .mm import MM
from .mmap import do_vmi_munmap
from .pagetable import pmd_range, split_huge_edges
from .vma import VM_LOCKED, VMA, pt_set, pt_take, vm_area_dup, vma_merge_new_range

if TYPE_CHECKING:
    from .machine import Machine


def check_prep_vma(m: Machine, op: T.MremapResize | T.MremapMove, start: int, count: int) -> VMA:
    """check_prep_vma(): vma_lookup() of the old range, which must lie in one VMA (EFAULT)."""
    vma = m.procs[op.pid].vma_lookup(start)
    if vma is None or vma.vm_end < start + count:
        raise TraceError(op.line, "mremap: the range spans more than one VMA (EFAULT)")
    return vma


def mremap_resize(m: Machine, op: T.MremapResize) -> None:
    """mremap() without MREMAP_MAYMOVE: shrink (do_vmi_munmap() of the tail) or expand in place
    (vma_merge_extend(), which here never merges)."""
    peek = m.layout.peek(op)
    vma = check_prep_vma(m, op, peek.start, peek.count)
    if op.pages > peek.count and vma.vm_end != peek.start + peek.count:
        raise TraceError(op.line, "mremap: cannot grow in place over a mapping (ENOMEM)")
    if op.pages > peek.count and vma.vm_file is not None and vma.vm_file.shmem:
        raise TraceError(op.line, "mremap: growing a shared_anon mapping leaves pages past "
                                  "its shmem object's end (SIGBUS on access)")
    mm = m.procs[op.pid]
    old, pages = m.layout.mremap_resize(op)
    if pages < old.count:
        do_vmi_munmap(m, mm, old.start + pages, old.start + old.count)
    elif pages > old.count:
        grow = pages - old.count
        pt_set(vma, [(vma.pages, pt_take(vma, 0, vma.pages)), (grow, None)])
        vma.vm_end += grow                              # vma_merge_extend(): no merge
        m.policy.vma_adjust(m, vma)
        if vma.vm_flags & VM_LOCKED:                    # vrm->populate_expand: mm_populate()
            populate_vma_page_range(m, vma, vma.pages - grow, vma.pages)


def mremap_move(m: Machine, op: T.MremapMove) -> None:
    """mremap(MREMAP_MAYMOVE | MREMAP_FIXED) of a range inside one VMA: move_vma()."""
    peek = m.layout.peek(op)
    check_prep_vma(m, op, peek.start, peek.count)
    src, dest = m.layout.mremap_move(op)
    move_vma(m, m.procs[op.pid], src.start, src.count, dest)


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

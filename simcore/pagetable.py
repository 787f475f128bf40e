"""Page-table work that moves or drops entries (mm/memory.c, mm/mremap.c)."""
from __future__ import annotations

from itertools import accumulate
from typing import TYPE_CHECKING

import numpy as np

from .errors import InvariantError
from .vma import F_EXCL, F_HUGE, F_WRITE, PTE_NONE, PTE_SWAP, VMA

if TYPE_CHECKING:
    from .machine import Machine
    from .mm import MM


def pmd_range(start: int, end: int, pmd_pages: int) -> range:
    """PMD indices overlapping pages [start, end)."""
    return range(start // pmd_pages, (end - 1) // pmd_pages + 1)


def zap_pte_range(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """zap_pte_range(): drop entries [lo, hi) of vma, releasing folio mappings."""
    if vma.pte is None:
        return
    pte = vma.pte[lo:hi]
    m.folios.put(pte[pte >= 0])
    pte[:] = PTE_NONE
    vma.ptef[lo:hi] = 0


def free_pgtables(m: Machine, mm: MM, start: int, end: int) -> None:
    """free_pgtables(): PTE tables of [start, end) go unless a remaining VMA overlaps their PMD."""
    p = m.pmd_pages
    for pmd in pmd_range(start, end, p):
        if pmd in mm.pt_pmds and not mm.vmas_in_range(pmd * p, (pmd + 1) * p):
            mm.pt_pmds.discard(pmd)


def reclaim_empty_pt(m: Machine, mm: MM, start: int, end: int) -> None:
    """CONFIG_PT_RECLAIM: MADV_DONTNEED frees PTE tables left with no entries."""
    p = m.pmd_pages
    for pmd in pmd_range(start, end, p):
        if pmd not in mm.pt_pmds:
            continue
        lo, hi = pmd * p, (pmd + 1) * p
        busy = False
        for vma in mm.vmas_in_range(lo, hi):
            if vma.pte is not None:
                a, b = max(lo, vma.vm_start) - vma.vm_start, min(hi, vma.vm_end) - vma.vm_start
                if (vma.pte[a:b] != PTE_NONE).any():
                    busy = True
                    break
        if not busy:
            mm.pt_pmds.discard(pmd)


def _concatenate(arrays: list[np.ndarray], n: int) -> np.ndarray:
    """np.concatenate() of 1-D arrays of one dtype with n entries in all, as a new writable
    array, through one bytearray.join() (a fork concatenates ~10^3 arrays of a few entries
    each, which np.concatenate() takes ~4 times longer to do)."""
    dtype = arrays[0].dtype
    try:
        out = np.frombuffer(bytearray().join(arrays), dtype)
    except (BufferError, ValueError, TypeError):    # an array that is not contiguous
        return np.concatenate(arrays)
    if len(out) != n:
        raise InvariantError("pt-dtype", f"page-table arrays of mixed dtypes ({dtype} first)")
    return out


def copy_page_range(m: Machine, dst: VMA, src: VMA) -> None:
    """copy_page_range(): share every present entry; anon folios become COW (write-protected,
    not exclusive) in both processes (folio_try_dup_anon_rmap_pte + ptep_set_wrprotect)."""
    copy_page_ranges(m, [dst], [src])


def copy_page_ranges(m: Machine, dsts: list[VMA], srcs: list[VMA]) -> None:
    """copy_page_range() for every (dsts[i], srcs[i]) pair of one dup_mmap() (one source mm,
    one destination mm), as one array operation: the sources' entries are concatenated, their
    folios get one more mapping each and lose write/exclusive at once, and every copy keeps
    its slice (a view) of the new arrays; every source its slice of the new flags, unless no
    flag changed (a parent forking again with every entry COW already keeps its arrays)."""
    if not srcs:
        return
    p = m.pmd_pages
    dst_mm, src_mm = dsts[0].mm, srcs[0].mm
    # the PTE tables that exist in the source, of the PMDs of each range (lists: numpy's
    # conversion of ~10^3 ints costs more than this; most ranges lie in one PMD)
    lo = [src.vm_start // p for src in srcs]
    hi = [(src.vm_end - 1) // p for src in srcs]
    if lo != hi:
        lo = [pmd for a, b in zip(lo, hi) for pmd in range(a, b + 1)]
    dst_mm.pt_pmds |= src_mm.pt_pmds.intersection(lo)
    ptes = [src.pte for src in srcs]
    lens = [len(t) for t in ptes if t is not None]
    if len(lens) < len(srcs):                       # only the sources with entries
        if not lens:
            return
        with_pt = [i for i, t in enumerate(ptes) if t is not None]
        dsts, srcs = [dsts[i] for i in with_pt], [srcs[i] for i in with_pt]
        ptes = [src.pte for src in srcs]
    wx = F_WRITE | F_EXCL
    bounds = list(accumulate(lens, initial=0))
    if len(srcs) == 1:
        pte, ptef = ptes[0], srcs[0].ptef           # the source's flags change in place
    else:
        pte = _concatenate(ptes, bounds[-1])        # new arrays: the sources' flags become
        ptef = _concatenate([src.ptef for src in srcs], bounds[-1])   # views of ptef if
        #                                             any change
    anon = pte >= 0
    nanon = int(np.count_nonzero(anon))
    if nanon == len(pte):                           # every entry is an anon folio
        m.fork_ptes += nanon
        m.folios.get(pte)
        changed = bool(np.bitwise_or.reduce(ptef) & wx)   # else all are COW already
        if changed:
            ptef &= ~np.uint8(wx)
    else:
        m.fork_ptes += int(np.count_nonzero(pte != PTE_NONE))
        changed = bool(m.swapped)
        if nanon:
            m.folios.get(pte[anon])
            flags = ptef[anon]
            if np.bitwise_or.reduce(flags) & wx:
                ptef[anon] = flags & ~np.uint8(wx)
                changed = True
        if m.swapped:                               # copy_nonpresent_pte(): swap entries
            ptef[pte == PTE_SWAP] &= ~np.uint8(F_EXCL)   # lose pte_swp_exclusive
    if len(srcs) == 1:
        dst = dsts[0]
        dst.pte, dst.ptef = pte.copy(), ptef.copy()
        return
    if changed:                 # the sources' entries are unchanged, their flags are these
        for src, a, b in zip(srcs, bounds, bounds[1:]):
            src.ptef = ptef[a:b]
        ptef = ptef.copy()
    for dst, a, b in zip(dsts, bounds, bounds[1:]):   # pte is a new array already
        dst.pte = pte[a:b]
        dst.ptef = ptef[a:b]


def split_huge_pmd(m: Machine, vma: VMA, pmd: int) -> None:
    """__split_huge_pmd(): a PMD mapping becomes a PTE table of the same pages."""
    p = m.pmd_pages
    lo, hi = pmd * p - vma.vm_start, (pmd + 1) * p - vma.vm_start
    vma.ptef[lo:hi] &= ~np.uint8(F_HUGE)
    vma.mm.pt_pmds.add(pmd)


def split_huge_edges(m: Machine, mm: MM, start: int, end: int, vma: VMA | None = None) -> None:
    """vma_adjust_trans_huge() for both ends of a range about to become VMA boundaries
    (vma: the VMA holding [start, end), if the caller has it: no lookup of what it holds)."""
    if vma is None:
        split_huge_at(m, mm, start)
        split_huge_at(m, mm, end)
        return
    p, ptef = m.pmd_pages, vma.ptef
    if start % p and ptef is not None and ptef[start - vma.vm_start] & F_HUGE:
        split_huge_pmd(m, vma, start // p)
    if end % p:
        if end < vma.vm_end:
            if ptef is not None and ptef[end - vma.vm_start] & F_HUGE:
                split_huge_pmd(m, vma, end // p)
        else:
            split_huge_at(m, mm, end)                  # the next VMA's first page, if any


def split_huge_at(m: Machine, mm: MM, addr: int) -> None:
    """vma_adjust_trans_huge(): a VMA boundary inside a PMD-mapped range splits that PMD."""
    p = m.pmd_pages
    if addr % p == 0:
        return
    vma = mm.vma_lookup(addr)
    if vma is None or vma.ptef is None:
        return
    i = addr - vma.vm_start
    if vma.ptef[i] & F_HUGE:
        split_huge_pmd(m, vma, addr // p)

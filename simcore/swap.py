"""Swap-out by MADV_PAGEOUT / process_madvise() and swap-in (mm/madvise.c, mm/vmscan.c,
mm/rmap.c, mm/memory.c), to the depth that object counts and rmap walks need.

Pageout (``madvise_pageout``) runs only on a machine with a swap device (``Machine.swap``,
Android's zram; the profile's ``swap`` field).  Without one, ``shrink_folio_list()`` fails
``add_to_swap()`` before ``try_to_unmap()`` and keeps the folio: no walk, nothing changes
(the reference machine of tests/test_corpus.py has no swap, rule R22).

With swap, per VMA of the range (``madvise_cold_or_pageout_pte_range()``):
- a folio is taken only if this is its only mapping (``folio_mapcount() != nr`` ->
  ``continue``: "do not interfere with other mappings of this folio"); large folios are
  skipped here (a partial one would be split; Android runs with THP off);
- ``reclaim_pages()`` -> ``shrink_folio_list(ignore_references=true)``: no
  ``folio_referenced()`` pass; ``add_to_swap()``, then ``try_to_unmap()``: one rmap walk
  (``rmap_walk()``, through the policy: eager's anon_vma interval tree, lazy's VMA walk,
  the COW-context walk) that stops when the folio is no longer mapped
  (``rwc->done = folio_not_mapped``), counted under the walk kind ``pageout``;
- ``try_to_unmap_one()`` replaces each PTE by a swap entry (``PTE_SWAP``) that keeps the
  page's exclusive bit (``pte_swp_mkexclusive()`` when ``PageAnonExclusive``); the folio
  is freed after the (synchronous, zram) writeback.

A walk that does not find every mapping leaves the folio mapped (``folio_mapped()`` after
``try_to_unmap()``: activate) and is counted in ``pageout_incomplete`` (only the documented
unsound lazy variants can do that).

Swap-in (``do_swap_page()``) on any access to a swap entry: a new order-0 folio, mapped
with ``RMAP_EXCLUSIVE`` and writable (if ``VM_WRITE``) when the entry was exclusive, else
read-only and ``__folio_set_anon()`` picks the *root* anon_vma ("if the folio isn't
exclusive to this vma, we must use the _oldest_ possible anon_vma"); a write to it then
goes through ``do_wp_page()``.  Simplification (counts of VMAs, anon_vmas and AVCs are
unaffected): swap slots have no identity here, so two processes that fault one shared swap
entry get a folio each, where the kernel's swap cache would give them one folio with
mapcount 2; and exclusivity is the PTE bit alone (the kernel also treats a swap entry with
swap count 1 as exclusive on the zram fast path).  ``fork`` clears the bit of copied swap
entries (``copy_nonpresent_pte()``: ``pte_swp_clear_exclusive()``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import InvariantError
from .mm import MM, for_each_vma_range
from .rmap import WalkCost, rmap_walk
from .vma import F_EXCL, F_WRITE, PTE_SWAP, VM_SHARED, VM_WRITE, VMA

if TYPE_CHECKING:
    from .machine import Machine

PAGEOUT_WALK = "pageout"      # m.walk_costs key of try_to_unmap() walks by MADV_PAGEOUT


def madvise_pageout(m: Machine, mm: MM, start: int, end: int) -> None:
    """madvise_pageout() over [start, end) of mm (process_madvise() of a cached app too)."""
    if not m.swap:
        return                                  # add_to_swap() fails: the folio is kept
    cost = m.walk_costs.get(PAGEOUT_WALK)
    if cost is None:
        cost = m.walk_costs[PAGEOUT_WALK] = WalkCost.for_policy(m.policy)
    f = m.folios
    for vma, a, b in for_each_vma_range(mm, start, end):
        if vma.pte is None or vma.vm_flags & VM_SHARED:
            continue                            # shmem: no anonymous folios of ours
        ids = vma.pte[a - vma.vm_start:b - vma.vm_start]
        ids = np.unique(ids[ids >= 0])
        if not len(ids):
            continue
        small = f.nr[ids] == 1
        take = ids[small & (f.mapcount[ids] == 1)]
        m.pageout_skipped += len(ids) - len(take)
        for fid in take.tolist():
            try_to_unmap_swap(m, fid, cost)


def try_to_unmap_swap(m: Machine, fid: int, cost: WalkCost) -> None:
    """try_to_unmap() of folio fid after add_to_swap(): each mapping found becomes a swap
    entry, then the folio is freed (__remove_mapping() after writeback)."""
    m.policy.before_walk(m, fid, PAGEOUT_WALK)
    want = int(m.folios.mapcount[fid])
    found = rmap_walk(m, fid, cost, early_exit=True)
    if len(found) < want:
        m.pageout_incomplete += 1               # folio_mapped(): activate, keep it
        return
    for pid, page in found:
        vma = m.procs[pid].vma_lookup(page)
        i = page - vma.vm_start
        if int(vma.pte[i]) != fid:
            raise InvariantError("pageout", f"walk of folio {fid} found {pid}:{page}, "
                                            f"which maps {int(vma.pte[i])}")
        vma.pte[i] = PTE_SWAP
        vma.ptef[i] &= np.uint8(F_EXCL)         # pte_swp_mkexclusive() keeps only this bit
    m.swapped = True
    m.pageout_pages += len(found)
    m.folios.put(np.full(len(found), fid, np.int32))


def do_swap_page(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """do_swap_page() for every swap entry in [lo, hi) of vma (relative to vm_start)."""
    pte, flags = vma.pte[lo:hi], vma.ptef[lo:hi]
    idx = np.flatnonzero(pte == PTE_SWAP)
    if not len(idx):
        return
    excl = (flags[idx] & F_EXCL) != 0
    writable = F_WRITE if vma.vm_flags & VM_WRITE else 0
    for exclusive, sel in ((True, idx[excl]), (False, idx[~excl])):
        if not len(sel):
            continue
        mapping, mkind = m.policy.swapin_target(m, vma, exclusive)
        ids = m.folios.alloc(mapping, mkind, vma.vm_pgoff + lo + sel)
        m.policy.folios_added(m, vma, mkind, len(ids))
        pte[sel] = ids
        flags[sel] = (F_EXCL | writable) if exclusive else 0
    m.swapin_pages += len(idx)


def swap_entries(mm: MM) -> int:
    """Swap entries in mm's page tables (MM_SWAPENTS)."""
    return sum(int(np.count_nonzero(v.pte == PTE_SWAP)) for v in mm if v.pte is not None)

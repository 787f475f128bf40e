"""fork (dup_mmap, mm/mmap.c): every VMA copied but VM_DONTCOPY ones, WIPEONFORK VMAs
start empty, page tables copied only for VMAs with an anon_vma (vma_needs_copy).

Regions: ``a`` written (A), ``b`` never written (B), each 4 pages in its own slot."""
from __future__ import annotations

from kstate import counts, machine, mapcounts, step
from simcore import trace as T
from simcore.vma import VM_DONTCOPY, VM_LOCKED, VM_WIPEONFORK


def setup():
    m = machine()
    # AAAA ... BBBB
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Mmap(0, "b", 4))
    assert counts(m) == (2, 1, 1, 4)
    return m


def test_dup_mmap_copies_vmas_chains_and_page_tables() -> None:
    m = setup()
    # P: AAAA BBBB  ->  C: AAAA BBBB
    step(m, T.Fork(0, 1))
    ca, cb = m.procs[1].vmas
    pa, pb = m.procs[0].vmas
    assert [(v.vm_start, v.vm_end) for v in (ca, cb)] == [(v.vm_start, v.vm_end) for v in (pa, pb)]
    assert counts(m) == (4, 2, 3, 4)            # +2 VMAs; A: +1 anon_vma, +2 AVCs; B: nothing
    assert mapcounts(m, ca) == [2, 2, 2, 2]     # A's page table copied: folios shared
    assert cb.pte is None and cb.anon_vma is None and not cb.chain
    assert m.procs[1].pt_pmds == m.procs[0].pt_pmds


def test_mlock_is_not_inherited() -> None:
    m = setup()
    step(m, T.Mlock(0, "a"), T.Fork(0, 1))
    assert m.procs[0].vmas[0].vm_flags & VM_LOCKED
    assert not m.procs[1].vmas[0].vm_flags & VM_LOCKED
    assert counts(m) == (4, 2, 3, 4)


def test_dontfork_vma_is_not_copied() -> None:
    m = setup()
    # P: AAAA BBBB  (A VM_DONTCOPY)  ->  C: BBBB
    step(m, T.Madvise(0, "a", "dontfork"))
    assert m.procs[0].vmas[0].vm_flags & VM_DONTCOPY
    step(m, T.Fork(0, 1))
    assert len(m.procs[1].vmas) == 1 and m.procs[1].vmas[0].anon_vma is None
    assert counts(m) == (3, 1, 1, 4)            # only B's VMA: no anon_vma, no AVC
    assert mapcounts(m, m.procs[0].vmas[0]) == [1, 1, 1, 1]
    assert "a" not in m.layout.regions[1]


def test_wipeonfork_vma_starts_empty_in_the_child() -> None:
    m = setup()
    # P: AAAA BBBB  (A VM_WIPEONFORK)  ->  C: ____ BBBB   (A copied without pages)
    step(m, T.Madvise(0, "a", "wipeonfork"), T.Fork(0, 1))
    ca = m.procs[1].vmas[0]
    assert ca.vm_flags & VM_WIPEONFORK and ca.anon_vma is None and not ca.chain
    assert ca.pte is None
    assert counts(m) == (4, 1, 1, 4)
    assert mapcounts(m, m.procs[0].vmas[0]) == [1, 1, 1, 1]
    # C writes A: a fresh anon_vma of its own (a new root), 4 new folios
    step(m, T.Touch(1, "a"))
    assert counts(m) == (4, 2, 2, 8) and ca.anon_vma.root is ca.anon_vma

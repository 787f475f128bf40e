"""fork (dup_mmap, mm/mmap.c): every VMA copied but VM_DONTCOPY ones, WIPEONFORK VMAs
start empty, page tables copied only for VMAs with an anon_vma (vma_needs_copy).

Regions: ``a`` written (A), ``b`` never written (B), each 4 pages in its own slot."""
from __future__ import annotations

from kstate import counts, machine, mapcounts, step
from simcore import trace as T
from simcore.slab import VMA as VMA_CACHE
from simcore.vma import VM_DONTCOPY, VM_LOCKED, VM_WIPEONFORK, VMA, vm_area_alloc


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


def _slots(v) -> dict:
    """Every field of a VMA but its id (an unset one raises AttributeError)."""
    return {s: getattr(v, s) for s in VMA.__slots__ if s != "id"}


def test_child_vmas_are_vm_area_dup_copies() -> None:
    """dup_mmap() stores the child's fields inline: each copy is the VMA that VMA.__init__()
    and vm_area_dup() give (anon_vma copied, then anon_vma_fork()'s; an empty chain and no
    page table where nothing was forked), and the child's starts follow its VMAs, with
    and without a VM_DONTCOPY VMA left out."""
    for dontfork in (False, True):
        m = setup()
        if dontfork:
            step(m, T.Madvise(0, "a", "dontfork"))
        step(m, T.Fork(0, 1))
        parent, child = m.procs[0], m.procs[1]
        assert child.starts == [v.vm_start for v in child.vmas]
        assert child.starts is not parent.starts
        cb, pb = child.vmas[-1], parent.vmas[-1]        # B: never written
        ref = VMA(0, child, pb.vm_start, pb.vm_end, pb.vm_pgoff, pb.vm_flags, pb.vm_file)
        ref.anon_vma = pb.anon_vma                      # vm_area_dup()
        assert _slots(cb) == _slots(ref)
        if not dontfork:
            ca, pa = child.vmas[0], parent.vmas[0]      # A: forked, page table copied
            ref = VMA(0, child, pa.vm_start, pa.vm_end, pa.vm_pgoff, pa.vm_flags, pa.vm_file)
            for s in ("anon_vma", "chain", "pte", "ptef", "priv"):
                setattr(ref, s, getattr(ca, s))
            assert _slots(ca) == _slots(ref)
            assert ca.anon_vma is not pa.anon_vma and ca.anon_vma.parent is pa.anon_vma
            assert list(ca.pte) == list(pa.pte) and ca.pte is not pa.pte
        ids = {v.id for v in child.vmas} | {v.id for v in parent.vmas}
        assert len(ids) == len(child.vmas) + len(parent.vmas)     # new ids


def test_vm_area_alloc_counts_a_new_vma() -> None:
    """vm_area_alloc(): VMA.__init__()'s VMA with the next id, +1 vm_area_struct in the slab."""
    m = machine()
    mm = m.procs[0]
    live = m.slab.live[VMA_CACHE]
    v = vm_area_alloc(m, mm, 0x100, 0x104, 7, 0x73, None)
    assert _slots(v) == _slots(VMA(v.id, mm, 0x100, 0x104, 7, 0x73, None))
    assert vm_area_alloc(m, mm, 0, 1, 0, 0, None).id == v.id + 1
    assert m.slab.live[VMA_CACHE] == live + 2

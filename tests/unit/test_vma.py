"""struct vm_area_struct: split, merge of a new range, merge of an existing range, flags
(mm/vma.c: __split_vma, vma_merge_new_range, vma_merge_existing_range, vma_modify_flags)."""
from __future__ import annotations

from kstate import base, counts, machine, step, vmas
from simcore import trace as T
from simcore.check import check_machine
from simcore.vma import F_WRITE, VM_DONTCOPY, VM_WRITE, split_vma


def test_split_clones_the_chain() -> None:
    m = machine()
    # 0123456789ab
    # AAAAAAAAAAAA          mmap 12 pages, written: 1 anon_vma, 1 AVC, 12 folios
    step(m, T.Mmap(0, "a", 12), T.Touch(0, "a"))
    assert vmas(m) == [(0, 12)]
    assert counts(m) == (1, 1, 1, 12)

    # AAAABBBBCCCC          mprotect r of 4-7: __split_vma twice, each clones the chain
    step(m, T.Mprotect(0, "a", "r", 4, 4))
    assert vmas(m) == [(0, 4), (4, 8), (8, 12)]
    assert counts(m) == (3, 1, 3, 12)
    a, b, c = m.procs[0].vmas
    assert a.anon_vma is b.anon_vma is c.anon_vma
    assert (b.vm_pgoff - a.vm_pgoff, c.vm_pgoff - a.vm_pgoff) == (4, 8)
    assert not b.vm_flags & VM_WRITE and a.vm_flags & VM_WRITE and c.vm_flags & VM_WRITE
    assert [len(v.pte) for v in (a, b, c)] == [4, 4, 4]      # page tables travel with VMAs


def test_split_vma_below_and_above() -> None:
    m = machine()
    step(m, T.Mmap(0, "a", 8), T.Touch(0, "a"))
    vma = m.procs[0].vmas[0]
    o = base(m)
    # 01234567
    # NNVVVVVV              new_below: the new VMA is [0, 2), vma keeps [2, 8)
    new = split_vma(m, vma, o + 2, new_below=True)
    check_machine(m)
    assert vmas(m) == [(0, 2), (2, 8)] and m.procs[0].vmas == [new, vma]
    assert (new.vm_pgoff, vma.vm_pgoff - new.vm_pgoff) == (vma.vm_pgoff - 2, 2)
    assert counts(m) == (2, 1, 2, 8)
    # NNVVVWWW              new above: the new VMA is [5, 8)
    above = split_vma(m, vma, o + 5, new_below=False)
    check_machine(m)
    assert vmas(m) == [(0, 2), (2, 5), (5, 8)] and m.procs[0].vmas[2] is above
    assert counts(m) == (3, 1, 3, 8)


def test_merge_existing_range() -> None:
    m = machine()
    # AAAABBBBCCCC          as after the split above
    step(m, T.Mmap(0, "a", 12), T.Touch(0, "a"), T.Mprotect(0, "a", "r", 4, 4))
    assert counts(m) == (3, 1, 3, 12)

    # AAAAAABBCCCC          mprotect rw of 4-5: A grows over it (merge left, B shrinks)
    step(m, T.Mprotect(0, "a", "rw", 4, 2))
    assert vmas(m) == [(0, 6), (6, 8), (8, 12)]
    assert counts(m) == (3, 1, 3, 12)

    # AAAAAAAAAAAA          mprotect rw of 6-7: prev, middle and next become one
    step(m, T.Mprotect(0, "a", "rw", 6, 2))
    assert vmas(m) == [(0, 12)]
    assert counts(m) == (1, 1, 1, 12)


def test_merge_new_range() -> None:
    m = machine()
    # 0123  4567
    # AAAA              mmap a (4 pages), written
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    assert counts(m) == (1, 1, 1, 4)

    # AAAA**            mmap b right after a, same flags: vma_merge_new_range extends A
    step(m, T.Mmap(0, "b", 2, after="a"))
    assert vmas(m) == [(0, 6)]
    assert counts(m) == (1, 1, 1, 4)

    # AAAAAA##          mmap c after b, read-only: flags differ, a VMA of its own
    step(m, T.Mmap(0, "c", 2, prot="r", after="b"))
    assert vmas(m) == [(0, 6), (6, 8)]
    assert counts(m) == (2, 1, 1, 4)

    # AAAAAAAA          mprotect rw of c: merges back (c has no anon_vma)
    step(m, T.Mprotect(0, "c", "rw"))
    assert vmas(m) == [(0, 8)]
    assert counts(m) == (1, 1, 1, 4)


def test_modify_flags_splits_then_merges_back() -> None:
    m = machine()
    # AAAAAAAA              mmap 8, written
    step(m, T.Mmap(0, "a", 8), T.Touch(0, "a"))
    # AABBBBAA  -> A B C    madvise dontfork 2-5: VM_DONTCOPY on the middle VMA only
    step(m, T.Madvise(0, "a", "dontfork", 2, 4))
    assert vmas(m) == [(0, 2), (2, 6), (6, 8)]
    assert [bool(v.vm_flags & VM_DONTCOPY) for v in m.procs[0].vmas] == [False, True, False]
    assert counts(m) == (3, 1, 3, 8)
    # AAAAAAAA              madvise dofork 2-5: flags equal again, one VMA
    step(m, T.Madvise(0, "a", "dofork", 2, 4))
    assert vmas(m) == [(0, 8)]
    assert counts(m) == (1, 1, 1, 8)


def test_mprotect_over_several_vmas() -> None:
    """do_mprotect_pkey(): a range in one VMA (no iterator) and a range over several
    (mprotect_fixup() per VMA, each split or merged as it comes)."""
    m = machine()
    # AAAABBBBCCCC          as after the split above: r-- in the middle
    step(m, T.Mmap(0, "a", 12), T.Touch(0, "a"), T.Mprotect(0, "a", "r", 4, 4))
    # AADDDDDDDDCC          mprotect r of 2-9: A splits at 2, B already r, C splits at 10,
    #                       the pieces merge with B as they come (one VMA for 2-9)
    step(m, T.Mprotect(0, "a", "r", 2, 8))
    assert vmas(m) == [(0, 2), (2, 10), (10, 12)]
    assert [bool(v.vm_flags & VM_WRITE) for v in m.procs[0].vmas] == [True, False, True]
    assert counts(m) == (3, 1, 3, 12)
    # AAAAAAAAAAAA          mprotect rw of the whole region: all three become one again
    step(m, T.Mprotect(0, "a", "rw"))
    assert vmas(m) == [(0, 12)]
    assert counts(m) == (1, 1, 1, 12)
    assert (m.procs[0].vmas[0].ptef & F_WRITE).all()   # change_protection(): exclusive again

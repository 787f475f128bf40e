"""Page faults (mm/memory.c): first touch, read of the zero page, COW after fork, reuse of
an exclusive folio.  Per page: ``.`` no entry, ``0`` zero page, ``n`` a folio mapped n times."""
from __future__ import annotations

from kstate import counts, machine, mapcounts, step
from simcore import trace as T
from simcore.vma import F_EXCL, F_WRITE, PTE_NONE, PTE_ZERO


def vma(m, pid: int = 0):
    (v,) = m.procs[pid].vmas
    return v


def test_first_write_touch_allocates_one_folio_per_page() -> None:
    m = machine()
    # ....          mmap 4 pages: no page table, no folio
    step(m, T.Mmap(0, "a", 4))
    assert vma(m).pte is None and m.procs[0].pt_pmds == set()
    assert counts(m) == (1, 0, 0, 0)
    # 11..          write pages 0-1: anon_vma_prepare, two exclusive writable folios
    step(m, T.Touch(0, "a", 0, 2))
    assert mapcounts(m, vma(m)) == [1, 1, 0, 0]
    assert counts(m) == (1, 1, 1, 2) and len(m.procs[0].pt_pmds) == 1
    assert (vma(m).ptef[:2] == F_WRITE | F_EXCL).all() and (vma(m).pte[2:] == PTE_NONE).all()


def test_read_maps_the_zero_page_then_write_replaces_it() -> None:
    m = machine()
    # 0000          read all: the zero page, no folio, no anon_vma
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a", write=False))
    assert (vma(m).pte == PTE_ZERO).all()
    assert counts(m) == (1, 0, 0, 0)
    # 01 00 -> 0100 write page 1: a new folio replaces the zero page there
    step(m, T.Touch(0, "a", 1, 1))
    assert mapcounts(m, vma(m)) == [0, 1, 0, 0] and vma(m).pte[0] == PTE_ZERO
    assert counts(m) == (1, 1, 1, 1)


def test_cow_after_fork_copies_in_the_writer_only() -> None:
    m = machine()
    # P: 1111
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    # P: 2222  C: 2222    fork shares every folio, write-protected in both
    step(m, T.Fork(0, 1))
    assert mapcounts(m, vma(m, 0)) == mapcounts(m, vma(m, 1)) == [2, 2, 2, 2]
    assert counts(m) == (2, 2, 3, 4)
    assert not (vma(m, 0).ptef & F_WRITE).any() and not (vma(m, 1).ptef & F_WRITE).any()
    # P: 1122  C: 1122    C writes pages 0-1: wp_page_copy, two new folios for C
    step(m, T.Touch(1, "a", 0, 2))
    assert mapcounts(m, vma(m, 0)) == [1, 1, 2, 2] and mapcounts(m, vma(m, 1)) == [1, 1, 2, 2]
    assert counts(m) == (2, 2, 3, 6)
    assert vma(m, 0).pte[0] != vma(m, 1).pte[0] and vma(m, 0).pte[2] == vma(m, 1).pte[2]


def test_write_reuses_a_folio_no_one_else_maps() -> None:
    m = machine()
    # P: 2222  C: 2222
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Fork(0, 1))
    # P: 1111             C exits: the folios are P's alone again, still write-protected
    step(m, T.Exit(1))
    assert mapcounts(m, vma(m, 0)) == [1, 1, 1, 1] and not (vma(m, 0).ptef & F_WRITE).any()
    folios = vma(m, 0).pte.copy()
    # P: 1111             P writes: do_wp_page reuses every folio (no copy, same ids)
    step(m, T.Touch(0, "a"))
    assert (vma(m, 0).pte == folios).all() and (vma(m, 0).ptef & F_WRITE).all()
    assert counts(m) == (1, 1, 1, 4)

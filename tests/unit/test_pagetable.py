"""Page tables (mm/memory.c, mm/huge_memory.c): zap_pte_range, free_pgtables, PT reclaim on
MADV_DONTNEED, PMD accounting (``mm.pt_pmds``: PMDs that hold a PTE table), a huge PMD split.

PMDs of 8 pages here (``pmd_pages=8``); ``|`` marks a PMD boundary::

    01234567|89abcdef
"""
from __future__ import annotations

from kstate import base, counts, machine, step
from simcore import trace as T
from simcore.vma import F_HUGE


def pmds(m, pid: int = 0, origin: int | None = None) -> list[int]:
    """PTE-table PMDs of pid, numbered from the PMD of ``origin`` (default: region a)."""
    first = (base(m) if origin is None else origin) // m.pmd_pages
    return sorted(p - first for p in m.procs[pid].pt_pmds)


def test_munmap_zaps_entries_and_frees_tables_of_empty_pmds() -> None:
    m = machine(pmd_pages=8)
    # AAAAAAAA|AAAAAAAA     16 pages written: 16 folios, 2 PTE tables
    step(m, T.Mmap(0, "a", 16), T.Touch(0, "a"))
    assert counts(m) == (1, 1, 1, 16) and pmds(m) == [0, 1]
    # ....AAAA|AAAAAAAA     munmap 0-3: 4 folios zapped; PMD 0 still maps 4-7
    step(m, T.Munmap(0, "a", 0, 4))
    assert counts(m) == (1, 1, 1, 12) and pmds(m) == [0, 1]
    # ........|AAAAAAAA     munmap 4-7: free_pgtables drops PMD 0's table
    step(m, T.Munmap(0, "a", 4, 4))
    assert counts(m) == (1, 1, 1, 8) and pmds(m) == [1]
    # ........|...AA...     munmap 8-10 and 13-15: a split in between, PMD 1 stays
    step(m, T.Munmap(0, "a", 8, 3), T.Munmap(0, "a", 13, 3))
    assert counts(m) == (1, 1, 1, 2) and pmds(m) == [1]
    # ........|........     munmap the rest: the VMA, its AVC, the anon_vma and the table
    origin = base(m)
    step(m, T.Munmap(0, "a", 11, 2))
    assert counts(m) == (0, 0, 0, 0) and pmds(m, origin=origin) == []
    assert "a" not in m.layout.regions[0]


def test_dontneed_zaps_and_reclaims_empty_tables() -> None:
    m = machine(pmd_pages=8)
    step(m, T.Mmap(0, "a", 16), T.Touch(0, "a"))
    # ________|AAAAAAAA     MADV_DONTNEED 0-7: entries gone, the VMA stays, PT reclaim
    #                       frees PMD 0's now empty table
    step(m, T.Madvise(0, "a", "dontneed", 0, 8))
    assert counts(m) == (1, 1, 1, 8) and pmds(m) == [1]
    # ________|____AAAA     DONTNEED 8-11: PMD 1 keeps entries 12-15, its table stays
    step(m, T.Madvise(0, "a", "dontneed", 8, 4))
    assert counts(m) == (1, 1, 1, 4) and pmds(m) == [1]
    # AAAAAAAA|____AAAA     touching 0-7 again allocates PMD 0's table again
    step(m, T.Touch(0, "a", 0, 8))
    assert counts(m) == (1, 1, 1, 12) and pmds(m) == [0, 1]


def test_fork_copies_the_tables_of_vmas_with_an_anon_vma() -> None:
    m = machine(pmd_pages=8)
    # AAAA....|            a written; b (its own slot) never touched
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Mmap(0, "b", 4))
    step(m, T.Fork(0, 1))
    assert pmds(m, 1) == pmds(m, 0) == [0]
    assert counts(m) == (4, 2, 3, 4)


def test_huge_pmd_is_split_by_a_vma_boundary_inside_it() -> None:
    m = machine(pmd_pages=8)
    # HHHHHHHH|            MADV_HUGEPAGE, write: one PMD-sized folio, no PTE table
    step(m, T.Mmap(0, "a", 8), T.Madvise(0, "a", "hugepage"), T.Touch(0, "a"))
    (vma,) = m.procs[0].vmas
    assert counts(m) == (1, 1, 1, 1) and pmds(m) == []
    assert (vma.ptef & F_HUGE).all() and int(m.folios.mapcount[vma.pte[0]]) == 8
    # AABBAAAA -> A B C    mprotect r of 2-3: __split_huge_pmd, then the VMA split;
    #                      the folio stays one folio, now mapped by PTEs of 3 VMAs
    step(m, T.Mprotect(0, "a", "r", 2, 2))
    assert counts(m) == (3, 1, 3, 1) and pmds(m) == [0]
    assert not any((v.ptef & F_HUGE).any() for v in m.procs[0].vmas)


def _tables(m) -> list:
    """Every process's (page-table entries, flags) per VMA, the PTE-table PMDs, the folio
    mapcounts and the PTEs forks copied: what copy_page_range() changes."""
    out = [(pid, sorted(mm.pt_pmds),
            [(v.pte.tolist(), v.ptef.tolist()) if v.pte is not None else None for v in mm.vmas])
           for pid, mm in sorted(m.procs.items())]
    return out + [m.folios.mapcount[:m.folios.top].tolist(), m.fork_ptes]


def test_fork_copies_tables_as_copy_page_range_of_each_vma_would(monkeypatch) -> None:
    import simcore.fork
    from simcore.pagetable import copy_page_range
    ops = [T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Mmap(0, "b", 12), T.Touch(0, "b", 2, 3),
           T.Mmap(0, "c", 2), T.Fork(0, 1),   # A and B lose write/exclusive in pid 0
           T.Fork(0, 2),                      # every entry COW already: pid 0 keeps its arrays
           T.Touch(0, "b", 2, 1), T.Fork(0, 3)]   # b's page 2 written (a new folio) again
    m = machine(pmd_pages=8)
    step(m, *ops[:6])
    kept = [v.ptef for v in m.procs[0].vmas]
    step(m, ops[6])
    assert all(a is b for a, b in zip(kept, [v.ptef for v in m.procs[0].vmas], strict=True))
    step(m, *ops[7:])
    # the reference: copy_page_range() of one VMA at a time
    monkeypatch.setattr(simcore.fork, "copy_page_ranges",
                        lambda m, dsts, srcs: [copy_page_range(m, d, s)
                                               for d, s in zip(dsts, srcs)])
    ref = step(machine(pmd_pages=8), *ops)
    assert _tables(m) == _tables(ref)
    # the copies own their entries: a write in pid 2 changes nothing in pid 0 or 3
    m.procs[2].vmas[0].pte[0] = -1
    assert m.procs[0].vmas[0].pte[0] >= 0 and m.procs[3].vmas[0].pte[0] >= 0


def test_concatenate_is_np_concatenate() -> None:
    import numpy as np
    import pytest
    from simcore.errors import InvariantError
    from simcore.pagetable import _concatenate
    parts = [np.arange(3, dtype=np.int32), np.full(1, -1, np.int32),
             np.arange(10, dtype=np.int32)[2:6]]
    out = _concatenate(parts, 8)
    assert out.dtype == np.int32 and out.flags.writeable
    assert out.tolist() == np.concatenate(parts).tolist()
    strided = parts + [np.arange(10, dtype=np.int32)[::3]]   # not contiguous: np.concatenate
    assert _concatenate(strided, 12).tolist() == np.concatenate(strided).tolist()
    with pytest.raises(InvariantError):
        _concatenate([np.zeros(2, np.int32), np.zeros(2, np.int64)], 4)

"""Helpers for the per-concept unit tests (tests/unit/test_*.py), in the style of the
kernel's tools/testing/vma: build a small layout, apply one step, assert the counts.

Pages in the ASCII layouts are relative to region ``a`` of pid 0 (one character per page;
a letter per VMA, ``.`` unmapped)."""
from __future__ import annotations

from simcore import trace as T
from simcore.machine import Machine


def machine(pmd_pages: int = 512) -> Machine:
    """An eager machine in checked mode: invariants I1-I6 hold after every step."""
    return Machine("eager", pmd_pages=pmd_pages, check=True)


def step(m: Machine, *ops: T.Op) -> Machine:
    for op in ops:
        m.apply(op)
    return m


def counts(m: Machine) -> tuple[int, int, int, int]:
    """(vm_area_struct, anon_vma, anon_vma_chain, folios) alive in the whole machine."""
    vmas, anon_vmas, avcs = m.slab.live
    return vmas, anon_vmas, avcs, int(m.folios.live)


def base(m: Machine, pid: int = 0, region: str = "a") -> int:
    return m.layout.regions[pid][region].start


def vmas(m: Machine, pid: int = 0, origin: int | None = None) -> list[tuple[int, int]]:
    """[start, end) of pid's VMAs, relative to ``origin`` (default: region a of pid 0)."""
    o = base(m) if origin is None else origin
    return [(v.vm_start - o, v.vm_end - o) for v in m.procs[pid].vmas]


def mapcounts(m: Machine, vma) -> list[int]:
    """The mapcount of the folio behind each page of vma (0: no folio)."""
    if vma.pte is None:
        return [0] * vma.pages
    return [int(m.folios.mapcount[f]) if f >= 0 else 0 for f in vma.pte.tolist()]


def machine_state(m: Machine) -> dict:
    """Everything a fast path could get wrong, to compare two machines: folio rows (ids,
    targets, indices, mapcounts, the free stack), every VMA (range, pgoff, flags, page-table
    entries and flags, anon_vma, chain length), PMDs, anon_vmas and counters."""
    f = m.folios
    cols = [c[:f.top].tolist() for c in (f.mapping, f.mkind, f.index, f.nr, f.mapcount)]
    return {
        "folios": (cols, f.free[:f.nfree].tolist(), f.live),
        "vmas": {pid: [(v.id, v.vm_start, v.vm_end, v.vm_pgoff, v.vm_flags,
                        None if v.pte is None else v.pte.tolist(),
                        None if v.ptef is None else v.ptef.tolist(),
                        v.anon_vma and v.anon_vma.id, len(v.chain))
                       for v in mm.vmas]
                 for pid, mm in m.procs.items()},
        "pmds": {pid: sorted(mm.pt_pmds) for pid, mm in m.procs.items()},
        "counts": m.counts(), "faults": dict(m.faults), "ops": m.ops_done,
        "slab": (m.slab.live, m.slab.peak, m.slab.allocs),
        "merges": m.vma_merges, "root_lock_write": m.root_lock_write,
        # lazy: folio pins per VMA and the VMA-mapped targets, in the order they were made
        "pins": list(getattr(m.policy, "pins", {}).items()),
        "targets": list(getattr(m.policy, "targets", {})),
    }

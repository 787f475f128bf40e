"""Invariants I1-I6 of shared/research/kernel-rmap-spec.md, structural checks, leak check.

``check_machine`` raises AssertionError naming the broken invariant (``LayoutMismatch``
when the trace layout and the VMAs disagree).  It is run after every operation in checked
mode (``Machine(check=True)``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from .folio import MAP_ANON_VMA
from .layout import DONTCOPY, UNMAPPED
from .slab import ANON_VMA, AVC, VMA as VMA_CACHE
from .vma import VM_ACCESS_FLAGS, VM_DONTCOPY

if TYPE_CHECKING:
    from .machine import Machine


class InvariantError(AssertionError):
    """A broken simulator invariant (an AssertionError, so every checked-mode caller sees it)."""


class LayoutMismatch(InvariantError):
    """The trace layout (which pages a trace may name, with what protection) and the
    process's VMAs disagree: the simulator's two views of one address space have diverged."""


def check_machine(m: Machine) -> None:
    vmas = [v for mm in m.procs.values() for v in mm.vmas]
    _check_mm_structure(m)
    check_layout(m)
    _check_chains(m, vmas)
    _check_anon_vmas(m, vmas)
    _check_folios(m, vmas)
    pinned = m.policy.pinned_vmas()
    assert m.slab.live[VMA_CACHE] == len(vmas) + pinned, \
        f"slab VMAs {m.slab.live[VMA_CACHE]} != VMAs in mms {len(vmas)} + pinned {pinned}"
    check_rmap_complete(m, vmas)


def _check_mm_structure(m: Machine) -> None:
    for pid, mm in m.procs.items():
        assert mm.pid == pid
        prev_end = -1
        for i, v in enumerate(mm.vmas):
            assert v.mm is mm, f"{v} is listed in mm {pid} but belongs elsewhere"
            assert mm.starts[i] == v.vm_start, f"stale start index for {v}"
            assert v.vm_start < v.vm_end and v.vm_start >= prev_end, f"VMAs overlap at {v}"
            assert v.pte is None or len(v.pte) == v.pages, f"page table length of {v}"
            prev_end = v.vm_end


def check_layout(m: Machine, pids: Iterable[int] | None = None) -> None:
    """Each process's mapped layout pages are exactly its VMAs' pages, with the same access
    bits and MADV_DONTFORK; raises LayoutMismatch at the first page where they differ.
    ``pids`` limits the comparison to those processes (the ones an operation changed)."""
    alive = set(m.layout.alive())
    if alive != set(m.procs):
        raise LayoutMismatch(f"layout processes {sorted(alive)} != mm processes {sorted(m.procs)}")
    for pid in m.procs if pids is None else alive.intersection(pids):
        mm = m.procs[pid]
        want = _layout_runs(m.layout.regions[pid], pid)
        have = _coalesce([(v.vm_start, v.vm_end, (v.vm_flags & VM_ACCESS_FLAGS)
                           | (DONTCOPY if v.vm_flags & VM_DONTCOPY else 0)) for v in mm.vmas])
        if want != have:
            raise LayoutMismatch(f"pid {pid}: {_first_difference(want, have)}")


def _layout_runs(regions: dict, pid: int) -> list[tuple[int, int, int]]:
    """(start, end, protection) of the mapped runs of every region, in address order."""
    runs = []
    for name, r in regions.items():
        if r.same() is not None:
            runs.append((r.start, r.end, r.same(), name))
            continue
        cuts = [0, *(np.flatnonzero(np.diff(r.prot)) + 1).tolist(), r.extent]
        runs.extend((r.start + a, r.start + b, int(r.prot[a]), name)
                    for a, b in zip(cuts, cuts[1:]) if r.prot[a] != UNMAPPED)
    runs.sort()
    for (_, end, _, name), (start, _, _, other) in zip(runs, runs[1:]):
        if start < end:
            raise LayoutMismatch(f"pid {pid}: regions {name!r} and {other!r} both map page "
                                 f"{start:#x}")
    return _coalesce([run[:3] for run in runs])


def _coalesce(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for start, end, prot in runs:
        if out and out[-1][1] == start and out[-1][2] == prot:
            out[-1] = (out[-1][0], end, prot)
        else:
            out.append((start, end, prot))
    return out


def _first_difference(want: list, have: list) -> str:
    """The first page where the layout's runs and the VMAs' runs differ, in words."""
    def at(runs: list, page: int) -> str:
        for start, end, prot in runs:
            if start <= page < end:
                return f"mapped with protection {prot:#x}"
        return "unmapped"
    edges = sorted({e for run in want + have for e in run[:2]})
    page = next(p for p in edges if at(want, p) != at(have, p))
    return f"page {page:#x} is {at(want, page)} in the layout but {at(have, page)} in the mm"


def _check_chains(m: Machine, vmas: list) -> None:
    navc = 0
    for v in vmas:
        navc += len(v.chain)
        avs = [c.anon_vma for c in v.chain]
        # I1: anon_vma set <=> chain non-empty, and anon_vma is on the chain
        assert m.policy.has_own_anon_vma_or_none(v), f"I1: {v} anon_vma/chain mismatch"
        if v.anon_vma is not None and v.chain:
            assert v.anon_vma in avs, f"I1: {v}'s anon_vma is not on its chain"
        for c in v.chain:
            # I2: the AVC is in its anon_vma's tree, and the anon_vma is alive
            assert c.vma is v and c in c.anon_vma.tree, f"I2: AVC of {v} not in its tree"
            assert not c.anon_vma.freed, f"I2: {v} links freed {c.anon_vma}"
        # I3: one root per chain
        assert len({a.root.id for a in avs}) <= 1, f"I3: {v} chain spans roots"
    assert m.slab.live[AVC] == navc, \
        f"slab AVCs {m.slab.live[AVC]} != AVCs on chains {navc}"


def _check_anon_vmas(m: Machine, vmas: list) -> None:
    live = m.anon_vmas
    assert m.slab.live[ANON_VMA] == len(live), "slab anon_vmas != live anon_vmas"
    active: dict[int, int] = {}
    by_av: dict[int, list] = {}
    for v in vmas:
        if v.anon_vma is not None:
            active[v.anon_vma.id] = active.get(v.anon_vma.id, 0) + 1
            by_av.setdefault(v.anon_vma.id, []).append(v)
    pins: dict[int, int] = {}
    kids: dict[int, int] = {}
    for a in live.values():
        if a.root is not a:
            pins[a.root.id] = pins.get(a.root.id, 0) + 1
        if a.parent is not a and a.tree:
            kids[a.parent.id] = kids.get(a.parent.id, 0) + 1
    for a in live.values():
        # I4: num_active_vmas counts the VMAs whose anon_vma is a
        assert a.num_active_vmas == active.get(a.id, 0), \
            f"I4: {a} num_active_vmas != {active.get(a.id, 0)}"
        for c in a.tree:
            assert c in c.vma.chain, f"I2: {a}'s tree holds an AVC no VMA lists"
        # I5: alive <=> tree non-empty or pinned; refcount and num_children consistent
        want_ref = (1 if a.tree else 0) + pins.get(a.id, 0)
        assert a.refcount == want_ref > 0, f"I5: {a} refcount, want {want_ref}"
        want_kids = kids.get(a.id, 0) + (1 if a.root is a and a.tree else 0)
        assert a.num_children == want_kids, f"I5: {a} num_children, want {want_kids}"
        assert not a.root.freed, f"I5: {a} outlives its root"
        # I6: VMAs sharing an anon_vma have identical chains
        chains = {tuple(c.anon_vma.id for c in v.chain) for v in by_av.get(a.id, ())}
        assert len(chains) <= 1, f"I6: VMAs sharing {a} have different chains {chains}"


def _check_folios(m: Machine, vmas: list) -> None:
    f = m.folios
    counted = np.zeros(len(f.mapcount), np.int64)
    for v in vmas:
        if v.pte is None:
            continue
        present = np.flatnonzero(v.pte >= 0)
        if not len(present):
            continue
        ids = v.pte[present]
        np.add.at(counted, ids, 1)
        assert (f.nr[ids] > 0).all(), f"{v} maps a freed folio"
        # the folio's index matches the address it is mapped at: rmap can find it
        lin = v.vm_pgoff + present
        assert ((f.index[ids] <= lin) & (lin < f.index[ids] + f.nr[ids])).all(), \
            f"{v}: folio index does not match linear_page_index"
        anon = ids[f.mkind[ids] == MAP_ANON_VMA]
        dead = [int(a) for a in np.unique(f.mapping[anon]) if int(a) not in m.anon_vmas]
        assert not dead, f"I5: {v} maps folios of freed anon_vmas {dead}"
    live = f.nr > 0
    assert (f.mapcount[live] == counted[live]).all(), "folio mapcount != page-table entries"
    assert int(live.sum()) == f.live, "folio live count"


def check_no_leaks(m: Machine) -> None:
    """After every process has exited nothing may remain."""
    left = {name: n for name, n in zip(("vm_area_struct", "anon_vma", "anon_vma_chain"), m.slab.live)}
    assert not any(left.values()), f"leak after all exits: {left}"
    assert not m.anon_vmas, "leak: anon_vmas remain"
    assert m.folios.live == 0, f"leak: {m.folios.live} folios remain"


def check_rmap_complete(m: Machine, vmas: list) -> None:
    """The oracle: rmap_walk(folio) finds every (pid, page) that maps the folio.

    A miss is a kernel bug (a page that reclaim or migration cannot unmap).  The walks'
    precision (mappings found / VMAs visited) accumulates in ``m.oracle``.
    """
    from .rmap import WalkCost, rmap_walk

    where: dict[int, list[tuple[int, int]]] = {}
    for v in vmas:
        if v.pte is None:
            continue
        present = np.flatnonzero(v.pte >= 0)
        for i, fid in zip(present.tolist(), v.pte[present].tolist()):
            where.setdefault(fid, []).append((v.mm.pid, v.vm_start + i))
    cost = WalkCost()
    for fid, maps in where.items():
        found = set(rmap_walk(m, fid, cost))
        missing = [pm for pm in maps if pm not in found]
        assert not missing, (f"rmap incomplete: folio {fid} (mapping {int(m.folios.mapping[fid])}, "
                             f"kind {int(m.folios.mkind[fid])}) is mapped at {missing} "
                             f"but the walk finds {sorted(found)}")
    m.oracle["walks"] = m.oracle.get("walks", 0) + cost.walks
    m.oracle["vmas_visited"] = m.oracle.get("vmas_visited", 0) + cost.vmas_visited
    m.oracle["vmas_not_mapping"] = m.oracle.get("vmas_not_mapping", 0) + cost.vmas_not_mapping

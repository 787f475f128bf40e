"""Invariants I1-I6 of shared/research/kernel-rmap-spec.md (and ``avc-once``: a VMA links
to an anon_vma at most once), structural checks, leak check.

``check_machine`` raises InvariantError naming the broken invariant (its subclass
LayoutMismatch when the trace layout and the VMAs disagree).  It is run after every
operation in checked mode (``Machine(check=True)``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from .errors import InvariantError, LayoutMismatch
from .folio import MAP_ANON_VMA
from .layout import DONTCOPY, UNMAPPED, AbsoluteLayout
from .rmap import rmap_walk
from .slab import ANON_VMA, AVC, VMA as VMA_CACHE
from .vma import VM_ACCESS_FLAGS, VM_DONTCOPY

if TYPE_CHECKING:
    from .machine import Machine


def live_mms(m: Machine) -> list:
    """Every live mm once: the processes' (CLONE_VM tasks share one), plus, in a replay,
    mms no process runs on (an execve's new mm before exec_mmap(), an exited task's
    before the recorded exit_mmap) -- ``m.offstage_mms`` gives those."""
    offstage = getattr(m, "offstage_mms", None)
    mms = [*m.procs.values(), *(offstage() if offstage else ())]
    return list({id(mm): mm for mm in mms}.values())


def check_machine(m: Machine) -> None:
    vmas = [v for mm in live_mms(m) for v in mm.vmas]
    _check_mm_structure(m)
    check_layout(m)
    _check_chains(m, vmas)
    _check_anon_vmas(m, vmas)
    _check_folios(m, vmas)
    pinned = m.policy.pinned_vmas()
    if m.slab.live[VMA_CACHE] != len(vmas) + pinned:
        raise InvariantError("slab", f"slab VMAs {m.slab.live[VMA_CACHE]} != VMAs in mms "
                                     f"{len(vmas)} + pinned {pinned}")
    m.policy.check(m)
    check_rmap_complete(m, vmas)


def _check_mm_structure(m: Machine) -> None:
    for pid, mm in m.procs.items():
        if mm.pid != pid and m.procs.get(mm.pid) is not mm:     # CLONE_VM: the owner's mm
            raise InvariantError("mm-pid", "mm.pid != its key in procs")
        prev_end = -1
        for i, v in enumerate(mm.vmas):
            if v.mm is not mm:
                raise InvariantError("mm-owner", f"{v} is listed in mm {pid} but belongs elsewhere")
            if mm.starts[i] != v.vm_start:
                raise InvariantError("mm-index", f"stale start index for {v}")
            if not (v.vm_start < v.vm_end and v.vm_start >= prev_end):
                raise InvariantError("overlap", f"VMAs overlap at {v}")
            if not (v.pte is None or len(v.pte) == v.pages):
                raise InvariantError("pt-length", f"page table length of {v}")
            prev_end = v.vm_end


def check_layout(m: Machine, pids: Iterable[int] | None = None) -> None:
    """Each process's mapped layout pages are exactly its VMAs' pages, with the same access
    bits and MADV_DONTFORK; raises LayoutMismatch at the first page where they differ.
    ``pids`` limits the comparison to those processes (the ones an operation changed).
    A recording's AbsoluteLayout keeps no regions (the kernel placed every mapping and
    validated every operation): there is nothing to compare."""
    if isinstance(m.layout, AbsoluteLayout):
        return
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
        same = r.same()
        if same is not None:
            runs.append((r.start, r.end, same, name))
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
    """An AVC is an entry a on v.chain and the entry v in a.tree (anon_vma.py)."""
    navc = 0
    for v in vmas:
        avs = v.chain
        navc += len(avs)
        # avc-once: a VMA links to an anon_vma at most once (anon_vma_clone() of an empty
        # chain, anon_vma_fork()'s new anon_vma, __anon_vma_prepare() of a VMA without one)
        if len({id(a) for a in avs}) != len(avs):
            raise InvariantError("avc-once", f"{v} links an anon_vma twice: {list(avs)}")
        # I1: anon_vma set <=> chain non-empty, and anon_vma is on the chain
        if not m.policy.has_own_anon_vma_or_none(v):
            raise InvariantError("I1", f"{v} anon_vma/chain mismatch")
        if v.anon_vma is not None and avs:
            if v.anon_vma not in avs:
                raise InvariantError("I1", f"{v}'s anon_vma is not on its chain")
        for a in avs:
            # I2: the AVC is in its anon_vma's tree, and the anon_vma is alive
            if v not in a.tree:            # by identity: no __eq__ (anon_vma.py)
                raise InvariantError("I2", f"AVC of {v} not in the tree of {a}")
            if a.freed:
                raise InvariantError("I2", f"{v} links freed {a}")
        # I3: one root per chain
        if len({a.root.id for a in avs}) > 1:
            raise InvariantError("I3", f"{v} chain spans roots")
    if m.slab.live[AVC] != navc:
        raise InvariantError("slab", f"slab AVCs {m.slab.live[AVC]} != AVCs on chains {navc}")
    ntree = sum(len(a.tree) for a in m.anon_vmas.values())
    if ntree != navc:
        raise InvariantError("I2", f"AVCs in trees {ntree} != AVCs on chains {navc}")


def _check_anon_vmas(m: Machine, vmas: list) -> None:
    live = m.anon_vmas
    if m.slab.live[ANON_VMA] != len(live):
        raise InvariantError("slab", "slab anon_vmas != live anon_vmas")
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
        if a.num_active_vmas != active.get(a.id, 0):
            raise InvariantError("I4", f"{a} num_active_vmas != {active.get(a.id, 0)}")
        tree = list(a.tree)
        if len({id(v) for v in tree}) != len(tree):
            raise InvariantError("avc-once", f"{a}'s tree holds a VMA twice")
        for v in tree:
            if a not in v.chain:
                raise InvariantError("I2", f"{a}'s tree holds {v}, whose chain lacks it")
        # I5: alive <=> tree non-empty or pinned; refcount and num_children consistent
        want_ref = (1 if a.tree else 0) + pins.get(a.id, 0)
        if not (a.refcount == want_ref > 0):
            raise InvariantError("I5", f"{a} refcount, want {want_ref}")
        want_kids = kids.get(a.id, 0) + (1 if a.root is a and a.tree else 0)
        if a.num_children != want_kids:
            raise InvariantError("I5", f"{a} num_children, want {want_kids}")
        if a.root.freed:
            raise InvariantError("I5", f"{a} outlives its root")
        # I6: VMAs sharing an anon_vma have identical chains
        chains = {tuple(x.id for x in v.chain) for v in by_av.get(a.id, ())}
        if len(chains) > 1:
            raise InvariantError("I6", f"VMAs sharing {a} have different chains {chains}")


def _check_folios(m: Machine, vmas: list) -> None:
    """Every mapped folio is live, at its index, of a kind the policy defines, of a live
    anon_vma if anon; mapcounts equal the entries mapping each folio.  The entries of every
    VMA are checked at once; where a check fails, _check_folios_each() finds the first VMA
    that breaks it and raises its error (the reference, VMA by VMA)."""
    f = m.folios
    with_pt = [v for v in vmas if v.pte is not None]
    if with_pt:
        sizes = [len(v.pte) for v in with_pt]
        pte = np.concatenate([v.pte for v in with_pt])
        offsets = np.cumsum(sizes) - sizes                  # each VMA's first entry
        # linear_page_index() of every entry: its VMA's vm_pgoff + its page in the VMA
        lin = np.arange(len(pte)) + np.repeat(
            np.array([v.vm_pgoff for v in with_pt], np.int64) - offsets, sizes)
        present = pte >= 0
        ids, lin = pte[present], lin[present]
        nr, kind = f.nr[ids], f.mkind[ids]
        anon = ids[kind == MAP_ANON_VMA]
        if (not (nr > 0).all()
                or not ((f.index[ids] <= lin) & (lin < f.index[ids] + nr)).all()
                or not set(np.unique(kind).tolist()) - {MAP_ANON_VMA}
                <= set(m.policy.folio_targets)
                or any(int(a) not in m.anon_vmas for a in np.unique(f.mapping[anon]))):
            _check_folios_each(m, with_pt)                  # raises, naming the VMA
            raise InvariantError("folio", "the folio checks of all VMAs at once and of "
                                          "each VMA disagree")
        counted = np.bincount(ids, minlength=len(f.mapcount))
    else:
        counted = np.zeros(len(f.mapcount), np.int64)
    live = f.nr > 0
    if not (f.mapcount[live] == counted[live]).all():
        raise InvariantError("mapcount", "folio mapcount != page-table entries")
    if int(live.sum()) != f.live:
        raise InvariantError("folio-live", "folio live count")


def _check_folios_each(m: Machine, vmas: list) -> None:
    """_check_folios()'s checks of each VMA's folios, VMA by VMA: raises for the first VMA
    that breaks one."""
    f = m.folios
    for v in vmas:
        if v.pte is None:
            continue
        present = np.flatnonzero(v.pte >= 0)
        if not len(present):
            continue
        ids = v.pte[present]
        if not (f.nr[ids] > 0).all():
            raise InvariantError("folio-freed", f"{v} maps a freed folio")
        # the folio's index matches the address it is mapped at: rmap can find it
        lin = v.vm_pgoff + present
        if not ((f.index[ids] <= lin) & (lin < f.index[ids] + f.nr[ids])).all():
            raise InvariantError("folio-index",
                                 f"{v}: folio index does not match linear_page_index")
        kinds = set(np.unique(f.mkind[ids]).tolist()) - {MAP_ANON_VMA}
        if not kinds <= set(m.policy.folio_targets):
            raise InvariantError("folio-kind", f"{v} maps folios of kinds {sorted(kinds)} that "
                                               f"policy {m.policy.name} does not define")
        anon = ids[f.mkind[ids] == MAP_ANON_VMA]
        dead = [int(a) for a in np.unique(f.mapping[anon]) if int(a) not in m.anon_vmas]
        if dead:
            raise InvariantError("I5", f"{v} maps folios of freed anon_vmas {dead}")


def check_no_leaks(m: Machine) -> None:
    """After every process has exited nothing may remain."""
    left = {name: n for name, n in zip(m.slab.names, m.slab.live)}
    if any(left.values()):
        raise InvariantError("leak", f"leak after all exits: {left}")
    policy_left = m.policy.leaks(m)
    if policy_left:
        raise InvariantError("leak", f"leak after all exits: {', '.join(policy_left)}")
    if m.anon_vmas:
        raise InvariantError("leak", "leak: anon_vmas remain")
    if m.folios.live:
        raise InvariantError("leak", f"leak: {m.folios.live} folios remain")


def check_rmap_complete(m: Machine, vmas: list) -> None:
    """The oracle: rmap_walk(folio) finds every (pid, page) that maps the folio.

    A miss is a kernel bug (a page that reclaim or migration cannot unmap).
    """
    with_pt = [v for v in vmas if v.pte is not None]
    if not with_pt:
        return
    # every present entry as (folio, pid, page), in VMA order; then grouped by folio, the
    # folios in the order of their first entry (a stable sort keeps each one's in order)
    sizes = [len(v.pte) for v in with_pt]
    pte = np.concatenate([v.pte for v in with_pt])
    offsets = np.cumsum(sizes) - sizes
    page = np.arange(len(pte)) + np.repeat(
        np.array([v.vm_start for v in with_pt], np.int64) - offsets, sizes)
    pid = np.repeat(np.array([v.mm.pid for v in with_pt], np.int64), sizes)
    present = pte >= 0
    fids, page, pid = pte[present], page[present], pid[present]
    if not len(fids):
        return
    order = np.argsort(fids, kind="stable")
    fids, page, pid = fids[order], page[order].tolist(), pid[order].tolist()
    bounds = np.flatnonzero(np.diff(fids)) + 1
    starts = np.concatenate(([0], bounds)).astype(np.int64)
    ends = np.concatenate((bounds, [len(fids)])).astype(np.int64)
    first = order[starts]                               # each folio's first entry
    for k in np.argsort(first, kind="stable").tolist():
        a, b = int(starts[k]), int(ends[k])
        fid = int(fids[a])
        maps = list(zip(pid[a:b], page[a:b]))
        found = set(rmap_walk(m, fid))
        if found.issuperset(maps):
            continue
        missing = [pm for pm in maps if pm not in found]
        raise InvariantError("rmap-complete",
                             f"rmap incomplete: folio {fid} (mapping {int(m.folios.mapping[fid])}, "
                             f"kind {int(m.folios.mkind[fid])}) is mapped at {_few(missing)} "
                             f"but the walk finds {_few(sorted(found))}")


def _few(pages: list) -> str:
    """A list of (pid, page) for a message: a large folio's 512 pages are cut short."""
    return str(pages) if len(pages) <= 4 else f"{len(pages)} pages {pages[:2]}..{pages[-1:]}"

"""rmap walks and their cost (mm/rmap.c: rmap_walk_anon, anon_vma_interval_tree_foreach)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from .folio import MAP_ANON_VMA

if TYPE_CHECKING:
    from . import trace as T
    from .machine import Machine
    from .policy import Policy


@dataclass(slots=True)
class WalkCost:
    """Totals over rmap walks: the slots every design shares, then ``extra``, the counters a
    policy declares (Policy.walk_counters), e.g. contexts visited by a COW-context walk."""
    walks: int = 0
    avcs_visited: int = 0        # interval-tree overlaps visited
    vmas_visited: int = 0
    vmas_not_mapping: int = 0    # visited VMAs that do not map the folio
    root_lock_read: int = 0
    lockless_walks: int = 0
    ptes: int = 0                # mappings found: the PTEs rmap_one() handles
    extra: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_policy(cls, policy: Policy) -> WalkCost:
        """Zeroed totals with the policy's own counters."""
        return cls(extra=dict.fromkeys(policy.walk_counters, 0))

    def as_dict(self, prefix: str = "rmap_") -> dict[str, int]:
        out = {prefix + f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update({prefix + k: v for k, v in self.extra.items()})
        return out


def maps_folio(vma, fid: int, index: int, nr: int) -> bool:
    """page_vma_mapped_walk() found something: vma maps some page of folio fid."""
    return bool(folio_pages(vma, fid, index, nr))


def folio_pages(vma, fid: int, index: int, nr: int) -> list[int]:
    """page_vma_mapped_walk(): the pages (addresses) at which vma maps folio fid, whose
    first page has index `index` and which has nr pages."""
    pte = vma.pte
    if pte is None:
        return []
    lo = index - vma.vm_pgoff
    a, b = max(lo, 0), min(lo + nr, vma.vm_end - vma.vm_start)
    if b - a == 1:                  # one entry to look at (a small folio): no numpy call
        return [vma.vm_start + a] if pte.item(a) == fid else []
    if a >= b:
        return []
    return (np.flatnonzero(pte[a:b] == fid) + (vma.vm_start + a)).tolist()


# walk kind -> passes over the folio's rmap, each (stops once every mapping is found,
# visits the whole tree): see kernel-rmap-spec.md C.3
WALK_PASSES = {
    "reclaim": ((True, False), (True, False)),    # folio_referenced(), try_to_unmap()
    "migrate": ((True, False), (False, False)),   # try_to_migrate(), remove_migration_ptes()
    "idle": ((False, False),),                    # page_idle / DAMON mkold
    "ksm": ((False, True),),                      # rmap_walk_ksm(): rmap_item's whole tree
}


def rmap_walk(m: Machine, fid: int, cost: WalkCost | None = None, early_exit: bool = False,
              full_tree: bool = False) -> list[tuple[int, int]]:
    """rmap_walk_anon(): every (pid, page address) found mapping folio fid."""
    f = m.folios
    index, nr = int(f.index[fid]), int(f.nr[fid])
    found: list[tuple[int, int]] = []
    if cost is not None:
        cost.walks += 1
    if f.mkind[fid] != MAP_ANON_VMA:                    # a target the policy defines
        found = m.policy.rmap_walk_target(m, fid, cost, early_exit, full_tree)
        if cost is not None:
            cost.ptes += len(found)
        return found
    av = m.anon_vmas[int(f.mapping[fid])]
    if cost is not None:
        cost.root_lock_read += 1                         # anon_vma_lock_read(root)
    want = int(f.mapcount[fid])
    visits = misses = 0                                  # added to cost at the end
    for vma in av.tree:                                  # its VMAs (their AVCs)
        first, size = index - vma.vm_pgoff, vma.vm_end - vma.vm_start   # folio's page in vma
        # not an interval-tree overlap: [vm_pgoff, vma_last_pgoff()] misses the folio
        if not full_tree and (first + nr <= 0 or first >= size):
            continue
        visits += 1
        if nr == 1:                  # folio_pages() of a small folio, inline: one entry
            pte = vma.pte
            if pte is not None and 0 <= first < size and pte.item(first) == fid:
                found.append((vma.mm.pid, vma.vm_start + first))
            else:
                misses += 1
                continue
        else:
            pages = folio_pages(vma, fid, index, nr)
            if not pages:
                misses += 1
                continue
            pid = vma.mm.pid
            found.extend((pid, page) for page in pages)
        if early_exit and len(found) >= want:
            break                                        # rwc->done(): all mappings handled
    if cost is not None:                                 # the read hold, for timemodel
        cost.avcs_visited += visits
        cost.vmas_visited += visits
        cost.vmas_not_mapping += misses
        cost.ptes += len(found)
        m.locks.read(av.root.id, visits, len(found))
    return found


def rmap_range(m: Machine, op: T.Rmap) -> None:
    """The trace's `rmap` op: the walks of `op.walk` (WALK_PASSES) once per distinct folio
    mapped in the range."""
    span = m.layout.access(op)
    mm, start, end, walk = m.procs[op.pid], span.start, span.start + span.count, op.walk
    cost = m.walk_costs.get(walk)
    if cost is None:
        cost = m.walk_costs[walk] = WalkCost.for_policy(m.policy)
    seen: set[int] = set()
    for vma in mm.vmas_in_range(start, end):
        if vma.pte is None:
            continue
        lo, hi = max(start, vma.vm_start) - vma.vm_start, min(end, vma.vm_end) - vma.vm_start
        ids = vma.pte[lo:hi]
        for fid in np.unique(ids[ids >= 0]).tolist():
            if fid not in seen:
                seen.add(fid)
                m.policy.before_walk(m, fid, walk)
                for early_exit, full_tree in WALK_PASSES[walk]:
                    rmap_walk(m, fid, cost, early_exit, full_tree)

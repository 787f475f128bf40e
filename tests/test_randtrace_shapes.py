"""random_trace reaches the address-space shapes of mremap's 6.17+ rules: moves and shrinks
of ranges spanning several VMAs, exact hole fills, growth up to the next mapping."""
from __future__ import annotations

from collections import Counter

from simcore import trace as T
from simcore.machine import Machine
from simcore.workloads import random_trace


def shapes(m: Machine, op: T.Op) -> list[str]:
    """The shapes op is about to exercise on m."""
    if not isinstance(op, (T.Mmap, T.MremapMove, T.MremapResize)):
        return []
    regions, mm = m.layout.regions[op.pid], m.procs[op.pid]
    mapped = lambda a, b: len(mm.vmas_in_range(a, b))          # VMAs overlapping [a, b)
    if isinstance(op, T.MremapResize):
        r = regions[op.region]
        if op.pages < r.extent:
            return ["shrink_multi"] if mapped(r.start, r.end) > 1 else []
        return ["grow_to_next"] if mapped(r.start + op.pages, r.start + op.pages + 1) else []
    if isinstance(op, T.MremapMove):
        r = regions[op.region]
        start = r.start + op.first
        count = r.extent - op.first if op.count is None else op.count
        out = ["move_multi"] if mapped(start, start + count) > 1 else []
    else:
        count, out = op.pages, []
    if op.after is not None:
        end = regions[op.after].end + count
        if mapped(end, end + 1):
            out.append("exact_fill")
    return out


def test_random_traces_reach_the_mremap_shapes():
    seen: Counter = Counter()
    for seed in range(60):
        m, found = Machine("eager"), set()
        for op in random_trace(seed, 50, kernel_safe=True):
            found.update(shapes(m, op))
            m.apply(op)
        seen.update(found)
    # each shape in a good share of 60 traces (uniform proposals alone reached none of the
    # fills and growths, and about one trace in twenty for the others)
    assert all(seen[s] >= 6 for s in ("move_multi", "shrink_multi", "exact_fill",
                                      "grow_to_next")), seen


def test_random_traces_cut_huge_pages_between_vmas():
    """random_trace makes THPs and cuts them (mremap move, madvise, mprotect, munmap of part
    of the folio), so a huge folio ends up mapped by two or more VMAs: the case where a lazy
    design must upgrade every VMA mapping the folio together (docs/lazy-model.md, finding 5)."""
    shared = 0
    for seed in range(60):
        m, hit = Machine("eager"), False
        for op in random_trace(seed, 40):
            m.apply(op)
            owners: dict[int, set[int]] = {}
            for pid in m.layout.alive():
                for vma in m.procs[pid].vmas:
                    if vma.pte is not None:
                        ids = vma.pte[vma.pte >= 0]
                        for fid in set(ids[m.folios.nr[ids] > 1].tolist()):
                            owners.setdefault(fid, set()).add(vma.id)
            hit |= any(len(v) > 1 for v in owners.values())
        shared += hit
    assert shared >= 8, shared

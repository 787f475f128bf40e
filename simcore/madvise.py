"""madvise() (mm/madvise.c): the flag-setting advice table and the advice that zaps or walks."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import trace as T
from .trace import TraceError
from .mm import for_each_vma_range
from .mprotect import modify_flags_range
from .swap import madvise_pageout
from .pagetable import reclaim_empty_pt, split_huge_edges, zap_pte_range
from .vma import (VM_DONTCOPY, VM_HUGEPAGE, VM_LOCKED, VM_MERGEABLE, VM_NOHUGEPAGE, VM_SHARED,
                  VM_WIPEONFORK)

if TYPE_CHECKING:
    from .machine import Machine

# madvise_vma_behavior(): advice -> (flags set, flags cleared)
MADVISE_FLAGS = {
    "dontfork": (VM_DONTCOPY, 0), "dofork": (0, VM_DONTCOPY),
    "wipeonfork": (VM_WIPEONFORK, 0), "keeponfork": (0, VM_WIPEONFORK),
    "hugepage": (VM_HUGEPAGE, VM_NOHUGEPAGE), "nohugepage": (VM_NOHUGEPAGE, VM_HUGEPAGE),
    "mergeable": (VM_MERGEABLE, 0), "unmergeable": (0, VM_MERGEABLE),
}


def do_madvise(m: Machine, op: T.Madvise) -> None:
    """do_madvise() -> madvise_walk_vmas() -> madvise_vma_behavior() per VMA."""
    span = m.layout.access(op)
    mm = m.procs[op.pid]
    start, end = span.start, span.start + span.count
    advice = op.advice
    vmas = mm.vmas_in_range(start, end)
    if advice in MADVISE_FLAGS:
        set_, clear = MADVISE_FLAGS[advice]
        if advice == "wipeonfork" and any(v.vm_file is not None or v.vm_flags & VM_SHARED
                                          for v in vmas):
            raise TraceError(op.line, "madvise wipeonfork on a file or shared mapping (EINVAL)")
        if advice == "mergeable":
            eligible = lambda v: not v.vm_flags & VM_SHARED        # vma_ksm_compatible()
        else:
            eligible = lambda v: True
        modify_flags_range(m, mm, start, end,
                           lambda v: (v.vm_flags | set_) & ~clear if eligible(v) else v.vm_flags,
                           lambda v, a, b, old: m.policy.madvise(m, v, advice))
        return
    if advice in ("dontneed", "pageout", "cold") and any(v.vm_flags & VM_LOCKED for v in vmas):
        raise TraceError(op.line, f"madvise {advice} on mlocked memory (EINVAL)")
    if advice == "dontneed":                           # madvise_dontneed_single_vma()
        for vma, a, b in for_each_vma_range(mm, start, end):
            split_huge_edges(m, mm, a, b)
            zap_pte_range(m, vma, a - vma.vm_start, b - vma.vm_start)
        reclaim_empty_pt(m, mm, start, end)
    elif advice == "pageout":                          # madvise_pageout()
        madvise_pageout(m, mm, start, end)
    elif advice == "collapse":                         # madvise_collapse()
        for vma, _, _ in for_each_vma_range(mm, start, end):
            m.policy.madvise(m, vma, advice)
    # cold, collapse, and pageout without swap: no rmap object changes (R22)

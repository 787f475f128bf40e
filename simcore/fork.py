"""fork(): dup_mmap() (mm/mmap.c since 6.16, kernel/fork.c before)."""
from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, NamedTuple

from . import trace as T
from .mm import MM, mm_alloc
from .pagetable import copy_page_ranges
from .slab import ANON_VMA, AVC, VMA as VMA_CACHE
from .policy.base import Policy
from .vma import NO_CHAIN, VM_DONTCOPY, VM_LOCKED_MASK, VM_WIPEONFORK, VMA

if TYPE_CHECKING:
    from .machine import Machine


class ForkRecord(NamedTuple):
    """What one fork did, for the fork cost model (sweep/calibrate.py, sweep/runner.py)."""
    vmas: int           # vm_area_structs copied
    avcs: int           # anon_vma_chains allocated (anon_vma_fork() clones and links)
    anon_vmas: int      # anon_vmas allocated
    ptes: int           # page-table entries copied (copy_page_range())
    upgrade_ptes: int   # page-table entries the policy scanned during the fork (lazy upgrades)
    policy: Mapping[str, int] = MappingProxyType({})   # the design's own fork work: its
    #                     Policy.fork_counters (e.g. cow_ctx_allocs), each this fork's difference


# row columns summing every fork's record (fork_metrics); a policy's fork counters add
# fork_<counter> columns (sweep.store.policy_metrics)
FORK_INTS = ("fork_vmas", "fork_ptes", "fork_anon_vmas", "fork_avcs", "fork_upgrade_ptes")


def fork_metrics(forks: list[ForkRecord], counters: tuple[str, ...]) -> dict[str, int]:
    """Totals over forks: FORK_INTS and fork_<name> for each of the policy's fork counters."""
    out = {f"fork_{k}": sum(getattr(f, k) for f in forks)
           for k in ("vmas", "ptes", "anon_vmas", "avcs", "upgrade_ptes")}
    out.update({f"fork_{k}": sum(f.policy.get(k, 0) for f in forks) for k in counters})
    return out


def policy_fork_ns(f: ForkRecord, arch: Mapping) -> float:
    """The predicted ns of a fork's policy work: each counter times the profile's
    fork_<counter>_ns when the profile has one (simcore/arch.py; counters without a
    coefficient cost nothing here, e.g. locks are the time model's)."""
    return sum(float(arch[f"fork_{k}_ns"]) * n for k, n in f.policy.items()
               if f"fork_{k}_ns" in arch)


def dup_mmap(m: Machine, parent: MM, child: MM) -> None:
    """dup_mmap(): copy every VMA but VM_DONTCOPY (vm_area_dup(), inline); WIPEONFORK VMAs
    start empty; the page tables of the VMAs that need them are copied together at the end
    (copy_page_ranges(): nothing in between reads them); then the policy links the two mms
    (the COW-context PoC's dup_cow_context()).  The anon_vmas and AVCs anon_vma_fork()
    allocates are counted in the slab once, at the end (its `allocs`), and so are the
    copies unless the policy's anon_vma_fork() may free a VMA (nothing in between reads or
    changes those counts, and a fork frees no anon_vma and no AVC);
    anon_vma_fork() is not called for a VMA that never faulted where the policy says it
    does nothing (Policy.fork_skips_unfaulted)."""
    child.files = dict(parent.files)
    policy = m.policy
    anon_vma_fork = policy.anon_vma_fork
    skip = policy.fork_skips_unfaulted
    direct = type(policy).vma_anon_vma is Policy.vma_anon_vma    # vma_anon_vma(): .anon_vma
    each = policy.fork_frees_vmas()
    slab, new_id, vma_new = m.slab, m.new_id, VMA.__new__
    allocs = [0] * len(slab.allocs)
    vmas: list[VMA] = []
    add_vma = vmas.append
    copy_dst: list[VMA] = []                    # vma_needs_copy(): copy_page_range() of
    copy_src: list[VMA] = []                    # copy_dst[i] from copy_src[i]
    rare = VM_DONTCOPY | VM_LOCKED_MASK | VM_WIPEONFORK
    for mpnt in parent.vmas:
        flags = mpnt.vm_flags
        if flags & rare:
            if flags & VM_DONTCOPY:
                continue
        if each:
            slab.alloc(VMA_CACHE)
        # vm_area_dup(): VMA.__init__()'s stores without its call (~5*10^5 copies per cell),
        # the anon_vma pointer copied, an empty chain and no page table
        tmp = vma_new(VMA)
        tmp.id = new_id()
        tmp.mm = child
        tmp.vm_start = mpnt.vm_start
        tmp.vm_end = mpnt.vm_end
        tmp.vm_pgoff = mpnt.vm_pgoff
        tmp.vm_flags = flags
        tmp.vm_file = mpnt.vm_file
        tmp.anon_vma = pav = mpnt.anon_vma
        tmp.chain = NO_CHAIN
        tmp.pte = None
        tmp.ptef = None
        tmp.priv = None
        add_vma(tmp)
        if flags & rare:
            if flags & VM_LOCKED_MASK:
                tmp.vm_flags = flags & ~VM_LOCKED_MASK     # after anon_vma_fork() in the
            #                                     kernel; nothing there reads the child's flags
            if flags & VM_WIPEONFORK:
                tmp.anon_vma = None
                continue                                   # starts empty: no anon_vma, no copy
        if pav is None and skip and mpnt.pte is None and mpnt.priv is None and not mpnt.chain:
            continue                                       # never faulted: nothing to fork
        anon_vma_fork(m, tmp, mpnt, allocs)
        if (mpnt.anon_vma is not None) if direct else (policy.vma_anon_vma(mpnt) is not None):
            copy_dst.append(tmp)                           # vma_needs_copy()
            copy_src.append(mpnt)
    if not each and vmas:
        allocs[VMA_CACHE] += len(vmas)
    for cache, n in enumerate(allocs):
        if n:
            slab.alloc(cache, n)
    if child.vmas:
        child.vmas.extend(vmas)
        child.starts.extend([v.vm_start for v in vmas])
    else:                       # a new mm: its tree is the copies (every VMA's: a copy of
        child.vmas = vmas       # the parent's starts)
        child.starts = (parent.starts.copy() if len(vmas) == len(parent.vmas)
                        else [v.vm_start for v in vmas])
    copy_page_ranges(m, copy_dst, copy_src)
    policy.mm_fork(m, parent, child)


def copy_mm(m: Machine, op: T.Fork) -> None:
    """fork(): copy_process() -> copy_mm() -> dup_mm() -> dup_mmap(); appends a ForkRecord
    to m.forks."""
    m.layout.fork(op)
    names = m.policy.fork_counters
    work = m.policy.fork_work(m)
    child = mm_alloc(m, op.child, "fork")        # mm_init(): the design's per-mm objects
    allocs, ptes, scanned = list(m.slab.allocs), m.fork_ptes, m.policy.upgrade_ptes()
    dup_mmap(m, m.procs[op.pid], child)
    m.procs[op.child] = child
    now = m.slab.allocs
    done = m.policy.fork_work(m)
    m.forks.append(ForkRecord(vmas=now[VMA_CACHE] - allocs[VMA_CACHE], avcs=now[AVC] - allocs[AVC],
                              anon_vmas=now[ANON_VMA] - allocs[ANON_VMA],
                              ptes=m.fork_ptes - ptes, upgrade_ptes=m.policy.upgrade_ptes() - scanned,
                              policy=dict(zip(names, (b - a for a, b in zip(work, done))))
                              if names else ForkRecord._field_defaults["policy"]))

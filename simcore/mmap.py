"""mmap, munmap and address-space teardown (mm/mmap.c, mm/vma.c; exec_mmap() of fs/exec.c,
exit_mm() of kernel/exit.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import trace as T
from .fault import mm_populate
from .layout import PROT, PROT_EXEC, PROT_READ, PROT_WRITE
from .mm import MM, mm_alloc
from .pagetable import free_pgtables, split_huge_edges, zap_pte_range
from .vma import (VM_ACCOUNT, VM_EXEC, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_READ,
                  VM_SHARED, VM_WRITE, VMA, File, remove_vma_from_mm, same_file_flags, split_vma,
                  vm_area_alloc, vm_area_free, vma_merge_new_range)

if TYPE_CHECKING:
    from .machine import Machine


def calc_vm_prot_bits(prot: int) -> int:
    """calc_vm_prot_bits(): PROT_* -> VM_READ/VM_WRITE/VM_EXEC."""
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


def mmap_vm_flags(prot: int, kind: str) -> int:
    """do_mmap()'s vm_flags: calc_vm_prot_bits() | VM_MAY*, VM_SHARED | VM_MAYSHARE for a
    shared mapping, VM_ACCOUNT for a private writable one (accountable_mapping())."""
    flags = calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if kind in ("shared_anon", "shared_file"):
        flags |= VM_SHARED | VM_MAYSHARE
    elif flags & VM_WRITE:
        flags |= VM_ACCOUNT
    return flags


# (trace prot, trace kind) -> vm_flags of the mmap (looked up once per mmap op)
MMAP_FLAGS = {(p, kind): mmap_vm_flags(PROT[p], kind) for p in T.PROTS for kind in T.KINDS}


def lands_last(vmas: list[VMA], start: int, flags: int, file: File | None) -> bool:
    """[start, ...) lies above every VMA and joins none: mmap_region() has no VMA to detach
    and no neighbour to merge with, and the new VMA is the last (mm.insert() would append
    it).  Either the range starts above the last VMA's end (a fresh slot), or at its end
    (placed `after` it) while that VMA fails is_mergeable_vma() (another file or other
    flags), the first test of can_vma_merge_after(), so vma_merge_new_range() would find
    no merge (there is no next VMA).  tests/unit/test_mmap.py compares this with the
    general path."""
    if not vmas:
        return True
    last = vmas[-1]
    end = last.vm_end
    return end < start or (end == start and not same_file_flags(last, file, flags))


def do_mmap(m: Machine, op: T.Mmap) -> None:
    """do_mmap() -> mmap_region(): vm_flags from prot and kind, merge with a neighbour
    (vma_merge_new_range()) or a new VMA; MAP_POPULATE -> __mm_populate()."""
    start = m.layout.mmap_start(op)
    mm = m.procs[op.pid]
    kind = op.kind
    if kind == "anon":
        file, pgoff = None, start                      # do_mmap(): pgoff = addr >> PAGE_SHIFT
    elif kind == "shared_anon":
        file, pgoff = File("dev/zero", True), 0        # shmem_zero_setup(): a file of its own
    else:
        file = mm.files.get(op.file)
        if file is None:
            file = mm.files[op.file] = File(op.file)
        pgoff = op.offset
    flags = MMAP_FLAGS[op.prot, kind]
    vmas = mm.vmas
    if not op.populate and (not vmas or vmas[-1].vm_end < start     # a fresh slot: inline
                            or lands_last(vmas, start, flags, file)):
        # mmap_region()'s case of a new last VMA (most mmaps), without the call
        vmas.append(vm_area_alloc(m, mm, start, start + op.pages, pgoff, flags, file))
        mm.starts.append(start)
        return
    mmap_region(m, mm, start, start + op.pages, pgoff, flags, file, op.populate)


def mmap_region(m: Machine, mm: MM, start: int, end: int, pgoff: int, flags: int,
                file: File | None, populate: bool = False) -> None:
    """__mmap_region(): a MAP_FIXED range over existing mappings first detaches them
    (__mmap_setup(): vms_gather_munmap_vmas(), then vms_clean_up_area() unmaps their pages
    and frees their page tables and anon_vma chains); then the new range merges into a
    neighbour or gets a new VMA; only then are the old VMAs freed
    (vms_complete_munmap_vmas() -> remove_vma()), so the new VMA and the old ones are
    alive together for a moment."""
    vmas = mm.vmas
    if lands_last(vmas, start, flags, file):
        # the common case: no VMA to detach, no neighbour to merge with, the new VMA is
        # the last (mm.insert(), which would append it)
        vmas.append(vm_area_alloc(m, mm, start, end, pgoff, flags, file))
        mm.starts.append(start)
    else:
        # a range at or above the end of the last VMA (placed `after` it) detaches nothing
        old = vms_gather_munmap_vmas(m, mm, start, end) if vmas and vmas[-1].vm_end > start \
            else []
        for vma in old:
            zap_pte_range(m, vma, 0, vma.pages)
            m.policy.remove_vma(m, vma)
            mm.remove(vma)
            m.policy.unlink_anon_vmas(m, vma)
        if old:
            free_pgtables(m, mm, start, end)
        vma = vma_merge_new_range(m, mm, start, end, pgoff, flags, file)
        if vma is None:
            vma = vm_area_alloc(m, mm, start, end, pgoff, flags, file)
            mm.insert(vma)
        for gone in old:
            vm_area_free(m, gone)
    if populate:
        mm_populate(m, mm, start, end)


def vms_gather_munmap_vmas(m: Machine, mm: MM, start: int, end: int) -> list[VMA]:
    """vms_gather_munmap_vmas(): split the VMAs at the edges of [start, end); -> the VMAs
    inside it."""
    vmas = mm.vmas_in_range(start, end)
    if not vmas:
        return vmas
    split_huge_edges(m, mm, start, end)
    if vmas[0].vm_start < start:
        split_vma(m, vmas[0], start, new_below=True)
    last = mm.vma_lookup(end - 1)
    if last is not None and last.vm_end > end:
        split_vma(m, last, end, new_below=False)
    return mm.vmas_in_range(start, end)


def do_vmi_munmap(m: Machine, mm: MM, start: int, end: int) -> None:
    """do_vmi_munmap() -> do_vmi_align_munmap(): split at the edges, then unmap and free the
    VMAs inside (unmap_region(), free_pgtables())."""
    vmas = vms_gather_munmap_vmas(m, mm, start, end)
    if not vmas:
        return
    for vma in vmas:
        remove_vma(m, vma)
    free_pgtables(m, mm, start, end)


def vm_munmap(m: Machine, op: T.Munmap) -> None:
    """munmap() -> __vm_munmap() -> do_vmi_munmap()."""
    span = m.layout.munmap(op)
    do_vmi_munmap(m, m.procs[op.pid], span.start, span.start + span.count)


def remove_vma(m: Machine, vma: VMA) -> None:
    """unmap_vmas() + free_pgtables() -> unlink_anon_vmas() + remove_vma() for one VMA."""
    zap_pte_range(m, vma, 0, vma.pages)
    m.policy.remove_vma(m, vma)
    remove_vma_from_mm(m, vma)


def exit_mmap(m: Machine, mm: MM) -> None:
    """exit_mmap(): unmap, unlink and free every VMA.  Under a policy that does not watch
    folio frees (tracks_frees), the order in which folios are freed is not observable, so
    every VMA's entries are zapped at once (unmap_vmas() over the whole mm, as the kernel
    does) and the VMAs leave the mm together.  So too under a policy whose folio frees
    commute with its VMA frees (Policy.exit_frees_commute) while every folio is small: the
    whole mm's entries, concatenated in VMA order, free the same folios in the same order
    as one VMA at a time (a small anon folio is mapped at most once per mm), only before
    the VMAs are freed instead of interleaved with them.  remove_vma() one at a time is
    the reference (tests/test_lazy_fast_paths.py)."""
    policy = m.policy
    if policy.tracks_frees and (m.folios.large or not policy.exit_frees_commute):
        for vma in list(mm.vmas):
            remove_vma(m, vma)
    else:
        ptes = [vma.pte for vma in mm.vmas if vma.pte is not None]
        if ptes:
            pte = np.concatenate(ptes) if len(ptes) > 1 else ptes[0]
            m.folios.put(pte[pte >= 0])
        vmas = mm.vmas
        mm.vmas, mm.starts = [], []
        for vma in vmas:
            vma.pte = vma.ptef = None
            policy.remove_vma(m, vma)
            policy.unlink_anon_vmas(m, vma)            # remove_vma_from_mm() without the tree
            vm_area_free(m, vma)
    mm.pt_pmds.clear()


def mmput(m: Machine, mm: MM) -> None:
    """mmput() of the last user: exit_mmap(), then __mmdrop() (the policy's per-mm state)."""
    exit_mmap(m, mm)
    m.policy.mmdrop(m, mm)


def exec_mmap(m: Machine, op: T.Exec) -> None:
    """execve(): a fresh mm (bprm_mm_init() -> mm_alloc()), then exec_mmap() drops the old one
    (mmput())."""
    m.layout.exec(op)
    new = mm_alloc(m, op.pid, "exec")
    mmput(m, m.procs[op.pid])
    m.procs[op.pid] = new


def exit_mm(m: Machine, op: T.Exit) -> None:
    """exit(): exit_mm() -> mmput()."""
    m.layout.exit(op)
    mmput(m, m.procs[op.pid])
    del m.procs[op.pid]

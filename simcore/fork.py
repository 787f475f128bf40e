"""fork(): dup_mmap() (mm/mmap.c since 6.16, kernel/fork.c before)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .mm import MM
from .pagetable import copy_page_range
from .vma import VM_DONTCOPY, VM_LOCKED_MASK, VM_WIPEONFORK, VMA, vm_area_dup

if TYPE_CHECKING:
    from .machine import Machine


def vma_needs_copy(dst: VMA, src: VMA) -> bool:
    """vma_needs_copy(): page tables are copied only for VMAs with an anon_vma (no PFNMAP/uffd-wp
    here); the child refaults everything else."""
    return src.anon_vma is not None


def dup_mmap(m: Machine, parent: MM, child: MM) -> None:
    """dup_mmap(): copy every VMA but VM_DONTCOPY; WIPEONFORK VMAs start empty."""
    child.files = dict(parent.files)
    for mpnt in parent.vmas:
        if mpnt.vm_flags & VM_DONTCOPY:
            continue
        tmp = vm_area_dup(m, mpnt, child)
        if mpnt.vm_flags & VM_WIPEONFORK:
            tmp.anon_vma = None
        else:
            m.policy.anon_vma_fork(m, tmp, mpnt)
        tmp.vm_flags &= ~VM_LOCKED_MASK
        child.vmas.append(tmp)
        child.starts.append(tmp.vm_start)
        if not mpnt.vm_flags & VM_WIPEONFORK and vma_needs_copy(tmp, mpnt):
            copy_page_range(m, tmp, mpnt)

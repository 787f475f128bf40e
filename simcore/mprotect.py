"""mprotect() (mm/mprotect.c), and the per-VMA flag-change loop it shares with madvise() and
mlock()."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from . import trace as T
from .fault import populate_vma_page_range
from .layout import PROT
from .mm import MM, for_each_vma_range
from .mmap import calc_vm_prot_bits
from .pagetable import split_huge_edges
from .vma import (F_EXCL, F_WRITE, VM_ACCOUNT, VM_EXEC, VM_LOCKED, VM_NORESERVE, VM_READ,
                  VM_SHARED, VM_WRITE, VMA, vma_modify_flags)

if TYPE_CHECKING:
    from .machine import Machine


def modify_flags_range(m: Machine, mm: MM, start: int, end: int, newflags: Callable[[VMA], int],
                       after: Callable[[VMA, int, int, int], None] | None = None) -> None:
    """The for_each_vma_range() + vma_modify_flags() loop of madvise_walk_vmas() and
    apply_vma_lock_flags() (do_mprotect_pkey() runs the same loop over mprotect_fixup(),
    without closures: its hot path): each VMA piece of [start, end) whose flags change is
    split or merged; `after(vma, a, b, oldflags)` then runs on it."""
    for vma, a, b in for_each_vma_range(mm, start, end):
        old = vma.vm_flags
        vma = modify_flags(m, mm, vma, a, b, newflags(vma))
        if after is not None:
            after(vma, a, b, old)


def modify_flags(m: Machine, mm: MM, vma: VMA, a: int, b: int, flags: int) -> VMA:
    """One step of that loop: [a, b) of vma gets `flags` (vma_modify_flags(): split or merged,
    huge pages split at the edges first) if they differ from its own; -> the VMA of [a, b)."""
    if flags != vma.vm_flags:
        split_huge_edges(m, mm, a, b, vma)
        vma = vma_modify_flags(m, vma, a, b, flags)
    return vma


_WRITE, _NOT_WRITE = np.uint8(F_WRITE), ~np.uint8(F_WRITE)
# change_protection(): up to this many entries are changed one by one (scalar stores cost
# less than numpy's per-call cost of the array operations; most mprotects cover 1-4 pages)
FEW_ENTRIES = 8


def change_protection(vma: VMA, a: int, b: int) -> None:
    """change_protection(): write-protect, or make exclusive anon entries writable again."""
    ptef = vma.ptef
    if ptef is None:
        return
    lo, hi = a - vma.vm_start, b - vma.vm_start
    if hi - lo <= FEW_ENTRIES:                        # entry by entry: the same flags
        if vma.vm_flags & VM_WRITE:
            for i, f in enumerate(ptef[lo:hi].tolist(), lo):
                if f & F_EXCL and not f & F_WRITE:
                    ptef[i] = f | F_WRITE
        else:
            for i, f in enumerate(ptef[lo:hi].tolist(), lo):
                if f & F_WRITE:
                    ptef[i] = f & ~F_WRITE
        return
    flags = ptef[lo:hi]
    if vma.vm_flags & VM_WRITE:
        excl = (flags & F_EXCL) != 0
        flags[excl] |= _WRITE
    else:
        flags &= _NOT_WRITE


# PROT_* of a trace's prot -> VM_READ/VM_WRITE/VM_EXEC (calc_vm_prot_bits(), once per prot)
PROT_BITS = {name: calc_vm_prot_bits(prot) for name, prot in PROT.items()}


def mprotect_fixup(m: Machine, mm: MM, vma: VMA, a: int, b: int, access: int) -> None:
    """mprotect_fixup() of [a, b) inside vma: the new vm_flags (VM_ACCOUNT kept or dropped),
    vma_modify_flags() if they change, change_protection(); a private VM_LOCKED VMA becoming
    writable is populated to break COW."""
    old = vma.vm_flags
    new = (old & ~(VM_READ | VM_WRITE | VM_EXEC)) | access
    if new & VM_WRITE:
        if not old & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE):
            new |= VM_ACCOUNT
    elif old & VM_ACCOUNT and vma.is_anonymous() and not m.policy.vma_has_anon(vma):
        new &= ~VM_ACCOUNT
    vma = modify_flags(m, mm, vma, a, b, new)
    change_protection(vma, a, b)
    if (old & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and vma.vm_flags & VM_WRITE:
        populate_vma_page_range(m, vma, a - vma.vm_start, b - vma.vm_start)


def do_mprotect_pkey(m: Machine, op: T.Mprotect) -> None:
    """do_mprotect_pkey(): mprotect_fixup() on each VMA of the range (the loop of
    modify_flags_range(), with mprotect's own steps)."""
    start, count = m.layout.access(op)
    end = start + count
    mm = m.procs[op.pid]
    access = PROT_BITS[op.prot]
    vma = mm.vma_lookup(start)
    if vma is not None and vma.vm_end >= end:           # one VMA (most calls): no iterator
        mprotect_fixup(m, mm, vma, start, end, access)
        return
    for vma, a, b in for_each_vma_range(mm, start, end):
        mprotect_fixup(m, mm, vma, a, b, access)

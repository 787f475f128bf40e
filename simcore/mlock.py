"""mlock() and munlock() (mm/mlock.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import trace as T
from .fault import mm_populate
from .mm import MM
from .mprotect import modify_flags_range
from .vma import VM_EXEC, VM_LOCKED, VM_LOCKED_MASK, VM_READ, VM_WRITE

if TYPE_CHECKING:
    from .machine import Machine


def apply_vma_lock_flags(m: Machine, mm: MM, start: int, end: int, lock: bool) -> None:
    """apply_vma_lock_flags(): mlock_fixup() sets VM_LOCKED (or clears VM_LOCKED_MASK) on each
    VMA of [start, end), splitting or merging it."""
    if lock:
        modify_flags_range(m, mm, start, end, lambda v: v.vm_flags | VM_LOCKED)
    else:
        modify_flags_range(m, mm, start, end, lambda v: v.vm_flags & ~VM_LOCKED_MASK)


def do_mlock(m: Machine, op: T.Mlock) -> None:
    """do_mlock() (then __mm_populate()) or munlock()."""
    span = m.layout.access(op)
    mm = m.procs[op.pid]
    start, end = span.start, span.start + span.count
    if op.lock:
        if any(not v.vm_flags & (VM_READ | VM_WRITE | VM_EXEC) for v in mm.vmas_in_range(start, end)):
            raise T.TraceError(op.line, "mlock of PROT_NONE pages (ENOMEM)")
        apply_vma_lock_flags(m, mm, start, end, True)
        mm_populate(m, mm, start, end)
    else:
        apply_vma_lock_flags(m, mm, start, end, False)

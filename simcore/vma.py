"""struct vm_area_struct, split and merge (mm/vma.c, 6.18 semantics)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import InvariantError
from .slab import VMA as VMA_CACHE

if TYPE_CHECKING:
    from .anon_vma import AnonVMA
    from .machine import Machine
    from .mm import MM

# vm_flags bits (include/linux/mm.h)
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE = 0x10, 0x20, 0x40, 0x80
VM_LOCKED = 0x2000
VM_DONTCOPY = 0x20000
VM_LOCKONFAULT = 0x80000
VM_ACCOUNT = 0x100000
VM_NORESERVE = 0x200000   # MAP_NORESERVE: never set by v1 traces, only by recordings
VM_GROWSDOWN = 0x100
VM_WIPEONFORK = 0x2000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_SOFTDIRTY = 0          # CONFIG_MEM_SOFT_DIRTY is off on the reference kernel
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT

# page-table entry encoding (per VMA arrays): folio id >= 0, or one of these
PTE_NONE, PTE_ZERO, PTE_FILE = -1, -2, -3
PTE_SWAP = -4            # a swap entry (swap.py: MADV_PAGEOUT on a machine with swap)
# per-entry flag bits
F_WRITE, F_EXCL, F_HUGE = 1, 2, 4


NO_CHAIN: tuple = ()      # the chain of a VMA not linked to any anon_vma (chains are tuples)


class File:
    """An open file (struct file); shared anonymous mappings get one each (shmem)."""
    __slots__ = ("name", "shmem")

    def __init__(self, name: str, shmem: bool = False) -> None:
        self.name = name
        self.shmem = shmem

    def __repr__(self) -> str:
        return f"File({self.name})"


class VMA:
    """struct vm_area_struct with its slice of the page tables.

    ``pte[i]``/``ptef[i]`` describe page ``vm_start + i`` (None: no entry yet).
    ``priv`` is free for a policy's own per-VMA state.
    """
    __slots__ = ("id", "mm", "vm_start", "vm_end", "vm_pgoff", "vm_flags", "vm_file",
                 "anon_vma", "chain", "pte", "ptef", "priv")

    def __init__(self, ident: int, mm: MM, start: int, end: int, pgoff: int, flags: int,
                 file: File | None) -> None:
        self.id = ident
        self.mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_pgoff = pgoff
        self.vm_flags = flags
        self.vm_file = file
        self.anon_vma: AnonVMA | None = None
        self.chain: tuple[AnonVMA, ...] = NO_CHAIN   # its AVCs' anon_vmas (anon_vma.py)
        self.pte: np.ndarray | None = None
        self.ptef: np.ndarray | None = None
        self.priv: object = None

    @property
    def pages(self) -> int:
        return self.vm_end - self.vm_start

    @property
    def last_pgoff(self) -> int:
        """vma_last_pgoff()."""
        return self.vm_pgoff + self.vm_end - self.vm_start - 1

    def is_anonymous(self) -> bool:
        """vma_is_anonymous(): private anonymous memory (no vm_ops)."""
        return self.vm_file is None

    def __repr__(self) -> str:
        av = f"AV{self.anon_vma.id}" if self.anon_vma else "-"
        return (f"VMA{self.id}[{self.vm_start:#x}-{self.vm_end:#x} pgoff={self.vm_pgoff:#x} "
                f"flags={self.vm_flags:#x} {self.vm_file or 'anon'} av={av} L={len(self.chain)}]")


# ---- page-table slices that travel with VMAs ---------------------------------
# pt_ensure()'s source of empty entries: a copy of a slice costs a third of np.full()
_NO_PTES = np.full(512, PTE_NONE, np.int32)
_NO_PTES.flags.writeable = False


def pt_none(n: int) -> np.ndarray:
    """A new array of n empty entries (PTE_NONE)."""
    return _NO_PTES[:n].copy() if n <= 512 else np.full(n, PTE_NONE, np.int32)


def pt_ensure(vma: VMA) -> None:
    if vma.pte is None:
        n = vma.vm_end - vma.vm_start
        vma.pte = pt_none(n)
        vma.ptef = np.zeros(n, np.uint8)


def pt_take(vma: VMA, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Copy of entries [lo, hi) (relative to vm_start), or None if there are none."""
    if vma.pte is None:
        return None
    return vma.pte[lo:hi].copy(), vma.ptef[lo:hi].copy()


def pt_set(vma: VMA, parts: list[tuple[int, tuple[np.ndarray, np.ndarray] | None]]) -> None:
    """Rebuild vma's arrays from (length, entries-or-None) parts, in address order (the
    entries of a part are pt_take() copies: one part is taken over as it is)."""
    if len(parts) == 1:
        p = parts[0][1]
        vma.pte, vma.ptef = (None, None) if p is None else p
        return
    if all(p is None for _, p in parts):
        vma.pte = vma.ptef = None
        return
    pte = [p[0] if p is not None else pt_none(n) for n, p in parts]
    ptef = [p[1] if p is not None else np.zeros(n, np.uint8) for n, p in parts]
    vma.pte = np.concatenate(pte)
    vma.ptef = np.concatenate(ptef)


def vm_area_alloc(m: Machine, mm: MM, start: int, end: int, pgoff: int, flags: int,
                  file: File | None) -> VMA:
    """vm_area_alloc(): +1 vm_area_struct."""
    slab = m.slab                     # slab.alloc(VMA_CACHE), inline (~10^6 calls per cell)
    live = slab.live[VMA_CACHE] = slab.live[VMA_CACHE] + 1
    slab.allocs[VMA_CACHE] += 1
    if live > slab.peak[VMA_CACHE]:
        slab.peak[VMA_CACHE] = live
    return VMA(m.new_id(), mm, start, end, pgoff, flags, file)


def vm_area_dup(m: Machine, vma: VMA, mm: MM | None = None) -> VMA:
    """vm_area_dup(): a copy with an empty chain (anon_vma pointer copied)."""
    new = vm_area_alloc(m, vma.mm if mm is None else mm, vma.vm_start, vma.vm_end, vma.vm_pgoff,
                        vma.vm_flags, vma.vm_file)
    new.anon_vma = vma.anon_vma
    return new


def vm_area_free(m: Machine, vma: VMA) -> None:
    """vm_area_free()."""
    m.policy.vma_freed(m, vma)


# ---- anon_vma reuse and merge compatibility -----------------------------------
def _mpol_flags_file_equal(a: VMA, b: VMA, ignore: int) -> bool:
    return a.vm_file is b.vm_file and not ((a.vm_flags ^ b.vm_flags) & ~ignore)


def anon_vma_compatible(a: VMA, b: VMA) -> bool:
    """anon_vma_compatible(): a directly below b, flags equal but for access bits, linear pgoff."""
    return (a.vm_end == b.vm_start and _mpol_flags_file_equal(a, b, VM_ACCESS_FLAGS | VM_SOFTDIRTY)
            and b.vm_pgoff == a.vm_pgoff + (b.vm_start - a.vm_start))


def reusable_anon_vma(old: VMA, a: VMA, b: VMA) -> AnonVMA | None:
    """reusable_anon_vma(): old's anon_vma if compatible and old's chain is singular."""
    if old.anon_vma is not None and len(old.chain) == 1 and anon_vma_compatible(a, b):
        return old.anon_vma
    return None


def find_mergeable_anon_vma(vma: VMA) -> AnonVMA | None:
    """find_mergeable_anon_vma(): try the next VMA first, then the previous one."""
    prev, nxt = vma.mm.neighbours(vma)
    if nxt is not None and nxt.vm_start == vma.vm_end:     # vma_lookup(vma->vm_end)
        av = reusable_anon_vma(nxt, vma, nxt)
        if av is not None:
            return av
    if prev is not None and prev.vm_end == vma.vm_start:   # anon_vma_compatible() needs it
        return reusable_anon_vma(prev, prev, vma)
    return None


def vma_is_fork_child(vma: VMA | None) -> bool:
    """vma_is_fork_child(): has an anon_vma and a chain that is not singular."""
    return vma is not None and vma.anon_vma is not None and len(vma.chain) != 1


class MergeReq:
    """struct vma_merge_struct: the proposed range and its attributes."""
    __slots__ = ("start", "end", "pgoff", "flags", "file", "anon_vma", "middle", "copied_from",
                 "extended", "prev", "next")

    def __init__(self, start: int, end: int, pgoff: int, flags: int, file: File | None,
                 anon_vma: AnonVMA | None, middle: VMA | None, prev: VMA | None,
                 next: VMA | None, copied_from: VMA | None = None,
                 extended: VMA | None = None) -> None:
        self.start, self.end, self.pgoff, self.flags, self.file = start, end, pgoff, flags, file
        self.anon_vma, self.middle, self.copied_from = anon_vma, middle, copied_from
        # vma_merge_extend(): the VMA whose extension this is (VMG_VMA_STATE names it, then
        # clears vmg->middle, so mainline's rules never look at it)
        self.extended = extended
        self.prev, self.next = prev, next


def is_mergeable_vma(req: MergeReq, tgt: VMA) -> bool:
    """is_mergeable_vma(): same file, flags equal but for VM_SOFTDIRTY (no policy/uffd/name here)."""
    return same_file_flags(tgt, req.file, req.flags)


def same_file_flags(tgt: VMA, file: File | None, flags: int) -> bool:
    """is_mergeable_vma() of a range with this file and flags (also before its MergeReq)."""
    return tgt.vm_file is file and not ((tgt.vm_flags ^ flags) & ~VM_SOFTDIRTY)


def is_mergeable_anon_vma(m: Machine, req: MergeReq, tgt: VMA) -> bool:
    """is_mergeable_anon_vma() (6.16+): fork children never donate or receive an anon_vma."""
    return m.policy.is_mergeable_anon_vma(req, tgt)


def can_vma_merge_before(m: Machine, req: MergeReq) -> bool:
    """can_vma_merge_before(): req can merge with the VMA that follows it."""
    nxt = req.next
    return (is_mergeable_vma(req, nxt) and is_mergeable_anon_vma(m, req, nxt)
            and nxt.vm_pgoff == req.pgoff + (req.end - req.start))


def can_vma_merge_after(m: Machine, req: MergeReq) -> bool:
    """can_vma_merge_after(): req can merge with the VMA that precedes it."""
    prev = req.prev
    return (is_mergeable_vma(req, prev) and is_mergeable_anon_vma(m, req, prev)
            and prev.vm_pgoff + prev.pages == req.pgoff)


def are_anon_vmas_compatible(m: Machine, a: VMA, b: VMA) -> bool:
    """are_anon_vmas_compatible(), on what the policy says `vma->anon_vma` holds."""
    av_a, av_b = m.policy.vma_anon_vma(a), m.policy.vma_anon_vma(b)
    return av_a is None or av_b is None or av_a is av_b


def can_vma_merge_left(m: Machine, req: MergeReq) -> bool:
    return req.prev is not None and req.prev.vm_end == req.start and can_vma_merge_after(m, req)


def can_vma_merge_right(m: Machine, req: MergeReq, can_merge_left: bool) -> bool:
    nxt = req.next
    if nxt is None or req.end != nxt.vm_start or not can_vma_merge_before(m, req):
        return False
    return not can_merge_left or are_anon_vmas_compatible(m, req.prev, nxt)


def dup_anon_vma(m: Machine, dst: VMA, src: VMA) -> None:
    """dup_anon_vma(): the expanding dst takes src's anon_vma (+L(src) AVCs) if it has none."""
    m.policy.dup_anon_vma(m, dst, src)


# ---- removal -----------------------------------------------------------------
def remove_vma_from_mm(m: Machine, vma: VMA) -> None:
    """A VMA removed by a merge: unlink_anon_vmas() (via anon_vma_merge) and vm_area_free()."""
    vma.mm.remove(vma)
    m.policy.unlink_anon_vmas(m, vma)
    vm_area_free(m, vma)


# ---- split -------------------------------------------------------------------
def split_vma(m: Machine, vma: VMA, addr: int, new_below: bool) -> VMA:
    """__split_vma(): +1 VMA, clone of the chain; returns the new piece.

    new_below: the new VMA is [vm_start, addr) and vma keeps [addr, vm_end);
    else the new VMA is [addr, vm_end).
    """
    if not vma.vm_start < addr < vma.vm_end:
        raise InvariantError("split", f"split of {vma} at {addr:#x} outside it")
    mm = vma.mm
    new = vm_area_dup(m, vma)                # no page table of its own yet
    cut = addr - vma.vm_start
    pte, ptef = vma.pte, vma.ptef
    if new_below:
        new.vm_end = addr
        vma.vm_start = addr
        vma.vm_pgoff += cut
    else:
        new.vm_start = addr
        new.vm_pgoff += cut
        vma.vm_end = addr
    if pte is not None:
        # each side of the cut keeps its part of the arrays: views, which do not overlap
        # (what pt_take() copies of each side and pt_set() would give, without the copies)
        low, high = (pte[:cut], ptef[:cut]), (pte[cut:], ptef[cut:])
        (new.pte, new.ptef), (vma.pte, vma.ptef) = (low, high) if new_below else (high, low)
    m.policy.split(m, new, vma)
    if new_below:
        mm.reindex(vma)
    mm.insert(new)
    m.policy.pages_moved(m, new, "split")
    m.policy.pages_moved(m, vma, "split")
    return new


# ---- merges ------------------------------------------------------------------
def _may_merge(prev: VMA | None, nxt: VMA | None, start: int, end: int, file: File | None,
               flags: int) -> bool:
    """The first tests of can_vma_merge_left() and can_vma_merge_right(): prev (None: not
    tried) ends at start, or nxt starts at end, with is_mergeable_vma()'s file and flags."""
    return (prev is not None and prev.vm_end == start and same_file_flags(prev, file, flags)
            or nxt is not None and nxt.vm_start == end and same_file_flags(nxt, file, flags))


def vma_merge_existing_range(m: Machine, vma: VMA, start: int, end: int,
                             flags: int) -> VMA | None:
    """vma_merge_existing_range(): [start, end) of vma takes `flags`; merge with prev/next."""
    mm = vma.mm
    left_side, right_side = start == vma.vm_start, end == vma.vm_end
    if not left_side and not right_side:
        return None
    prev, nxt = mm.neighbours(vma)
    file = vma.vm_file
    if not _may_merge(prev if left_side else None, nxt if right_side else None, start, end,
                      file, flags):
        return None                                  # no MergeReq to build
    pgoff = vma.vm_pgoff + (start - vma.vm_start)
    req = MergeReq(start, end, pgoff, flags, file, m.policy.vma_anon_vma(vma), vma, prev, nxt)
    merge_left = left_side and can_vma_merge_left(m, req)
    merge_right = right_side and can_vma_merge_right(m, req, merge_left)
    if not merge_left and not merge_right:
        return None
    m.vma_merges += 1
    remove_middle = left_side and right_side
    if merge_left and merge_right:
        # prev extends over middle and next; both are removed
        dup_anon_vma(m, prev, nxt if m.policy.vma_anon_vma(nxt) is not None else vma)
        pt_set(prev, [(prev.pages, pt_take(prev, 0, prev.pages)),
                      (vma.pages, pt_take(vma, 0, vma.pages)),
                      (nxt.pages, pt_take(nxt, 0, nxt.pages))])
        prev.vm_end = nxt.vm_end
        prev.vm_flags = flags
        _fix_len(prev)
        remove_vma_from_mm(m, vma)
        remove_vma_from_mm(m, nxt)
        m.policy.vma_adjust(m, prev)
        m.policy.pages_moved(m, prev, "merge")
        return prev
    if merge_left:
        dup_anon_vma(m, prev, vma)
        moved = end - vma.vm_start
        pt_set(prev, [(prev.pages, pt_take(prev, 0, prev.pages)),
                      (moved, pt_take(vma, 0, moved))])
        prev.vm_end = end
        prev.vm_flags = flags
        _fix_len(prev)
        if remove_middle:
            remove_vma_from_mm(m, vma)
        else:
            pt_set(vma, [(vma.vm_end - end, pt_take(vma, moved, vma.pages))])
            vma.vm_pgoff += moved
            vma.vm_start = end
            mm.reindex(vma)
            m.policy.vma_adjust(m, vma)
        m.policy.vma_adjust(m, prev)
        m.policy.pages_moved(m, prev, "merge")
        return prev
    # merge_right: next extends down over [start, end)
    dup_anon_vma(m, nxt, vma)
    moved = vma.vm_end - start
    pt_set(nxt, [(moved, pt_take(vma, start - vma.vm_start, vma.pages)),
                 (nxt.pages, pt_take(nxt, 0, nxt.pages))])
    nxt.vm_start = start
    nxt.vm_pgoff -= moved
    nxt.vm_flags = flags
    _fix_len(nxt)
    if remove_middle:
        remove_vma_from_mm(m, vma)
    else:
        pt_set(vma, [(start - vma.vm_start, pt_take(vma, 0, start - vma.vm_start))])
        vma.vm_end = start
        m.policy.vma_adjust(m, vma)
    mm.reindex(nxt)
    m.policy.vma_adjust(m, nxt)
    m.policy.pages_moved(m, nxt, "merge")
    return nxt


def _fix_len(vma: VMA) -> None:
    if vma.pte is not None and len(vma.pte) != vma.pages:
        raise InvariantError("pt-length", f"page table length of {vma}")


def vma_modify_flags(m: Machine, vma: VMA, start: int, end: int, flags: int) -> VMA:
    """vma_modify_flags() -> vma_modify(): merge if possible, else split, then set flags."""
    merged = vma_merge_existing_range(m, vma, start, end, flags)
    if merged is not None:
        return merged
    if vma.vm_start < start:
        split_vma(m, vma, start, new_below=True)
    if vma.vm_end > end:
        split_vma(m, vma, end, new_below=False)
    vma.vm_flags = flags
    return vma


def vma_merge_new_range(m: Machine, mm: MM, start: int, end: int, pgoff: int, flags: int,
                        file: File | None, anon_vma: AnonVMA | None = None,
                        copied_from: VMA | None = None, extended: VMA | None = None) -> VMA | None:
    """vma_merge_new_range() + vma_expand(): a new range [start, end) joins prev and/or next."""
    prev, nxt = mm.find_vma_prev(start), mm.find_vma(end)    # [start, end) is free
    if (prev is None or prev.vm_end != start) and (nxt is None or nxt.vm_start != end):
        return None                                  # no neighbour touches the range
    req = MergeReq(start, end, pgoff, flags, file, anon_vma, None, prev, nxt, copied_from,
                   extended)
    merge_left = can_vma_merge_left(m, req)
    merge_right = can_vma_merge_right(m, req, merge_left)
    if not merge_left and not merge_right:
        return None
    m.vma_merges += 1
    if merge_left:
        target = prev
        if merge_right:
            dup_anon_vma(m, target, nxt)                     # vma_expand(): remove_next
        if copied_from is not None:
            dup_anon_vma(m, target, copied_from)
        parts = [(prev.pages, pt_take(prev, 0, prev.pages)), (end - start, None)]
        if merge_right:
            parts.append((nxt.pages, pt_take(nxt, 0, nxt.pages)))
        pt_set(target, parts)
        target.vm_end = nxt.vm_end if merge_right else end
        _fix_len(target)
        if merge_right:
            remove_vma_from_mm(m, nxt)
        m.policy.vma_adjust(m, target)
        if merge_right:
            m.policy.pages_moved(m, target, "merge")
        return target
    target = nxt
    if copied_from is not None:
        dup_anon_vma(m, target, copied_from)
    pt_set(target, [(end - start, None), (nxt.pages, pt_take(nxt, 0, nxt.pages))])
    target.vm_start = start
    target.vm_pgoff = pgoff
    _fix_len(target)
    mm.reindex(target)
    m.policy.vma_adjust(m, target)
    return target

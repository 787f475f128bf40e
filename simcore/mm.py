"""struct mm_struct: one process address space, VMAs ordered by address (the maple tree)."""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Iterator

from .errors import InvariantError, LayoutMismatch

if TYPE_CHECKING:
    from .machine import Machine
    from .vma import VMA


class MM:
    """A process address space: sorted VMAs plus the set of PMDs that hold a PTE table."""
    __slots__ = ("pid", "vmas", "starts", "pt_pmds", "files", "priv")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.vmas: list[VMA] = []
        self.starts: list[int] = []
        self.pt_pmds: set[int] = set()     # PMD indices (page >> pmd_shift) with a PTE table
        self.files: dict[str, object] = {}  # file name -> the open file this process maps
        self.priv: object = None            # a policy's own per-mm state (mm->cow_context)

    def __iter__(self) -> Iterator[VMA]:
        return iter(self.vmas)

    def __len__(self) -> int:
        return len(self.vmas)

    def _index(self, vma: VMA) -> int:
        i = bisect_right(self.starts, vma.vm_start) - 1
        if i < 0 or self.vmas[i] is not vma:
            raise InvariantError("mm-index", f"{vma} is not in mm {self.pid} at its start")
        return i

    def find_vma(self, addr: int) -> VMA | None:
        """find_vma(): the first VMA with vm_end > addr (it may start above addr)."""
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and self.vmas[i].vm_end > addr:
            return self.vmas[i]
        i += 1
        return self.vmas[i] if i < len(self.vmas) else None

    def vma_lookup(self, addr: int) -> VMA | None:
        """vma_lookup(): the VMA containing addr, or None."""
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and self.vmas[i].vm_end > addr:
            return self.vmas[i]
        return None

    def find_vma_prev(self, addr: int) -> VMA | None:
        """The `pprev` of find_vma_prev(): the last VMA that ends at or below addr."""
        i = bisect_right(self.starts, addr - 1) - 1
        while i >= 0 and self.vmas[i].vm_end > addr:
            i -= 1
        return self.vmas[i] if i >= 0 else None

    def neighbours(self, vma: VMA) -> tuple[VMA | None, VMA | None]:
        """(vma_prev(), vma_next()) with one lookup."""
        i, vmas = self._index(vma), self.vmas
        return vmas[i - 1] if i else None, vmas[i + 1] if i + 1 < len(vmas) else None

    def vmas_in_range(self, start: int, end: int) -> list[VMA]:
        """The VMAs for_each_vma_range() visits: those overlapping [start, end)."""
        # VMAs do not overlap, so their ends are sorted like their starts: those overlapping
        # [start, end) are the run ending below the first VMA that starts at or above end
        vmas = self.vmas
        hi = lo = bisect_left(self.starts, end)
        while lo and vmas[lo - 1].vm_end > start:
            lo -= 1
        return vmas[lo:hi]

    def insert(self, vma: VMA) -> None:
        """vma_link() / vma_iter_store(): the range must be free."""
        vmas = self.vmas
        if not vmas or vmas[-1].vm_end <= vma.vm_start:     # above every VMA: the last
            vmas.append(vma)
            self.starts.append(vma.vm_start)
            return
        i = bisect_right(self.starts, vma.vm_start)
        if (i and self.vmas[i - 1].vm_end > vma.vm_start) or \
                (i < len(self.vmas) and self.vmas[i].vm_start < vma.vm_end):
            raise InvariantError("overlap", f"{vma} overlaps a VMA of mm {self.pid}")
        self.vmas.insert(i, vma)
        self.starts.insert(i, vma.vm_start)

    def remove(self, vma: VMA) -> None:
        """vma_iter_clear(): take vma out of the tree."""
        i = self._index(vma)
        del self.vmas[i]
        del self.starts[i]

    def reindex(self, vma: VMA) -> None:
        """Call after vma.vm_start changed (split/merge keep the order): its entry in
        starts is the one at or just before where the new start sorts."""
        vmas, i = self.vmas, bisect_left(self.starts, vma.vm_start)
        if not (i < len(vmas) and vmas[i] is vma):
            i -= 1
            if not (i >= 0 and vmas[i] is vma):
                i = vmas.index(vma)
        self.starts[i] = vma.vm_start


def mm_alloc(m: Machine, pid: int, why: str) -> MM:
    """mm_alloc() / dup_mm()'s allocate_mm(), then mm_init(), which lets the policy attach
    its per-mm state (why: boot, fork or exec)."""
    mm = MM(pid)
    m.policy.mm_init(m, mm, why)
    return mm


def for_each_vma_range(mm: MM, start: int, end: int) -> Iterator[tuple[VMA, int, int]]:
    """for_each_vma_range() with the range clamped to each VMA: yields (vma, a, b) for
    [a, b) = [start, end) & vma, looking the next VMA up after each step (the caller's
    step may merge or split VMAs, as the kernel loops re-find through the iterator).
    Callers pass ranges the trace layout holds mapped, so a hole is a LayoutMismatch."""
    addr = start
    while addr < end:
        vma = mm.vma_lookup(addr)
        if vma is None:
            raise LayoutMismatch(f"pid {mm.pid}: no VMA at page {addr:#x}, which the trace "
                                 f"layout holds mapped")
        seg_end = min(end, vma.vm_end)
        yield vma, addr, seg_end
        addr = seg_end

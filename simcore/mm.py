"""struct mm_struct: one process address space, VMAs ordered by address (the maple tree)."""
from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .vma import VMA


class MM:
    """A process address space: sorted VMAs plus the set of PMDs that hold a PTE table."""
    __slots__ = ("pid", "vmas", "starts", "pt_pmds", "files")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.vmas: list[VMA] = []
        self.starts: list[int] = []
        self.pt_pmds: set[int] = set()     # PMD indices (page >> pmd_shift) with a PTE table
        self.files: dict[str, object] = {}  # file name -> the open file this process maps

    def __iter__(self) -> Iterator[VMA]:
        return iter(self.vmas)

    def __len__(self) -> int:
        return len(self.vmas)

    def index_of(self, vma: VMA) -> int:
        i = bisect_right(self.starts, vma.vm_start) - 1
        assert self.vmas[i] is vma
        return i

    def find_vma(self, addr: int) -> VMA | None:
        """find_vma(): the first VMA with vm_end > addr (it may start above addr)."""
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and self.vmas[i].vm_end > addr:
            return self.vmas[i]
        i += 1
        return self.vmas[i] if i < len(self.vmas) else None

    def vma_at(self, addr: int) -> VMA | None:
        """The VMA containing addr, or None."""
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and self.vmas[i].vm_end > addr:
            return self.vmas[i]
        return None

    def prev(self, vma: VMA) -> VMA | None:
        i = self.index_of(vma)
        return self.vmas[i - 1] if i > 0 else None

    def next(self, vma: VMA) -> VMA | None:
        i = self.index_of(vma) + 1
        return self.vmas[i] if i < len(self.vmas) else None

    def prev_of(self, addr: int) -> VMA | None:
        """The last VMA that ends at or below addr."""
        i = bisect_right(self.starts, addr - 1) - 1
        while i >= 0 and self.vmas[i].vm_end > addr:
            i -= 1
        return self.vmas[i] if i >= 0 else None

    def next_of(self, addr: int) -> VMA | None:
        """The first VMA that starts at or above addr."""
        i = bisect_right(self.starts, addr - 1)
        return self.vmas[i] if i < len(self.vmas) else None

    def range(self, start: int, end: int) -> list[VMA]:
        """VMAs overlapping [start, end)."""
        i = max(bisect_right(self.starts, start) - 1, 0)
        out = []
        vmas = self.vmas
        while i < len(vmas) and vmas[i].vm_start < end:
            if vmas[i].vm_end > start:
                out.append(vmas[i])
            i += 1
        return out

    def insert(self, vma: VMA) -> None:
        """vma_link() / vma_iter_store()."""
        i = bisect_right(self.starts, vma.vm_start)
        assert i == 0 or self.vmas[i - 1].vm_end <= vma.vm_start, "VMAs overlap"
        assert i == len(self.vmas) or self.vmas[i].vm_start >= vma.vm_end, "VMAs overlap"
        self.vmas.insert(i, vma)
        self.starts.insert(i, vma.vm_start)

    def remove(self, vma: VMA) -> None:
        i = self.index_of(vma)
        del self.vmas[i]
        del self.starts[i]

    def reindex(self, vma: VMA) -> None:
        """Call after vma.vm_start changed (split/merge keep the order)."""
        i = self.vmas.index(vma)
        self.starts[i] = vma.vm_start

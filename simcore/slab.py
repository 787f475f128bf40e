"""Slab accounting: live and peak objects per cache (mm/slub.c, as /proc/slabinfo counts)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvariantError

CACHES = ("vm_area_struct", "anon_vma", "anon_vma_chain")
VMA, ANON_VMA, AVC = range(3)


@dataclass(slots=True)
class Slab:
    """Live and peak object counts of the three rmap caches."""
    live: list[int] = field(default_factory=lambda: [0, 0, 0])
    peak: list[int] = field(default_factory=lambda: [0, 0, 0])
    allocs: list[int] = field(default_factory=lambda: [0, 0, 0])

    def alloc(self, cache: int, n: int = 1) -> None:
        live = self.live[cache] + n
        self.live[cache] = live
        self.allocs[cache] += n
        if live > self.peak[cache]:
            self.peak[cache] = live

    def free(self, cache: int, n: int = 1) -> None:
        self.live[cache] -= n
        if self.live[cache] < 0:
            raise InvariantError("slab", f"{CACHES[cache]}: freed more objects than allocated")

    def counts(self) -> dict[str, int]:
        out = {name: self.live[i] for i, name in enumerate(CACHES)}
        out.update({f"{name}_peak": self.peak[i] for i, name in enumerate(CACHES)})
        return out


def parse_slabinfo(text: str) -> dict[str, tuple[int, int, int]]:
    """/proc/slabinfo -> {cache: (objsize, objperslab, pagesperslab)} for the rmap caches."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in CACHES and len(parts) > 5:
            out[parts[0]] = (int(parts[3]), int(parts[4]), int(parts[5]))
    return out

"""Slab accounting: live and peak objects per cache (mm/slub.c, as /proc/slabinfo counts)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvariantError

CACHES = ("vm_area_struct", "anon_vma", "anon_vma_chain")
VMA, ANON_VMA, AVC = range(3)


@dataclass(frozen=True)
class PolicyCache:
    """An object cache a policy declares beside the three kernel caches (a design's own
    objects: COW contexts, remap-tree nodes).  ``sizes`` maps an arch profile name, or its
    family (the name before the first ``_``: ``arm64`` for ``arm64_android``), or
    ``default``, to the object size in bytes; an arch profile's own ``<name>`` key wins.
    Slab objects are packed into order-0 slabs of the arch's page size."""
    name: str
    sizes: dict[str, int]
    doc: str = ""
    slab: bool = True           # False: not a slab object (a per-folio field): no slab rounding

    def size(self, arch: dict) -> int:
        """The object size under an arch profile (a dict with at least ``name``)."""
        if self.name in arch:
            return int(arch[self.name])
        name = str(arch.get("name", ""))
        for key in (name, name.split("_")[0], "default"):
            if key in self.sizes:
                return int(self.sizes[key])
        raise ValueError(f"cache {self.name!r} has no object size for arch {name!r}")


@dataclass(slots=True)
class Slab:
    """Live, peak and allocated object counts per cache: the three kernel rmap caches
    (CACHES, indices VMA, ANON_VMA, AVC), then any a policy declares (``names[3:]``)."""
    names: tuple[str, ...] = CACHES
    live: list[int] = field(default_factory=list)
    peak: list[int] = field(default_factory=list)
    allocs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for col in (self.live, self.peak, self.allocs):
            col.extend([0] * (len(self.names) - len(col)))

    def index(self, name: str) -> int:
        """The index of cache `name` (for alloc/free)."""
        return self.names.index(name)

    def alloc(self, cache: int, n: int = 1) -> None:
        live = self.live[cache] + n
        self.live[cache] = live
        self.allocs[cache] += n
        if live > self.peak[cache]:
            self.peak[cache] = live

    def free(self, cache: int, n: int = 1) -> None:
        self.live[cache] -= n
        if self.live[cache] < 0:
            raise InvariantError("slab", f"{self.names[cache]}: freed more objects than allocated")

    def counts(self) -> dict[str, int]:
        out = {name: self.live[i] for i, name in enumerate(self.names)}
        out.update({f"{name}_peak": self.peak[i] for i, name in enumerate(self.names)})
        return out


def parse_slabinfo(text: str) -> dict[str, tuple[int, int, int]]:
    """/proc/slabinfo -> {cache: (objsize, objperslab, pagesperslab)} for the rmap caches."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in CACHES and len(parts) > 5:
            out[parts[0]] = (int(parts[3]), int(parts[4]), int(parts[5]))
    return out

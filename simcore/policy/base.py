"""The policy interface: every place where an rmap design decides what to allocate or link.

The machine (mm, VMA split/merge, faults, fork, teardown) calls these hooks; a
policy owns anon_vma/AVC-like objects and folio ``mapping`` targets.  A design
without anon_vma at all (COW context) implements the same hooks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..machine import Machine
    from ..vma import VMA, MergeReq


class Policy(ABC):
    """Hooks called by the machine; see Eager for the mainline meaning of each."""
    name = "base"
    tracks_frees = False          # True: folios_freed() is called before folios are freed

    def __init__(self, **variant: object) -> None:
        if variant:
            raise ValueError(f"policy {self.name!r} has no variant knobs "
                             f"(got {', '.join(sorted(variant))})")
        self.variant: dict[str, object] = {}

    # faults
    @abstractmethod
    def anon_fault(self, m: Machine, vma: VMA) -> tuple[int, int]:
        """Before a new anon folio in vma: prepare, and return the folio's (mapping, mkind)."""

    @abstractmethod
    def move_anon_rmap(self, m: Machine, vma: VMA, folio_ids: np.ndarray) -> None:
        """A write fault reuses exclusively owned folios: re-point them at vma's rmap target."""

    # VMA lifecycle
    @abstractmethod
    def anon_vma_fork(self, m: Machine, child: VMA, parent: VMA) -> None:
        ...

    @abstractmethod
    def split(self, m: Machine, new: VMA, old: VMA) -> None:
        """__split_vma(): new is a piece of old."""

    @abstractmethod
    def copy_vma(self, m: Machine, new: VMA, src: VMA) -> None:
        """copy_vma() without merge (mremap move): new is src's copy at another address."""

    @abstractmethod
    def dup_anon_vma(self, m: Machine, dst: VMA, src: VMA) -> None:
        ...

    @abstractmethod
    def is_mergeable_anon_vma(self, req: MergeReq, tgt: VMA) -> bool:
        ...

    @abstractmethod
    def unlink_anon_vmas(self, m: Machine, vma: VMA) -> None:
        ...

    @abstractmethod
    def vma_freed(self, m: Machine, vma: VMA) -> None:
        """vm_area_free(): the policy may keep the object alive (pinned VMAs)."""

    # hooks with a mainline meaning of "nothing to do"
    def pages_moved(self, m: Machine, vma: VMA, why: str) -> None:
        """Page-table entries of other VMAs now live in vma (why: split, merge or mremap)."""

    def madvise(self, m: Machine, vma: VMA, advice: str) -> None:
        """After madvise(advice) set vma's flags (KSM, collapse)."""

    def before_walk(self, m: Machine, fid: int, walk: str) -> None:
        """Before an rmap walk of kind `walk` (reclaim, migrate, idle, ksm) of folio fid."""

    def rmap_walk_vma(self, m: Machine, fid: int, cost: object) -> list[tuple[int, int]]:
        """Walk a folio whose mapping is a VMA (a lazy design); mainline has none."""
        raise ValueError(f"policy {self.name!r} has no VMA-mapped folios (folio {fid})")

    def folios_added(self, m: Machine, vma: VMA, mkind: int, n: int) -> None:
        """n new folios of vma got the mapping anon_fault() returned."""

    def folios_freed(self, m: Machine, ids: np.ndarray) -> None:
        """Folios ids are about to be freed."""

    def vma_has_anon(self, vma: VMA) -> bool:
        """What `vma->anon_vma != NULL` means to the rest of mm: the VMA has faulted."""
        return vma.anon_vma is not None

    def pinned_vmas(self) -> int:
        """vm_area_structs alive outside every mm (pinned by folios)."""
        return 0

    def has_own_anon_vma_or_none(self, vma: VMA) -> bool:
        """I1 for this design: a VMA with AVCs has its own anon_vma."""
        return (vma.anon_vma is None) == (not vma.chain)

    def upgrade_ptes(self) -> int:
        """Page-table entries the design's own scans have visited so far (a lazy design's
        upgrades); the fork cost model charges those a fork triggers.  Mainline scans none."""
        return 0

    def stats(self) -> dict[str, int]:
        """Policy-specific counters reported with the results."""
        return {}

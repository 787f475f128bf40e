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

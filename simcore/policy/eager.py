"""Mainline Linux 6.18: anon_vma at first fault, AVC per (VMA, anon_vma) edge (mm/rmap.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import anon_vma as av
from ..folio import MAP_ANON_VMA
from ..slab import VMA as VMA_CACHE
from ..vma import vma_is_fork_child
from .base import Policy

if TYPE_CHECKING:
    from ..machine import Machine
    from ..vma import VMA, MergeReq


class Eager(Policy):
    """The exact mainline model."""
    name = "eager"
    batch_cow_faults = True     # anon_fault() of a VMA with an anon_vma only reads it
    fork_skips_unfaulted = True  # anon_vma_fork(): nothing without the parent's anon_vma

    def anon_fault(self, m: Machine, vma: VMA, fault: str) -> tuple[int, int]:
        av.anon_vma_prepare(m, vma)                         # vmf_anon_prepare()
        return vma.anon_vma.id, MAP_ANON_VMA                # __folio_set_anon(): vma->anon_vma

    def move_anon_rmap(self, m: Machine, vma: VMA, folio_ids: np.ndarray) -> None:
        m.folios.move_anon_rmap(folio_ids, vma.anon_vma.id, MAP_ANON_VMA)  # folio_move_anon_rmap()

    # anon_vma_fork() itself, not a method calling it (once per faulted VMA of every fork)
    anon_vma_fork = staticmethod(av.anon_vma_fork)

    def split(self, m: Machine, new: VMA, old: VMA) -> None:
        av.anon_vma_clone(m, new, old)                      # __split_vma()
        av.vma_prepare(m, old)

    def vma_adjust(self, m: Machine, vma: VMA) -> None:
        av.vma_prepare(m, vma)                              # vma_expand(), vma_shrink(), merges

    def copy_vma(self, m: Machine, new: VMA, src: VMA) -> None:
        av.anon_vma_clone(m, new, src)                      # copy_vma()

    def dup_anon_vma(self, m: Machine, dst: VMA, src: VMA) -> None:
        if src.anon_vma is not None and dst.anon_vma is None:   # dup_anon_vma()
            dst.anon_vma = src.anon_vma
            av.anon_vma_clone(m, dst, src)

    def is_mergeable_anon_vma(self, req: MergeReq, tgt: VMA) -> bool:
        """is_mergeable_anon_vma() (6.16+, with vma_is_fork_child() from 61f67c230a5e)."""
        tgt_anon, src_anon = tgt.anon_vma, req.anon_vma
        if tgt_anon is None and src_anon is not None:       # case 1: dup src into tgt
            return not vma_is_fork_child(req.middle) and not vma_is_fork_child(req.copied_from)
        if tgt_anon is not None and src_anon is None:       # case 2: use tgt's anon_vma
            return not vma_is_fork_child(tgt)
        return src_anon is tgt_anon                         # case 3: already shared

    def unlink_anon_vmas(self, m: Machine, vma: VMA) -> None:
        av.unlink_anon_vmas(m, vma)

    def vma_freed(self, m: Machine, vma: VMA) -> None:
        m.slab.free(VMA_CACHE)

"""The policy interface: every place where an rmap design decides what to allocate or link.

The machine (mm, VMA split/merge, faults, fork, teardown) calls these hooks; a
policy owns anon_vma/AVC-like objects and folio ``mapping`` targets.  A design
without anon_vma at all (policy/cow_context.py) implements the same hooks: it gets
every mm's creation (mm_init, with fork/exec/boot), fork's end (mm_fork) and teardown
(mmdrop); declares its own object caches (``caches``, counted by the machine's Slab),
folio target kinds (``folio_targets``, walked by rmap_walk_target) and walk counters
(``walk_counters``, in WalkCost.extra) and fork work (``fork_counters``, in
ForkRecord.policy); sees each fault's kind (new, cow, prepare) and
reuse (move_anon_rmap); and answers what `vma->anon_vma` holds for merge and fork
(vma_anon_vma) instead of the core reading it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from ..folio import MAP_ANON_VMA, MAP_VMA

if TYPE_CHECKING:
    from ..machine import Machine
    from ..mm import MM
    from ..rmap import WalkCost
    from ..slab import PolicyCache
    from ..vma import VMA, MergeReq

# anon_fault()'s `fault`: which fault path asks for the folio's rmap target
FAULT_NEW = "new"          # do_anonymous_page(), do_huge_pmd_anonymous_page(): a fresh folio
FAULT_COW = "cow"          # wp_page_copy(): a private copy of a folio still mapped elsewhere
FAULT_PREPARE = "prepare"  # vmf_anon_prepare() only (huge zero page read): no folio


class Policy(ABC):
    """Hooks called by the machine; see Eager for the mainline meaning of each."""
    name = "base"
    tracks_frees = False          # True: folios_freed() is called before folios are freed
    # True (with tracks_frees): folios_freed() and vma_freed() of one exit_mmap() commute:
    # freeing every folio of the mm first, then its VMAs, ends in the same state as
    # interleaving them one VMA at a time (mmap.exit_mmap zaps the whole mm at once)
    exit_frees_commute = False
    caches: tuple[PolicyCache, ...] = ()     # object caches beside CACHES (Slab indices 3, ...)
    folio_targets: dict[int, str] = {}       # folio mkind (>= MAP_VMA) -> what `mapping` names
    walk_counters: tuple[str, ...] = ()      # WalkCost.extra counters of this design's walks
    fork_counters: tuple[str, ...] = ()      # ForkRecord.policy: this design's own fork work
    # True: anon_fault(FAULT_COW) and folios_added() of a VMA that cow_batchable() accepts
    # read and change no folio and no page-table entry, so the COW faults of a run of write
    # touches may allocate their folios together (fault.CowBatch, Machine.run without checks)
    batch_cow_faults = False
    # True: anon_vma_fork() of a VMA with no anon_vma, no chain, no priv and no page table
    # does nothing (the child's copy keeps vm_area_dup()'s NULL anon_vma), so dup_mmap()
    # skips the call for such a VMA
    fork_skips_unfaulted = False

    def __init__(self, **variant: object) -> None:
        if variant:
            raise ValueError(f"policy {self.name!r} has no variant knobs "
                             f"(got {', '.join(sorted(variant))})")
        self.variant: dict[str, object] = {}

    def _set_variant(self, knobs: dict[str, tuple[tuple[str, ...], str]],
                     variant: dict[str, object]) -> None:
        """self.variant from `variant` over knobs' defaults (knob -> (values, default));
        unknown knobs and values raise ValueError."""
        self.variant = {}
        for key, value in variant.items():
            if key not in knobs:
                raise ValueError(f"unknown {self.name} variant knob {key!r} "
                                 f"(known: {', '.join(sorted(knobs))})")
            if str(value) not in knobs[key][0]:
                raise ValueError(f"{self.name} variant {key}={value!r} is not one of "
                                 f"{', '.join(knobs[key][0])}")
        for key, (_, default) in knobs.items():
            self.variant[key] = str(variant.get(key, default))

    # mm lifecycle
    def mm_init(self, m: Machine, mm: MM, why: str) -> None:
        """mm_init(): a new mm (why: boot, fork -- before dup_mmap -- or exec)."""

    def mm_fork(self, m: Machine, parent: MM, child: MM) -> None:
        """The end of a successful dup_mmap(): child's VMAs and page tables are copied."""

    def mmdrop(self, m: Machine, mm: MM) -> None:
        """__mmdrop() after exit_mmap() (exit, or exec dropping the old mm)."""

    # faults
    @abstractmethod
    def anon_fault(self, m: Machine, vma: VMA, fault: str) -> tuple[int, int]:
        """Before a new anon folio in vma (fault: FAULT_NEW or FAULT_COW), or only
        vmf_anon_prepare() (FAULT_PREPARE): prepare, and return the folio's (mapping, mkind)."""

    def swapin_target(self, m: Machine, vma: VMA, exclusive: bool) -> tuple[int, int]:
        """do_swap_page(): the (mapping, mkind) of a folio read back from swap into vma: the
        fault's own target (FAULT_NEW), except that __folio_set_anon() gives a folio not
        exclusive to vma the *root* of the anon_vma it would get (the oldest one)."""
        mapping, mkind = self.anon_fault(m, vma, FAULT_NEW)
        if not exclusive and mkind == MAP_ANON_VMA:
            mapping = m.anon_vmas[mapping].root.id
        return mapping, mkind

    def cow_batchable(self, vma: VMA) -> bool:
        """Under batch_cow_faults: may vma's COW faults join a batch (fault.CowBatch)?  True
        only where anon_fault(FAULT_COW) and folios_added() of vma change no state that
        another fault of the run reads (the faults of a batch run in order, but their folios
        are allocated before any of them maps one).  Mainline: vma has its anon_vma
        (vmf_anon_prepare() then only reads it)."""
        return vma.anon_vma is not None

    @abstractmethod
    def move_anon_rmap(self, m: Machine, vma: VMA, folio_ids: np.ndarray) -> None:
        """A write fault reuses exclusively owned folios (wp_can_reuse_anon_folio()):
        re-point them at vma's rmap target."""

    # VMA lifecycle
    @abstractmethod
    def anon_vma_fork(self, m: Machine, child: VMA, parent: VMA,
                      allocs: list[int] | None = None) -> None:
        """anon_vma_fork() of child, parent's copy in dup_mmap().  allocs: a [VMA, ANON_VMA,
        AVC] counter list (slab indices) the anon_vmas and AVCs allocated here may be added
        to instead of the slab: dup_mmap() counts them once per fork (a fork frees none)."""

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

    def rmap_walk_target(self, m: Machine, fid: int, cost: WalkCost | None, early_exit: bool,
                         full_tree: bool) -> list[tuple[int, int]]:
        """rmap_walk() of a folio whose mkind is one of folio_targets: every (pid, page)
        found mapping it (the anon_vma walk's arguments: rwc->done, the KSM whole tree)."""
        if int(m.folios.mkind[fid]) == MAP_VMA:
            return self.rmap_walk_vma(m, fid, cost)
        raise ValueError(f"policy {self.name!r} has no folios of kind "
                         f"{int(m.folios.mkind[fid])} (folio {fid})")

    def rmap_walk_vma(self, m: Machine, fid: int, cost: object) -> list[tuple[int, int]]:
        """Walk a folio whose mapping is a VMA (a lazy design); mainline has none."""
        raise ValueError(f"policy {self.name!r} has no VMA-mapped folios (folio {fid})")

    def folios_added(self, m: Machine, vma: VMA, mkind: int, n: int) -> None:
        """n new folios of vma got the mapping anon_fault() returned."""

    def remove_vma(self, m: Machine, vma: VMA) -> None:
        """remove_vma(): munmap or exit removes vma (a merge's removal does not come here)."""

    def vma_adjust(self, m: Machine, vma: VMA) -> None:
        """vma's range or pgoff changed in place: a merge expanded or shrank it (vma_expand(),
        vma_shrink()), or mremap grew it (vma_merge_extend())."""

    def vma_anon_vma(self, vma: VMA) -> object:
        """What `vma->anon_vma` holds where the core tests or compares it (merge compatibility,
        dup_anon_vma()'s donor, vma_needs_copy() at fork): None for a VMA that never
        faulted, else an object compared by identity.  A design without anon_vma returns its
        own marker (the COW-context PoC's DUMMY_ANON_VMA)."""
        return vma.anon_vma

    def check(self, m: Machine) -> None:
        """The design's own invariants, run by checked mode after every operation."""

    def leaks(self, m: Machine) -> list[str]:
        """Objects of the design left after every process exited (check_no_leaks)."""
        return []

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

    def fork_work(self, m: Machine) -> tuple[int, ...]:
        """Running totals of fork_counters, in that order: copy_mm() records each fork's
        difference (from before mm_init() of the child to the end of dup_mmap())."""
        return ()

    def fork_frees_vmas(self) -> bool:
        """Can anon_vma_fork() free a vm_area_struct now (the last reference of one kept
        alive outside every mm)?  False: dup_mmap() counts the VMAs it copies in the slab
        once, at the end (the same live, peak and allocated counts)."""
        return False

    def upgrade_ptes(self) -> int:
        """Page-table entries the design's own scans have visited so far (a lazy design's
        upgrades); the fork cost model charges those a fork triggers.  Mainline scans none."""
        return 0

    def stats(self) -> dict[str, int]:
        """Policy-specific counters reported with the results."""
        return {}

    # the time model's lock/RCU model (simcore/timemodel.py, docs/time-model.md)
    lock_model: dict[str, str] = {
        "walk": "anon_vma root rwsem, read: rmap_walk_anon() -> folio_lock_anon_vma_read() / "
                "anon_vma_lock_read(); held while the interval tree is walked",
        "change": "anon_vma root rwsem, write: __anon_vma_prepare(), anon_vma_clone() and "
                  "anon_vma_fork() at fork, unlink_anon_vmas() at unmap/exit, vma_prepare() of "
                  "split/merge/expand (mm/rmap.c, mm/vma.c)",
    }

    def walk_locks(self, cost: WalkCost) -> int:
        """Lock acquisitions of this design's rmap walks totalled in cost, beyond the anon_vma
        root rwsem reads (cost.root_lock_read): each is charged walk_lock_ns."""
        return 0

    def other_locks(self) -> dict[str, int]:
        """Acquisitions so far of the design's own locks outside rmap walks and anon_vma roots
        (name -> count), each charged walk_lock_ns."""
        return {}

"""The architecture schema: page geometry, slab caches and the fork cost model.

Profiles are the files of ``conf/arch/`` (only what differs from these defaults, which are
the 6.18 x86_64 reference machine); ``sweep calibrate`` writes ``conf/arch/host.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .registry import register_schema


@dataclass
class ArchConf:
    """An architecture profile: page geometry, slab caches, and the fork cost model.

    Sizes are slab object sizes in bytes; ``*_per_slab`` objects fit one slab of
    ``*_slab_pages`` pages (defaults: slabinfo of the 6.18 x86_64 reference machine,
    192/104/64 B, 21/39/64 per 4 KiB slab).  ``from_host`` reads all of them from
    /proc/slabinfo when a cell runs.  ``lazy_vma_extra`` bytes are added to vm_area_struct
    under the lazy policy (its vm_rcuref, patch 06).  Fork latency is predicted as
    fork_a_ns + fork_vma_ns * VMAs + fork_avc_ns * AVCs cloned + fork_av_ns * anon_vmas
    allocated + fork_pte_ns * PTEs copied (+ fork_pte_ns per page-table entry a lazy
    upgrade scans); the defaults were fitted by `sweep calibrate` on the reference machine.
    The fault_* and walk_* coefficients price faults and rmap walks (simcore/timemodel.py,
    docs/time-model.md); until `sweep calibrate` fits them they are order-of-magnitude
    placeholders (source "assumed")."""
    name: str = "x86_64"
    page_size: int = 4096
    pmd_pages: int = 512
    from_host: bool = False
    vm_area_struct: int = 192
    anon_vma: int = 104
    anon_vma_chain: int = 64
    vm_area_struct_per_slab: int = 21
    anon_vma_per_slab: int = 39
    anon_vma_chain_per_slab: int = 64
    vm_area_struct_slab_pages: int = 1
    anon_vma_slab_pages: int = 1
    anon_vma_chain_slab_pages: int = 1
    lazy_vma_extra: int = 0
    fork_a_ns: float = 6689.0
    fork_vma_ns: float = 407.9
    fork_avc_ns: float = 167.8
    fork_av_ns: float = 184.7
    fork_pte_ns: float = 69.2

    # time model (simcore/timemodel.py): placeholders until `sweep calibrate` fits them
    fault_new_ns: float = field(default=1500.0, metadata={
        "source": "assumed", "range": (300.0, 10000.0),
        "ref": "placeholder (issue 15): do_anonymous_page() write fault, anon_vma present: "
               "folio alloc + zeroing a 4 KiB page + memcg charge + PTE set, ~1-2 us in a VM"})
    fault_prepare_ns: float = field(default=400.0, metadata={
        "source": "assumed", "range": (50.0, 5000.0),
        "ref": "placeholder (issue 15): extra of a fault whose __anon_vma_prepare() links an "
               "AVC (anon_vma + anon_vma_chain alloc, root write lock, interval-tree insert)"})
    fault_cow_ns: float = field(default=2000.0, metadata={
        "source": "assumed", "range": (300.0, 15000.0),
        "ref": "placeholder (issue 15): wp_page_copy(): folio alloc + 4 KiB copy + rmap "
               "update + TLB flush of the old PTE"})
    fault_reuse_ns: float = field(default=400.0, metadata={
        "source": "assumed", "range": (100.0, 5000.0),
        "ref": "placeholder (issue 15): do_wp_page() reusing an exclusive folio "
               "(wp_can_reuse_anon_folio(), folio_move_anon_rmap()): trap + PTE upgrade"})
    walk_a_ns: float = field(default=300.0, metadata={
        "source": "assumed", "range": (30.0, 5000.0),
        "ref": "placeholder (issue 15): per rmap_walk() pass: folio mapping decode, "
               "interval-tree search setup"})
    walk_vma_ns: float = field(default=150.0, metadata={
        "source": "assumed", "range": (10.0, 3000.0),
        "ref": "placeholder (issue 15): per VMA visited: page_vma_mapped_walk() page-table probe"})
    walk_pte_ns: float = field(default=500.0, metadata={
        "source": "assumed", "range": (20.0, 10000.0),
        "ref": "placeholder (issue 15): per PTE found: rmap_one() (young test / unmap, "
               "TLB flush, swap entry)"})
    walk_lock_ns: float = field(default=40.0, metadata={
        "source": "assumed", "range": (5.0, 2000.0),
        "ref": "placeholder (issue 15): one uncontended anon_vma root rwsem acquire+release"})


register_schema("arch", ArchConf)

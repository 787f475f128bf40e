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
    upgrade scans) + a design's own fork work (fork_<counter>_ns per unit of its fork counters,
    ``assumed``); the fork_*_ns defaults above those were fitted by `sweep calibrate` on the
    reference machine."""
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
    # a design's own fork work (ForkRecord.policy; simcore.fork.policy_fork_ns): ns per unit of
    # the policy fork counter named by the middle of the field name
    fork_cow_ctx_allocs_ns: float = field(default=184.7, metadata={
        "source": "assumed", "range": (50.0, 1000.0),
        "ref": "cow_context: mm_init_cow_context() kzalloc of a 96-128 B struct + init, and "
               "dup_cow_context()'s link; assumed equal to fork_av_ns (anon_vma_alloc() + "
               "init + link), not measured: no COW-context kernel was timed"})
    fork_cow_remap_stores_ns: float = field(default=167.8, metadata={
        "source": "assumed", "range": (50.0, 2000.0),
        "ref": "cow_context: one remap maple-tree store at fork (cow_context_do_fork(), "
               "do_map_private_cow()), node allocation included; assumed equal to fork_avc_ns "
               "(an AVC alloc + interval-tree insert), not measured"})


register_schema("arch", ArchConf)

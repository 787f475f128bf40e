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
    upgrade scans); the defaults were fitted by `sweep calibrate` on the reference machine."""
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
    swap: bool = field(default=False, metadata={
        "source": "cited", "range": (False, True),
        "ref": "a swap device: Android devices swap to zram (AOSP 'Low RAM'/zram docs; the "
               "cached-app optimizer needs it); the reference x86_64 VM has none, so "
               "MADV_PAGEOUT leaves anonymous folios mapped there (simcore/swap.py)"})


register_schema("arch", ArchConf)

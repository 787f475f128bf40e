"""The architecture schema: page geometry, slab caches and the fork cost model.

Profiles are the files of ``conf/arch/`` (only what differs from these defaults, which are
the 6.18 x86_64 reference machine); ``sweep calibrate`` writes ``conf/arch/host.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .registry import register_schema

_X86 = "slabinfo of the 6.18 x86_64 reference machine (workloads-and-style.md 1.1 [M])"
_FORK = ("least-squares fit by `sweep calibrate` of fork latencies timed on the 6.18 x86_64 "
         "reference machine (mainline kernel); arm64 profiles reuse it (assumed there)")


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
    name: str = field(default="x86_64", metadata={
        "source": "n/a", "range": None, "ref": "the profile's name (conf/arch/<name>.yaml)"})
    page_size: int = field(default=4096, metadata={
        "source": "measured", "range": (4096, 65536),
        "ref": "sysconf(PAGE_SIZE) of the reference machine; arm64 profiles: 16/64 KiB kernels"})
    pmd_pages: int = field(default=512, metadata={
        "source": "cited", "range": (512, 8192),
        "ref": "PTRS_PER_PTE of the page size (arch/*/include/asm/pgtable*.h)"})
    from_host: bool = field(default=False, metadata={
        "source": "n/a", "range": None, "ref": "switch: read sizes from /proc/slabinfo"})
    vm_area_struct: int = field(default=192, metadata={
        "source": "measured", "range": (160, 256), "ref": "objsize, " + _X86,
        "profiles": {"arm64_android": {
            "source": "assumed", "range": (200, 256),
            "ref": "232 B summed from android12-5.10 GKI mm_types.h [S]; the 6.x Android "
                   "value is not verified (workloads-and-style.md 1.1, 1.2: sweep 200-256)"}}})
    anon_vma: int = field(default=104, metadata={
        "source": "measured", "range": (96, 128), "ref": "objsize, " + _X86,
        "profiles": {"arm64_android": {
            "source": "cited", "range": (128, 128),
            "ref": "GKI rwsem vendor fields: 120 B + 8 B free pointer (aosp kernel_common "
                   "rwsem.h, rmap.h); Radxa arm64 slabinfo objsize 128 [S]; the only size "
                   "making the cover letter's KB whole objects (1.1 [D])"}}})
    anon_vma_chain: int = field(default=64, metadata={
        "source": "measured", "range": (64, 64), "ref": "objsize, " + _X86 + "; arm64 64 B [S]"})
    vm_area_struct_per_slab: int = field(default=21, metadata={
        "source": "measured", "range": (1, 341), "ref": "objperslab, " + _X86})
    anon_vma_per_slab: int = field(default=39, metadata={
        "source": "measured", "range": (1, 630), "ref": "objperslab, " + _X86})
    anon_vma_chain_per_slab: int = field(default=64, metadata={
        "source": "measured", "range": (1, 1024), "ref": "objperslab, " + _X86})
    vm_area_struct_slab_pages: int = field(default=1, metadata={
        "source": "measured", "range": (1, 8), "ref": "pagesperslab, " + _X86})
    anon_vma_slab_pages: int = field(default=1, metadata={
        "source": "measured", "range": (1, 8), "ref": "pagesperslab, " + _X86})
    anon_vma_chain_slab_pages: int = field(default=1, metadata={
        "source": "measured", "range": (1, 8), "ref": "pagesperslab, " + _X86})
    lazy_vma_extra: int = field(default=0, metadata={
        "source": "fitted_lazy", "range": (0, 8),
        "ref": "vm_rcuref of patch 06 (4 B, 8 with padding); set 8 -> 0 to reproduce the "
               "cover letter's +0.2..1 % vm_area_struct KB (the padding hypothesis)"})
    fork_a_ns: float = field(default=6689.0, metadata={
        "source": "measured", "range": (3000.0, 15000.0), "ref": _FORK})
    fork_vma_ns: float = field(default=407.9, metadata={
        "source": "measured", "range": (200.0, 800.0), "ref": _FORK})
    fork_avc_ns: float = field(default=167.8, metadata={
        "source": "measured", "range": (80.0, 350.0), "ref": _FORK})
    fork_av_ns: float = field(default=184.7, metadata={
        "source": "measured", "range": (90.0, 400.0), "ref": _FORK})
    fork_pte_ns: float = field(default=69.2, metadata={
        "source": "measured", "range": (30.0, 150.0), "ref": _FORK})

register_schema("arch", ArchConf)

"""The architecture schema: page geometry, slab caches and the fork cost model.

Profiles are the files of ``conf/arch/`` (only what differs from these defaults, which are
the 6.18 x86_64 reference machine); ``sweep calibrate`` writes ``conf/arch/host.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .registry import register_schema

_X86 = "slabinfo of the 6.18 x86_64 reference machine (workloads-and-style.md 1.1 [M])"


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
    ``assumed``).  The fault_* and walk_* coefficients price faults and rmap walks
    (simcore/timemodel.py).  The fork_*, fault_* and walk_* defaults were fitted by `sweep
    calibrate` on the reference machine (docs/time-calibration.md; its raw record:
    conf/arch/host-calibration.json)."""
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
    fork_a_ns: float = field(default=42832.6, metadata={
        "source": "fitted_eager", "range": (21416.3, 86979.0),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "42832.6-43489.5; worst held-out error of the fork model 17 %, "
               "forks of 8-4,000 VMAs): per fork: "
               "copy_process() and the rest of dup_mmap() not per VMA"})
    fork_vma_ns: float = field(default=355.0, metadata={
        "source": "fitted_eager", "range": (168.3, 709.9),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "336.5-355.0; worst held-out error of the fork model 17 %, "
               "forks of 8-4,000 VMAs): per VMA copied: "
               "vm_area_dup() + maple tree store"})
    fork_avc_ns: float = field(default=124.5, metadata={
        "source": "fitted_eager", "range": (61.0, 249.1),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "122.1-124.5; worst held-out error of the fork model 17 %, "
               "forks of 8-4,000 VMAs): per "
               "anon_vma_chain allocated and linked (anon_vma_clone(), anon_vma_fork())"})
    fork_av_ns: float = field(default=217.4, metadata={
        "source": "fitted_eager", "range": (108.7, 490.5),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "217.4-245.2; worst held-out error of the fork model 17 %, "
               "forks of 8-4,000 VMAs): per anon_vma "
               "allocated by anon_vma_fork(), incl. copy_page_range()'s per-VMA walk"})
    fork_pte_ns: float = field(default=52.2, metadata={
        "source": "fitted_eager", "range": (25.6, 105.1),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "51.3-52.6; worst held-out error of the fork model 17 %, "
               "forks of 8-4,000 VMAs): per page-table "
               "entry copied (copy_present_pte(), folio_try_dup_anon_rmap)"})

    # time model (simcore/timemodel.py): fitted by `sweep calibrate` (docs/time-calibration.md)
    fault_new_ns: float = field(default=1383.4, metadata={
        "source": "fitted_eager", "range": (677.5, 2803.5),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "1354.9-1401.8; worst held-out error of the fault model 9 %): "
               "do_anonymous_page() write fault, anon_vma present: trap + zeroed folio + "
               "rmap + PTE"})
    fault_prepare_ns: float = field(default=647.7, metadata={
        "source": "fitted_eager", "range": (323.9, 1572.5),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "647.7-786.3; worst held-out error of the fault model 9 %): extra of a fault "
               "whose anon_vma_prepare() allocates an anon_vma + AVC"})
    fault_cow_ns: float = field(default=1748.0, metadata={
        "source": "fitted_eager", "range": (852.0, 3651.2),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "1704.0-1825.6; worst held-out error of the fault model 9 %): wp_page_copy():"
               " trap + new folio + 4 KiB copy + rmap + PTE"})
    fault_reuse_ns: float = field(default=721.6, metadata={
        "source": "fitted_eager", "range": (360.5, 1485.2),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "721.0-742.6; worst held-out error of the fault model 9 %): do_wp_page() "
               "reusing an exclusive folio (wp_page_reuse())"})
    walk_a_ns: float = field(default=3231.1, metadata={
        "source": "fitted_eager", "range": (1612.0, 6518.0),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "3223.9-3259.0; worst held-out error of the walk model 2 %): per rmap walk of"
               " try_to_unmap() in MADV_PAGEOUT reclaim onto zram, incl. the rest of "
               "reclaiming the folio (isolation, swap slot, zram store, free)"})
    walk_vma_ns: float = field(default=158.8, metadata={
        "source": "fitted_eager", "range": (79.4, 320.4),
        "ref": "sweep calibrate on the 6.18 x86_64 reference VM, 2026-11-30 (3 runs: "
               "158.7-160.2; worst held-out error of the walk model 2 %): per VMA visited in"
               " the anon_vma interval tree"})
    walk_pte_ns: float = field(default=3.6, metadata={
        "source": "measured", "range": (3.6, 100.0),
        "ref": "sweep calibrate (floorbench.c) on the 6.18 x86_64 reference VM, 2026-11-30: "
               "per PTE unmapped: not separable in MADV_PAGEOUT (one PTE per walk, carried "
               "by walk_a_ns); floor: 2 atomic RMWs (ptep_get_and_clear + mapcount)"})
    walk_lock_ns: float = field(default=3.6, metadata={
        "source": "measured", "range": (3.6, 100.0),
        "ref": "sweep calibrate (floorbench.c) on the 6.18 x86_64 reference VM, 2026-11-30: "
               "per anon_vma root rwsem acquisition: not separable in eager walks (one per "
               "walk, carried by walk_a_ns); floor: 2 atomic RMWs (down_read + up_read, "
               "uncontended)"})
    # a design's own fork work (ForkRecord.policy; simcore.fork.policy_fork_ns): ns per unit of
    # the policy fork counter named by the middle of the field name
    fork_cow_ctx_allocs_ns: float = field(default=217.4, metadata={
        "source": "assumed", "range": (50.0, 1000.0),
        "ref": "cow_context: mm_init_cow_context() kzalloc of a 96-128 B struct + init, and "
               "dup_cow_context()'s link; assumed equal to fork_av_ns (anon_vma_alloc() + "
               "init + link), not measured: no COW-context kernel was timed"})
    fork_cow_remap_stores_ns: float = field(default=124.5, metadata={
        "source": "assumed", "range": (50.0, 2000.0),
        "ref": "cow_context: one remap maple-tree store at fork (cow_context_do_fork(), "
               "do_map_private_cow()), node allocation included; assumed equal to fork_avc_ns "
               "(an AVC alloc + interval-tree insert), not measured"})
    swap: bool = field(default=False, metadata={
        "source": "cited", "range": None,
        "ref": "switch: a swap device: Android devices swap to zram (AOSP 'Low RAM'/zram docs; the "
               "cached-app optimizer needs it); the reference x86_64 VM has none, so "
               "MADV_PAGEOUT leaves anonymous folios mapped there (simcore/swap.py)"})


register_schema("arch", ArchConf)

"""The ANON_VMA_LAZY cover letter's published figures, and where they were measured.

The series' cover letter reports active KB (as slabtop shows) of the three rmap caches on an
arm64 Android device, before (mainline) and after (ANON_VMA_LAZY), after boot and after
launching 24 apps.  They are comparable only with our ``arm64_android`` profile and the two
Android workloads; ``results`` and ``report`` both read them from here.
"""
from __future__ import annotations

import polars as pl

ARCH = "arm64_android"          # the profile of the device the cover letter measured on

# active KB before (mainline) and after (ANON_VMA_LAZY), per workload and cache
PUBLISHED = {
    "android_boot": {"vm_area_struct": (117035, 118176), "anon_vma_chain": (18865.8, 8112.06),
                     "anon_vma": (20426.4, 613.75)},
    "android_apps": {"vm_area_struct": (196873, 197345), "anon_vma_chain": (31477.1, 15576.8),
                     "anon_vma": (33280, 2648.12)},
}
STATE = {"android_boot": "after boot", "android_apps": "after launching 24 apps"}
ROW_CACHES = ("vm_area_struct", "anon_vma_chain", "anon_vma")     # the cover letter's order


def change_pct(before: float, after: float) -> float:
    """The one definition of "change %" in anonsim: ``100 * (after - before) / before``.

    Over seeds it is applied to the MEANS (the ratio of means, not the mean of per-seed
    ratios): ``before`` and ``after`` are the mean KB of eager and lazy over the seeds of a
    (workload, arch, cache).  The cover letter compares two totals of one device the same
    way.  `sweep report`'s table and `results.spread` both use it."""
    return 100 * (after - before) / before


def frame() -> pl.DataFrame:
    """One row per (workload, arch, cache): published before/after KB and the change in %."""
    rows = [{"workload": w, "arch": ARCH, "cache": c, "published_base_kb": float(b),
             "published_other_kb": float(a), "published_change_pct": change_pct(b, a)}
            for w, caches in PUBLISHED.items() for c, (b, a) in caches.items()]
    return pl.DataFrame(rows)

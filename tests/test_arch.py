"""Architecture profiles, slab accounting and the fork cost model."""
from __future__ import annotations

import math

import pytest

from conftest import DEMO
from simcore.fork import ForkRecord
from sweep.config import load_grid
from sweep.runner import fork_cost, simulate_cell, slab_metrics

ARCHS = ["x86_64", "arm64", "arm64_16k", "arm64_64k", "arm64_android"]


def test_kb_columns_follow_the_object_sizes():
    grid = load_grid(DEMO, [f"arch={','.join(ARCHS)}", "policy=eager", "seed=4",
                                        "workload.n_ops=80"])
    rows = {c["point"]["arch"]: simulate_cell(grid.resolve(c["point"])) for c in grid.cells}
    counts = {a: r["anon_vma"] for a, r in rows.items()}
    assert len(set(counts.values())) == 1 and counts["x86_64"] > 0   # counts do not depend on arch
    assert rows["x86_64"]["anon_vma_kb"] == counts["x86_64"] * 104 / 1024
    assert rows["arm64_android"]["anon_vma_kb"] == counts["x86_64"] * 128 / 1024
    assert rows["arm64_android"]["vm_area_struct_kb"] > rows["arm64"]["vm_area_struct_kb"]
    assert rows["arm64_64k"]["anon_vma_slab_kb"] == 64 * math.ceil(counts["x86_64"] / 630)


def test_lazy_vma_growth_changes_kb_not_counts():
    arch = load_grid(DEMO, ["arch=arm64_android"]).options["arch"]["arm64_android"]
    arch = dict(arch, lazy_vma_extra=8)                  # a vm_rcuref that does not fit padding
    counts = {"vm_area_struct": 100, "anon_vma": 0, "anon_vma_chain": 0}
    eager, lazy = slab_metrics(counts, arch, "eager"), slab_metrics(counts, arch, "lazy")
    assert eager["vm_area_struct_kb"] == 100 * 232 / 1024
    assert lazy["vm_area_struct_kb"] == 100 * 240 / 1024
    assert lazy["vm_area_struct_slab_kb"] >= eager["vm_area_struct_slab_kb"]


def test_host_profile_reads_slabinfo():
    try:
        open("/proc/slabinfo").close()
    except OSError:
        pytest.skip("/proc/slabinfo is not readable here (needs root)")
    arch = load_grid(DEMO, ["arch=host"]).options["arch"]["host"]
    assert arch["vm_area_struct"] > 0 and arch["anon_vma_chain"] == 64


def test_fork_prediction():
    arch = {"fork_a_ns": 1000, "fork_vma_ns": 10, "fork_avc_ns": 1, "fork_av_ns": 2, "fork_pte_ns": 0.5}
    assert fork_cost([ForkRecord(vmas=10, avcs=30, anon_vmas=10, ptes=40, upgrade_ptes=0)],
                     arch) == [1000 + 100 + 30 + 20 + 20]

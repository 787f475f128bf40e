"""Architecture profiles, slab accounting and the fork cost model."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from simcore.fork import ForkRecord
from sweep.calibrate import Shape, calibrate, features, fit
from sweep.config import load_grid
from sweep.runner import fork_cost, simulate_cell, slab_metrics

ARCHS = ["x86_64", "arm64", "arm64_16k", "arm64_64k", "arm64_android"]


def test_kb_columns_follow_the_object_sizes():
    grid = load_grid("conf/demo.yaml", [f"arch={','.join(ARCHS)}", "policy=eager", "seed=3",
                                        "workload.n_ops=80"])
    rows = {c["point"]["arch"]: simulate_cell(grid.resolve(c["point"])) for c in grid.cells}
    counts = {a: r["anon_vma"] for a, r in rows.items()}
    assert len(set(counts.values())) == 1 and counts["x86_64"] > 0   # counts do not depend on arch
    assert rows["x86_64"]["anon_vma_kb"] == counts["x86_64"] * 104 / 1024
    assert rows["arm64_android"]["anon_vma_kb"] == counts["x86_64"] * 128 / 1024
    assert rows["arm64_android"]["vm_area_struct_kb"] > rows["arm64"]["vm_area_struct_kb"]
    assert rows["arm64_64k"]["anon_vma_slab_kb"] == 64 * math.ceil(counts["x86_64"] / 630)


def test_lazy_vma_growth_changes_kb_not_counts():
    arch = load_grid("conf/demo.yaml", ["arch=arm64_android"]).options["arch"]["arm64_android"]
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
    arch = load_grid("conf/demo.yaml", ["arch=host"]).options["arch"]["host"]
    assert arch["vm_area_struct"] > 0 and arch["anon_vma_chain"] == 64


def test_fork_features_and_prediction():
    f = features(Shape(10, 4, True, 1))          # child of a fork: chain 2 long
    assert f.tolist() == [1, 10, 30, 10, 40]     # VMAs, AVCs (2 cloned + 1 new each), AVs, PTEs
    arch = {"fork_a_ns": 1000, "fork_vma_ns": 10, "fork_avc_ns": 1, "fork_av_ns": 2, "fork_pte_ns": 0.5}
    assert fork_cost([ForkRecord(vmas=10, avcs=30, anon_vmas=10, ptes=40, upgrade_ptes=0)],
                     arch) == [1000 + 100 + 30 + 20 + 20]


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(30), rng.integers(100, 9000, (30, 4))]).astype(float)
    truth = np.array([5000, 400, 150, 200, 70])
    assert np.allclose(fit(X, X @ truth), truth, rtol=1e-6)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the fork benchmark")
def test_calibrate_measures_real_forks():
    train = [Shape(n, p, w, d) for n in (50, 400) for p, w in ((1, False), (2, True)) for d in (0, 1)]
    result = calibrate(forks=5, train=train, held_out=[Shape(200, 2, True, 0)])
    assert set(result["coefficients"]) == {"fork_a_ns", "fork_vma_ns", "fork_avc_ns",
                                           "fork_av_ns", "fork_pte_ns"}
    (_, measured, predicted), = result["held_out"]
    assert measured > 0 and predicted > 0

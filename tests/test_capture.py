"""Snapshot capture of a real machine and its replay."""
from __future__ import annotations

import os

import pytest

from simcore.machine import Machine
from simcore.workloads.snapshot import snapshot_ops


def vma(start, pages, perms, path="", anon_kb=0, offset=0):
    return [start, start + pages * 4096, perms, offset, path, anon_kb]


def test_replay_rebuilds_the_tree_and_inheritance():
    lib = "/usr/lib/libc.so"
    parent = [vma(0x1000000, 4, "r--p", lib), vma(0x1004000, 4, "r-xp", lib, offset=0x4000),
              vma(0x1008000, 2, "rw-p", lib, anon_kb=8, offset=0x8000),
              vma(0x2000000, 16, "rw-p", "[heap]", anon_kb=64), vma(0x3000000, 2, "r--p", "[vvar]")]
    snap = {"processes": [
        {"pid": 10, "ppid": 1, "exe": "/bin/srv", "vmas": parent},
        {"pid": 11, "ppid": 10, "exe": "/bin/srv", "vmas": parent[:4] + [vma(0x5000000, 8, "rw-p", "", 32)]},
        {"pid": 12, "ppid": 10, "exe": "/bin/sh", "vmas": [vma(0x7000000, 4, "rw-p", "[heap]", 16)]},
    ]}
    m = Machine("eager", check=True).run(snapshot_ops(snap))
    c = m.counts()
    # parent 5 VMAs (data + heap have anon_vmas); child 11: 4 inherited (+2 AV, +4 AVC) and
    # 1 new (+1 AV, +1 AVC); child 12 exec'd: 1 VMA with its own anon_vma
    assert (c["vm_area_struct"], c["anon_vma"], c["anon_vma_chain"]) == (11, 6, 8)


@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/proc/slabinfo", os.R_OK),
                    reason="capturing every process and reading /proc/slabinfo needs root")
def test_replay_of_this_machine_predicts_its_slab_counts():
    from sweep.capture import capture, compare
    best = {}
    for _ in range(3):                       # other processes come and go between reads
        for cache, predicted, real, err in compare(capture()):
            best[cache] = min(best.get(cache, 9.0), abs(err))
    assert best["vm_area_struct"] <= 0.10 and best["anon_vma"] <= 0.10, best

"""mmap (simcore.mmap.do_mmap, mmap_region): a range placed right after the last VMA
(``after``) merges into it when is_mergeable_vma() allows, else gets a new last VMA
without vma_merge_new_range() (lands_last()); that shortcut against the general path.

    0123456789
    RRRRXXWWBB     R file r, X file rx, W file rw (one file), B anon rw (bss), then
    RRRRXXWWBBBB   C anon rw after B: the same flags, no file -> merges into B
"""
from __future__ import annotations

import pytest

from kstate import counts, machine, step, vmas
from simcore import mmap as mmap_mod
from simcore import trace as T
from simcore.machine import Machine
from simcore.workloads import random_trace


def test_after_the_last_vma_merges_only_when_mergeable() -> None:
    m = step(machine(), T.Mmap(0, "a", 4, "file", "r", file="lib.so"))
    step(m, T.Mmap(0, "x", 2, "file", "rx", after="a", file="lib.so", offset=4))
    assert vmas(m) == [(0, 4), (4, 6)] and counts(m) == (2, 0, 0, 0)     # flags differ
    step(m, T.Mmap(0, "w", 2, "file", "rw", after="x", file="lib.so", offset=6))
    step(m, T.Mmap(0, "b", 2, "anon", "rw", after="w"))                  # another file
    assert vmas(m) == [(0, 4), (4, 6), (6, 8), (8, 10)] and m.vma_merges == 0
    step(m, T.Mmap(0, "c", 2, "anon", "rw", after="b"))                  # anon pgoff = addr
    assert vmas(m) == [(0, 4), (4, 6), (6, 8), (8, 12)] and m.vma_merges == 1
    assert counts(m) == (4, 0, 0, 0)
    step(m, T.Mmap(0, "d", 1, "file", "rx", after="c", file="lib.so", offset=12))
    step(m, T.Mmap(0, "e", 1, "file", "rx", after="d", file="lib.so", offset=13))
    assert vmas(m)[-1] == (12, 14) and m.vma_merges == 2                 # linear pgoff


def _state(m: Machine) -> tuple:
    files: dict[int, int] = {}        # a file: the order it is first seen in (as `is` tells)
    procs = [(pid, [(v.id, v.vm_start, v.vm_end, v.vm_pgoff, v.vm_flags,
                     None if v.vm_file is None else
                     (v.vm_file.name, files.setdefault(id(v.vm_file), len(files))),
                     None if v.anon_vma is None else v.anon_vma.id, len(v.chain),
                     None if v.pte is None else v.pte.tolist()) for v in mm.vmas],
              list(mm.starts)) for pid, mm in sorted(m.procs.items())]
    return (procs, m.counts(), list(m.slab.live), list(m.slab.peak), list(m.slab.allocs),
            m.vma_merges, m.root_lock_write)


def _replay(ops: list[T.Op], policy: str) -> list[tuple]:
    m = Machine(policy, check=True)
    out = []
    for op in ops:
        m.apply(op)
        out.append(_state(m))
    return out


@pytest.mark.parametrize("policy", ["eager", "lazy"])
def test_lands_last_matches_the_general_path(policy: str, monkeypatch) -> None:
    """Random traces (mmaps placed after others, merges, holes, forks), replayed with the
    shortcut and with every mmap through vma_merge_new_range() and mm.insert(): the same
    VMAs (ids, ranges, flags, files, anon_vmas, entries), counts and merges after every op."""
    shortcuts = 0
    real = mmap_mod.lands_last

    def counting(vmas, start, flags, file):
        nonlocal shortcuts
        hit = real(vmas, start, flags, file)
        shortcuts += hit and bool(vmas) and vmas[-1].vm_end == start
        return hit

    for seed in range(40):
        ops = random_trace(seed, 60, exit_all=True)
        monkeypatch.setattr(mmap_mod, "lands_last", counting)
        fast = _replay(ops, policy)
        monkeypatch.setattr(mmap_mod, "lands_last", lambda *a: False)
        ref = _replay(ops, policy)
        assert fast == ref, seed
    assert shortcuts > 20                         # the shortcut was taken

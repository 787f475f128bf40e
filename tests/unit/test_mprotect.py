"""mprotect() (mm/mprotect.c): the fast paths of its per-VMA step -- change_protection() of a
few entries one by one, split_huge_edges() without lookups inside the VMA, the merge check
that builds no MergeReq when no neighbour abuts with the same file and flags, split_vma()'s
pieces as views of the arrays -- leave the state the general steps leave."""
from __future__ import annotations

import numpy as np

from kstate import machine_state
from simcore import trace as T

# what random traces rarely do: a few pages made read-only and writable again (exclusive
# entries regain write; after fork they do not), a merge with the VMA below only, a THP
# region cut inside both of its PMDs
MPROTECT_TRACE = [
    T.Mmap(0, "a", 6), T.Touch(0, "a"), T.Mprotect(0, "a", "r", 0, 2), T.Mprotect(0, "a", "rw", 0, 2),
    T.Mprotect(0, "a", "r", 1, 4), T.Touch(0, "a", 0, 1, write=False),
    T.Mprotect(0, "a", "rw", 0, 6), T.Fork(0, 1), T.Mprotect(1, "a", "r", 2, 2),
    T.Mprotect(1, "a", "rw", 1, 3), T.Touch(1, "a", 2, 1), T.Mprotect(0, "a", "none", 3, 3),
    T.Mmap(0, "b", 4), T.Touch(0, "b"), T.Mprotect(0, "b", "r", 0, 2),
    T.Mprotect(0, "b", "r", 2, 1),                      # merges left only
    T.Mmap(0, "h", 1024), T.Madvise(0, "h", "hugepage"), T.Touch(0, "h"),
    T.Mprotect(0, "h", "r", 3, 600), T.Mprotect(0, "h", "r", 700, 4), T.Mprotect(0, "h", "rw", 0, 1024),
    T.Exit(1), T.Exit(0),
]


def test_few_entry_change_protection_equals_the_array_path(monkeypatch) -> None:
    """change_protection() of up to FEW_ENTRIES entries (entry by entry) sets the flags the
    array operations set, for every flag byte, writable or not."""
    from simcore import mprotect
    from simcore.vma import VM_READ, VM_WRITE, VMA

    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        flags = rng.integers(0, 8, n).astype(np.uint8)
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo + 1, n + 1))
        for vm_flags in (VM_READ, VM_READ | VM_WRITE):
            got = []
            for few in (mprotect.FEW_ENTRIES, 0):
                vma = VMA(1, None, 100, 100 + n, 0, vm_flags, None)
                vma.pte, vma.ptef = np.zeros(n, np.int32), flags.copy()
                monkeypatch.setattr(mprotect, "FEW_ENTRIES", few)
                mprotect.change_protection(vma, 100 + lo, 100 + hi)
                got.append(vma.ptef.tolist())
            assert got[0] == got[1], (flags.tolist(), lo, hi, vm_flags)


def test_mprotect_fast_paths_equal_the_general_steps(monkeypatch) -> None:
    """After every op of random traces (mprotect, madvise, mlock, THP, fork, ...) under each
    policy, a machine with the fast paths holds the state of one with the general steps:
    change_protection() by arrays, split_huge_edges() by lookups, the merge check through a
    MergeReq, split_vma() with copies of each side."""
    from simcore import mprotect, pagetable, vma as V
    from simcore.machine import Machine
    from simcore.policy import make_policy
    from simcore.workloads import random_trace

    real_split, real_edges = V.split_vma, pagetable.split_huge_edges

    def split_copies(m, vma, addr, new_below):      # pt_take() copies of each side
        new = real_split(m, vma, addr, new_below)
        for v in (new, vma):
            if v.pte is not None:
                v.pte, v.ptef = v.pte.copy(), v.ptef.copy()
        return new

    calls = {"precheck": 0, "edges": 0}
    real_may = V._may_merge

    def may(*args):
        calls["precheck"] += 1
        return real_may(*args)

    def edges(m, mm, start, end, vma=None):
        calls["edges"] += vma is not None
        real_edges(m, mm, start, end, vma)

    monkeypatch.setattr(V, "_may_merge", may)
    monkeypatch.setattr(mprotect, "split_huge_edges", edges)
    policies = [("eager", {})] + [("lazy", {"child_cow": c}) for c in ("parent", "own", "vma")]
    policies.append(("cow_context", {}))
    for seed in range(-1, 10):
        ops = MPROTECT_TRACE if seed < 0 else random_trace(300 + seed, 120, exit_all=True)
        for name, variant in policies:
            fast, general = Machine(make_policy(name, **variant)), Machine(make_policy(name, **variant))
            for op in ops:
                fast.apply(op)
                with monkeypatch.context() as mp:
                    mp.setattr(mprotect, "FEW_ENTRIES", 0)
                    mp.setattr(mprotect, "split_huge_edges",
                               lambda m, mm, start, end, vma=None: real_edges(m, mm, start, end))
                    mp.setattr(V, "_may_merge", lambda *args: True)
                    mp.setattr(V, "split_vma", split_copies)
                    general.apply(op)
                assert machine_state(fast) == machine_state(general), (seed, name, variant, op)
    assert calls["precheck"] and calls["edges"]          # the fast paths ran

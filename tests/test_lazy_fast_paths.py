"""Lazy's fast path against its reference path, in lockstep: exit_mmap() freeing every
folio of the mm before its VMAs (Lazy.exit_frees_commute) vs remove_vma() one VMA at a time;
and forks (anon_vma_fork(), its reuse rule) through both; upgrade() of an
ANON_VMA_TREE_PARENT VMA without (tree_parents_map_no_lazy) and with the folio scan.

Two machines receive the same ops, one with the reference paths; after every op their
whole state must be equal: objects and their links, slab counts (live, peak, allocs),
lock records, pins and pinned VMAs, folio columns and the free-row stack."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fork, lockstep_pair, mmap, parse, size, touch
from simcore import trace as T
from simcore.check import check_no_leaks
from simcore.machine import Machine
from simcore.policy.lazy import Lazy, TreeParent


class RefLazy(Lazy):
    """Lazy with the reference paths only."""
    exit_frees_commute = False

    def __init__(self, **variant) -> None:
        super().__init__(**variant)
        self.tree_parents_map_no_lazy = False      # upgrade() scans TREE_PARENT VMAs too


def state(m: Machine) -> tuple:
    p, f = m.policy, m.folios
    vmas = [(pid, v.id, v.vm_start, v.vm_end, v.vm_pgoff,
             None if v.anon_vma is None else v.anon_vma.id, [a.id for a in v.chain],
             type(v.priv).__name__, v.priv.tree.id if isinstance(v.priv, TreeParent) else None,
             None if v.pte is None else v.pte.tolist())
            for pid, mm in sorted(m.procs.items()) for v in mm.vmas]
    avs = [(a.id, a.root.id, a.parent.id, a.refcount, a.num_children, a.num_active_vmas,
            [v.id for v in a.tree]) for a in m.anon_vmas.values()]
    return (m.counts(), list(m.slab.live), list(m.slab.peak), list(m.slab.allocs),
            m.root_lock_write, {k: list(v) for k, v in m.locks.live.items()},
            m.locks.write_items, m.locks.max_write, vmas, avs, list(p.pins.items()),
            list(p.targets), list(p.detached), f.mapping[:f.top].tolist(),
            f.mkind[:f.top].tolist(), f.mapcount[:f.top].tolist(),
            f.free[:f.nfree].tolist(), list(m.forks))


def lockstep(ops: list[T.Op], **variant) -> tuple[Machine, Machine]:
    return lockstep_pair(Machine(Lazy(**variant), check=True),
                         Machine(RefLazy(**variant), check=True), ops, state)


def test_fork_reuses_an_idle_anon_vma_in_both_machines():
    # 0 -> 1 -> 2 -> 3: 1 and 2 upgrade as they fork (AV1 child of AV0, AV2 of AV1); 1
    # exits: AV1 has no VMA and one child; 2's next fork (2 has AV2 and the
    # chain AV0, AV1, AV2) reuses AV1 for the child (anon_vma_clone()'s reuse rule)
    ops = parse(mmap(), touch(), fork(0, 1), fork(1, 2), fork(2, 3), {"op": "exit", "pid": 1},
                fork(2, 4))
    fast, ref = lockstep(ops)
    for m in (fast, ref):
        (g,), (child,) = m.procs[2].vmas, m.procs[4].vmas
        assert child.anon_vma is g.chain[1] is not g.anon_vma
        assert child.priv is None and child.anon_vma.num_active_vmas == 1


def test_exit_of_a_process_whose_vmas_pin_each_others_folios():
    # split=keep: mprotect of the lower half makes the upper piece the new VMA, whose
    # folios still point at the lower one (the original); one VMA at a time the lower VMA
    # is freed while pinned (detached), then released by the upper piece's folio frees;
    # the whole-mm zap frees the folios first
    ops = parse(mmap(), touch(), fork(0, 1), mmap(1, "b"), touch(1, "b"),
                {"op": "mprotect", "pid": 1, "region": "b", "first": 0, "count": 4, "prot": "r"})
    fast, ref = lockstep(ops)
    lower, upper = ref.procs[1].vmas[-2:]
    assert ref.policy.pins[lower.id] == 8 and lower.pages == 4     # pinned by upper's folios
    assert not ref.folios.large
    for m in lockstep(ops + [T.Exec(1), T.Exit(1), T.Exit(0)]):
        check_no_leaks(m)


def test_exit_with_a_large_folio_live_equals_the_reference():
    # a live THP (exit_mmap() then zaps one VMA at a time under lazy: at once, np.unique()
    # would free the folios of the mm in another order)
    ops = T.load(Path(__file__).parent / "lazy_findings" / "large_none_dontfork_fork_incomplete.jsonl")
    fast, ref = lockstep(ops)
    assert fast.folios.large
    lockstep(ops + [T.Exit(pid) for pid in sorted(fast.procs, reverse=True)])


@pytest.mark.parametrize("variant", [{}, {"child_cow": "own"}, {"child_cow": "vma"},
                                     {"merge": "keep"}, {"split": "upgrade"}])
def test_random_traces_fast_paths_equal_the_reference(variant):
    from simcore.workloads import random_trace
    for seed in range(size(40, 400)):
        lockstep(random_trace(20_000 + seed, 40, exit_all=True), **variant)


@pytest.mark.parametrize("targets", [[5, 5, 5], [7, 5, 7, 5, 5], [7]])
def test_unpin_targets_equals_one_unpin_per_distinct_target(targets):
    import numpy as np
    from simcore.slab import VMA as VMA_CACHE
    pins = {5: 4, 7: 2}
    fast, ref = Machine(Lazy()), Machine(Lazy())
    for m in (fast, ref):
        m.slab.alloc(VMA_CACHE, 2)
        m.policy.pins = dict(pins)
        m.policy.targets = {5: "vma5", 7: "vma7"}
        m.policy.detached = {7: "vma7"}          # 7 is pinned only: its last unpin frees it
    fast.policy._unpin_targets(fast, np.array(targets, np.int64))
    for ident in sorted(set(targets)):
        ref.policy._unpin(ref, ident, targets.count(ident))
    assert (ref.policy.pins, ref.policy.detached) == (fast.policy.pins, fast.policy.detached)
    assert list(fast.slab.live) == list(ref.slab.live)
    assert fast.policy.pins == {ident: n - targets.count(ident) for ident, n in pins.items()
                                if n - targets.count(ident)}


def test_check_finds_a_lazy_folio_in_a_tree_parent_vma():
    # tree_parents_map_no_lazy (upgrade() of a TREE_PARENT VMA scans no folio) rests on
    # Lazy.check(), run by checked mode after every op: it must see a broken state
    from simcore.errors import InvariantError
    from simcore.folio import MAP_VMA
    m = Machine(Lazy(), check=True)
    for op in parse(mmap(), touch(write=True), fork(0, 1)):
        m.apply(op)
    (child,) = m.procs[1].vmas
    assert isinstance(child.priv, TreeParent) and (child.pte >= 0).all()
    m.policy.check(m)
    m.folios.mkind[child.pte[3]] = MAP_VMA
    with pytest.raises(InvariantError, match="lazy-tree-parent"):
        m.policy.check(m)
    assert not RefLazy().tree_parents_map_no_lazy and not Lazy(child_cow="vma").tree_parents_map_no_lazy

"""The time model (simcore/timemodel.py): fault kinds, anon_vma root lock holds per root,
rmap-walk and fork time, under each policy's lock model.

Regions: ``a`` and ``b``, 4 pages each in their own slot; P = pid 0, C = its child."""
from __future__ import annotations

import pytest

from kstate import machine, step
from simcore import trace as T
from simcore.arch import ArchConf
from simcore.machine import Machine
from simcore.timemodel import TIME_FLOATS, TIME_INTS, fork_cost, time_metrics

ARCH = ArchConf().__dict__


def faults(m: Machine) -> tuple[int, int, int, int]:
    """(new, prepare, cow, reuse) faults so far."""
    return tuple(m.faults[k] for k in ("new", "prepare", "cow", "reuse"))


def locks(m: Machine) -> tuple[int, int, int, int]:
    """(root write acquisitions, AVCs handled under them, VMAs and PTEs under read holds)."""
    return m.root_lock_write, m.locks.write_items, m.locks.read_vmas, m.locks.read_ptes


def test_fault_kinds_and_write_holds_step_by_step() -> None:
    m = machine()
    # P: AAAA   first write: 4 new folios, one anon_vma_prepare (1 AVC under the root lock)
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    assert faults(m) == (4, 1, 0, 0) and locks(m) == (1, 1, 0, 0)
    step(m, T.Touch(0, "a"))                        # writable already: no fault at all
    assert faults(m) == (4, 1, 0, 0)
    # fork: anon_vma_clone (1 AVC) + anon_vma_fork (its own AVC), both under P's root
    step(m, T.Fork(0, 1))
    assert locks(m) == (3, 3, 0, 0) and m.locks.roots == 1
    # C writes: 4 COW copies (C already has its anon_vma: no prepare)
    step(m, T.Touch(1, "a"))
    assert faults(m) == (4, 1, 4, 0)
    # P writes its read-only pages, now mapped once: wp reuse
    step(m, T.Touch(0, "a"))
    assert faults(m) == (4, 1, 4, 4)
    # C exits: unlink_anon_vmas() of its 2 AVCs under one root lock
    step(m, T.Exit(1))
    assert locks(m) == (4, 5, 0, 0)
    out = time_metrics(m, ARCH)
    assert out["time_fault_ns"] == pytest.approx(
        4 * ARCH["fault_new_ns"] + ARCH["fault_prepare_ns"] + 4 * ARCH["fault_cow_ns"]
        + 4 * ARCH["fault_reuse_ns"])
    assert out["time_lock_write_hold_ns"] == pytest.approx(5 * ARCH["fork_avc_ns"])
    assert out["time_lock_write_hold_max_ns"] == out["time_lock_write_hold_ns"]   # one root


def test_split_and_merge_take_the_root_write_lock() -> None:
    m = machine()
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    # AAAA -> AaAA (mprotect of page 1): two splits, each clone + vma_prepare of the old VMA
    step(m, T.Mprotect(0, "a", "r", 1, 1))
    assert len(m.procs[0].vmas) == 3 and m.root_lock_write == 1 + 2 * 2
    before = m.root_lock_write
    # back to rw: the three pieces merge (vma_prepare of the survivor; unlink of the others)
    step(m, T.Mprotect(0, "a", "rw", 1, 1))
    assert len(m.procs[0].vmas) == 1 and m.root_lock_write > before


def test_read_holds_and_walk_time_of_a_reclaim() -> None:
    m = machine()
    # P: AAAA BBBB written, forked: every folio mapped by P and C, two roots
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Mmap(0, "b", 4), T.Touch(0, "b"),
         T.Fork(0, 1))
    # reclaim of a: per folio folio_referenced + try_to_unmap, each visits P's and C's VMA
    step(m, T.Rmap(0, "a", walk="reclaim"))
    cost = m.walk_costs["reclaim"]
    assert (cost.walks, cost.vmas_visited, cost.ptes, cost.root_lock_read) == (8, 16, 16, 8)
    assert locks(m)[2:] == (16, 16) and m.locks.roots == 2
    out = time_metrics(m, ARCH)
    walk = (8 * ARCH["walk_a_ns"] + 16 * ARCH["walk_vma_ns"] + 16 * ARCH["walk_pte_ns"]
            + 8 * ARCH["walk_lock_ns"])
    assert out["time_rmap_reclaim_ns"] == pytest.approx(walk) == out["time_rmap_ns"]
    hold = 16 * ARCH["walk_vma_ns"] + 16 * ARCH["walk_pte_ns"]
    assert out["time_lock_read_hold_ns"] == pytest.approx(hold)
    assert out["time_lock_read_hold_max_ns"] == pytest.approx(hold)     # a's root only
    assert out["time_lock_write_hold_max_ns"] < out["time_lock_write_hold_ns"]   # a and b
    assert out["rmap_reclaim_walks"] == 8 and out["time_rmap_migrate_ns"] == 0
    assert set(out) == set(TIME_FLOATS) | set(TIME_INTS)


def test_lazy_first_fault_and_walk_take_no_anon_vma_lock_and_first_fork_pays_the_upgrade():
    m = Machine("lazy", check=True)
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    assert faults(m) == (4, 0, 0, 0) and m.root_lock_write == 0
    step(m, T.Rmap(0, "a", walk="reclaim"))
    cost = m.walk_costs["reclaim"]
    assert cost.root_lock_read == 0 and cost.lockless_walks == 8 and cost.ptes == 8
    assert m.locks.read_vmas == 0                   # no root rwsem held for read
    # first fork: the parent's VMA upgrades (anon_vma_prepare, 4 PTEs scanned), the child
    # gets no anon_vma; the second fork allocates none either
    step(m, T.Fork(0, 1), T.Fork(0, 2))
    first, second = m.forks
    assert (first.anon_vmas, first.upgrade_ptes) == (1, 4)
    assert (second.anon_vmas, second.upgrade_ptes) == (0, 0)
    out = time_metrics(m, ARCH)
    assert out["time_fork_upgrade_ns"] == pytest.approx(4 * ARCH["fork_pte_ns"])
    assert out["time_upgrade_ns"] == 0
    ns = fork_cost(m.forks, ARCH)
    assert ns[0] - ns[1] == pytest.approx(ARCH["fork_av_ns"] + 2 * ARCH["fork_avc_ns"]
                                          - ARCH["fork_avc_ns"] + 4 * ARCH["fork_pte_ns"])


@pytest.mark.parametrize("walk_lock, charged", [("rcu", 0), ("ctx", 2), ("vma", 2)])
def test_cow_context_lock_model_follows_its_walk_lock_knob(walk_lock, charged) -> None:
    from simcore.policy import make_policy
    m = Machine(make_policy("cow_context", walk_lock=walk_lock), check=True)
    step(m, T.Mmap(0, "a", 1), T.Touch(0, "a"), T.Fork(0, 1), T.Rmap(0, "a", walk="idle"))
    cost = m.walk_costs["idle"]
    assert cost.root_lock_read == 0 and m.root_lock_write == 0
    assert m.policy.walk_locks(cost) == charged     # P's and C's context (or VMA)
    out = time_metrics(m, ARCH)
    list_locks = m.policy.other_locks()["cow_list_lock"]
    assert list_locks == 1                          # dup_cow_context()
    assert out["time_lock_other_ns"] == pytest.approx((charged + 1) * ARCH["walk_lock_ns"])
    assert out["time_lock_read_hold_ns"] == 0 == out["time_lock_write_hold_ns"]


def test_every_policy_states_its_lock_model() -> None:
    from simcore import registry
    from simcore.policy import make_policy
    built_in = [n for n in registry.names("policy")         # not a test's plugin policy
                if registry.lookup("policy", n).module.startswith("simcore.")]
    assert {"eager", "lazy", "cow_context"} <= set(built_in)
    models = {n: make_policy(n).lock_model for n in built_in}
    assert all(set(mdl) == {"walk", "change"} for mdl in models.values())
    assert len({mdl["walk"] for mdl in models.values()}) == len(models)   # each its own


def test_time_columns_are_in_the_metric_set() -> None:
    from sweep.fingerprint import metric_set
    floats = metric_set({})["float"]
    assert {"time_fault_ns", "time_rmap_ns", "time_lock_write_hold_ns",
            "time_lock_read_hold_max_ns"} <= set(floats)
    assert "faults_cow" in metric_set({})["int"]

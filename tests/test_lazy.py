"""ANON_VMA_LAZY: stated semantics, every variant under the oracle, and the documented finding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import corpus, fork, mmap, touch
from simcore import trace
from simcore.check import check_no_leaks
from simcore.errors import InvariantError
from simcore.machine import Machine
from simcore.policy import make_policy
from simcore.policy.lazy import VARIANTS, Lazy, TreeParent
from simcore.trace import Exit

ALL_VARIANTS = [{}] + [{k: v} for k, (vals, d) in VARIANTS.items() for v in vals if v != d]
UNSOUND = ({"mremap": "keep"}, {"large": "none"})        # findings 1 and 5
SOUND = [v for v in ALL_VARIANTS if v not in UNSOUND]
FINDINGS = str(Path(__file__).parent / "lazy_findings") + "/"   # any cwd


def trace_objs(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip() and not line.startswith("#")]


def sim(*objs, **variant) -> Machine:
    return Machine(Lazy(**variant), check=True).run(
        trace.parse_lines([json.dumps(o) for o in objs]))


def test_first_fault_allocates_nothing_and_points_folios_at_the_vma():
    m = sim(mmap(), touch())
    (vma,) = m.procs[0].vmas
    assert m.slab.live == [1, 0, 0]
    assert set(m.folios.mapping[vma.pte].tolist()) == {vma.id}
    assert m.policy.pins[vma.id] == 8


def test_fork_upgrades_the_parent_and_the_child_joins_its_tree():
    m = sim(mmap(), touch(), fork(0, 1))
    (p,), (c,) = m.procs[0].vmas, m.procs[1].vmas
    assert m.slab.live == [2, 1, 2]                     # +1 AV +1 AVC (parent), +1 AVC (child)
    assert c.anon_vma is None and isinstance(c.priv, TreeParent) and c.priv.tree is p.anon_vma
    assert set(m.folios.mapping[p.pte].tolist()) == {p.anon_vma.id}
    assert m.counts()["lazy_upgrade_folios"] == 8 and not m.policy.pins


def test_vmas_created_after_fork_stay_lazy():
    m = sim(mmap(), touch(), fork(0, 1), mmap(1, "n"), touch(1, "n"))
    assert m.slab.live[1:] == [1, 2]


@pytest.mark.parametrize("child_cow, objects", [("parent", [2, 1, 2]), ("own", [2, 2, 3]),
                                                ("vma", [2, 1, 2])])
def test_child_cow_variants(child_cow, objects):
    m = sim(mmap(), touch(), fork(0, 1), touch(1), child_cow=child_cow)
    assert m.slab.live == objects


def test_a_vma_pinned_by_folios_outlives_its_unmapping():
    # split=keep: the lower piece's folios still point at the original (upper) VMA object
    m = sim(mmap(), touch(), {"op": "munmap", "pid": 0, "region": "a", "first": 4, "count": 4})
    assert m.slab.live[0] == 2 and m.policy.pinned_vmas() == 1
    m.run([Exit(0)])
    check_no_leaks(m)


def test_a_fork_that_frees_a_pinned_vma_counts_each_copy_before_it():
    # the fork upgrades the lower piece: its folios leave the detached VMA, which is freed
    # inside dup_mmap(), after the piece's copy was allocated (peak 3, not 2)
    m = sim(mmap(), touch(), {"op": "munmap", "pid": 0, "region": "a", "first": 4, "count": 4})
    allocs = m.slab.allocs[0]
    assert (m.slab.live[0], m.slab.peak[0], m.policy.pinned_vmas()) == (2, 2, 1)
    m.run([trace.Fork(0, 1)])
    assert (m.slab.live[0], m.slab.peak[0], m.policy.pinned_vmas()) == (2, 3, 0)
    assert m.slab.allocs[0] == allocs + 1 and m.forks[-1].vmas == 1


def test_lazy_walks_take_no_lock():
    m = sim(mmap(), touch(), {"op": "rmap", "pid": 0, "region": "a"})
    cost = m.walk_costs["reclaim"]
    assert cost.walks == 16 and cost.lockless_walks == 16 and cost.root_lock_read == 0  # 2 passes


def test_unknown_variants_are_rejected():
    with pytest.raises(ValueError, match="unknown lazy variant knob"):
        make_policy("lazy", colour="red")
    with pytest.raises(ValueError, match="is not one of"):
        make_policy("lazy", split="shred")


@pytest.mark.parametrize("variant", SOUND, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_every_sound_variant_passes_the_oracle_on_the_corpus(variant):
    for path in corpus():
        m = Machine(Lazy(**variant), check=True).run(trace.load(path))
        m.run([Exit(p) for p in m.layout.alive()])
        check_no_leaks(m)


def test_mremap_keep_breaks_rmap_completeness():
    """Finding: folios that keep pointing at the VMA they were faulted in cannot be found
    once mremap moved them (docs/lazy-model.md)."""
    ops = trace.load(FINDINGS + "mremap_keep_incomplete.jsonl")
    with pytest.raises(InvariantError, match="rmap incomplete") as exc:
        Machine(Lazy(mremap="keep"), check=True).run(ops)
    assert exc.value.invariant == "rmap-complete" and exc.value.line is not None
    Machine(Lazy(), check=True).run(ops)                 # the default re-points: complete


@pytest.mark.parametrize("name", ["large_none_mremap_half_incomplete",
                                  "large_none_dontfork_fork_incomplete"])
def test_large_none_breaks_rmap_completeness(name):
    """Finding: a large folio mapped by two pieces of a lazy VMA is lost by the walk when one
    piece moves (mremap) or upgrades alone (fork with the other piece MADV_DONTFORK), unless
    every VMA mapping it joins the anon_vma (large=upgrade, the default)."""
    ops = trace.load(FINDINGS + name + ".jsonl")
    with pytest.raises(InvariantError, match="rmap incomplete") as exc:
        Machine(Lazy(large="none"), check=True).run(ops)
    assert exc.value.invariant == "rmap-complete" and exc.value.line == ops[-1].line
    Machine(Lazy(), check=True).run(ops)


def test_a_thp_split_by_dontfork_upgrades_as_one_family():
    """fork upgrades the forked piece [0,1); the DONTFORK piece [1,512) maps the same THP,
    so it joins the same anon_vma (as eager's pieces share one), and the child COWs."""
    m = sim(*trace_objs(FINDINGS + "large_none_dontfork_fork_incomplete.jsonl"))
    head, tail = m.procs[0].vmas
    assert (head.pages, tail.pages) == (1, 511)
    assert head.anon_vma is tail.anon_vma is not None
    assert m.slab.live == [3, 1, 3]                 # 1 AV; AVCs: head, tail, child's clone
    (fid,) = set(head.pte.tolist()) | set(tail.pte[tail.pte >= 0].tolist())
    assert m.folios.mapping[fid] == head.anon_vma.id
    assert m.counts()["lazy_upgrades"] == 2


def test_a_thp_half_moved_away_upgrades_both_halves():
    """mremap moves [256,512) of a lazy THP elsewhere: the halves are at two linear offsets,
    so no VMA pointer can find both; both VMAs get one anon_vma (mainline shares one too)."""
    m = sim(*trace_objs(FINDINGS + "large_none_mremap_half_incomplete.jsonl"))
    stay, moved = m.procs[0].vmas
    assert stay.anon_vma is moved.anon_vma is not None and m.slab.live == [2, 1, 2]
    assert stay.vm_start - stay.vm_pgoff != moved.vm_start - moved.vm_pgoff


@pytest.mark.parametrize("name, variant, cache", [
    ("merge_refuse_more_avcs", {"merge": "refuse"}, 2),
    ("mremap_upgrade_more_anon_vmas", {"mremap": "upgrade"}, 1)])
def test_variants_that_can_exceed_eager(name, variant, cache):
    """Findings: these two variants can hold more objects than mainline at some step."""
    ops = trace.load(FINDINGS + name + ".jsonl")
    eager, lazy = Machine("eager"), Machine(Lazy(**variant), check=True)
    above = False
    for op in ops:
        eager.apply(op)
        lazy.apply(op)
        above |= lazy.slab.live[cache] > eager.slab.live[cache]
    assert above
    default = Machine(Lazy()).run(ops)
    assert default.slab.live[cache] <= eager.slab.live[cache]


def test_ksm_upgrade_can_exceed_eager_anon_vmas():
    """Finding: a KSM upgrade of a lazy piece finds no neighbour anon_vma to reuse where
    mainline reused one at the first fault (anon_vma_prepare() -> find_mergeable_anon_vma()),
    so the default variant can hold more anon_vmas than mainline; ksm=none cannot."""
    ops = trace.load(FINDINGS + "ksm_upgrade_more_anon_vmas.jsonl")
    eager = Machine("eager").run(ops)
    assert Machine(Lazy(), check=True).run(ops).slab.live[1] > eager.slab.live[1]
    assert Machine(Lazy(ksm="none"), check=True).run(ops).slab.live[1] <= eager.slab.live[1]


def test_lazy_merges_where_mainline_refuses():
    """Finding 6: mlock splits [5,6) off, a write faults [0,5), [5,6) and [6,8) (three
    incompatible VMAs: three anon_vmas in mainline), then mlock of [6,7) makes its flags
    match [5,6).  Mainline refuses that merge (two different anon_vmas, R15 case 3); two
    faulted lazy VMAs have none, so the default (merge=repoint) merges them.  merge=refuse
    compares the lazy tags and refuses, as mainline does."""
    ops = trace.load(FINDINGS + "merge_lazy_fewer_vmas.jsonl")
    vmas = lambda m: [(v.vm_start - m.procs[0].vmas[0].vm_start, v.pages) for v in m.procs[0].vmas]
    eager = Machine("eager").run(ops)
    assert vmas(eager) == [(0, 5), (5, 1), (6, 1), (7, 1)] and eager.slab.live[1] == 3
    lazy = Machine(Lazy(), check=True).run(ops)
    assert vmas(lazy) == [(0, 5), (5, 2), (7, 1)] and lazy.counts()["vm_area_struct"] == 3
    refuse = Machine(Lazy(merge="refuse"), check=True).run(ops)
    assert vmas(refuse) == vmas(eager)

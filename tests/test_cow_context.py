"""COW context: the PoC's semantics, the worked example of cow-context.md §6.4, every variant
under the rmap-completeness oracle, the findings, and random traces in lockstep with eager."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import corpus, fork, mmap, size, touch
from simcore import trace
from simcore.check import check_no_leaks
from simcore.errors import InvariantError
from simcore.machine import Machine
from simcore.policy import make_policy
from simcore.policy.cow_context import (DUMMY_ANON_VMA, MAP_COW_CONTEXT, VARIANTS,
                                        CowContextPolicy, subtree)
from simcore.rmap import WalkCost, rmap_walk
from simcore.slab import PolicyCache
from simcore.trace import Exit

FINDINGS = Path(__file__).parent / "cow_findings"
# variant -> the findings trace it fails on (every other variant passes the oracle)
UNSOUND = {"fastpath=on": ["fastpath_mremap_exclusive", "fastpath_parent_cow",
                           "fastpath_private_file", "prepare_remap_file", "remap_adjust_off",
                           "remap_inherit_off"],
           "remap_inherit=off": ["remap_inherit_off"],
           "remap_adjust=off": ["fastpath_mremap_exclusive", "prepare_remap_file",
                                "remap_adjust_off", "remap_inherit_off"],
           "prepare_remap=file": ["prepare_remap_file"]}
SOUND = [{}] + [{k: v} for k, (vals, d) in VARIANTS.items() for v in vals
                if v != d and f"{k}={v}" not in UNSOUND]
# random traces per sound variant in lockstep with eager (the default variant gets LOCKSTEP,
# the others LOCKSTEP // 5): 150 in CI, 5,000 with ANONSIM_LONG=1 (COW_LOCKSTEP_TRACES sets
# any other number).  Seeds from 10,000, as tests/test_policies_random.py.
LOCKSTEP = int(os.environ.get("COW_LOCKSTEP_TRACES", size(150, 5000)))


def ops(*objs):
    return trace.parse_lines([json.dumps(o) for o in objs])


def sim(*objs, **variant) -> Machine:
    return Machine(CowContextPolicy(**variant), check=True).run(ops(*objs))


def walk(m: Machine, fid: int) -> tuple[list, WalkCost]:
    cost = WalkCost.for_policy(m.policy)
    return rmap_walk(m, fid, cost), cost


def ctx_of(m: Machine, pid: int):
    return m.procs[pid].priv


# ---- the PoC's objects --------------------------------------------------------------
def test_first_fault_sets_the_marker_and_points_folios_at_the_mm_context():
    m = sim(mmap(), touch())
    (vma,) = m.procs[0].vmas
    assert m.slab.live == [1, 0, 0, 1, 0, 0, 8]        # VMA, AV, AVC, ctx, node, array B, ptr
    assert vma.priv is DUMMY_ANON_VMA and vma.anon_vma is None and not vma.chain
    assert set(m.folios.mapping[vma.pte].tolist()) == {ctx_of(m, 0).id}
    assert set(m.folios.mkind[vma.pte].tolist()) == {MAP_COW_CONTEXT}
    assert ctx_of(m, 0).refcnt == 1 + 8                # the mm + one per folio


def test_every_mm_has_a_context_and_exec_starts_a_new_tree():
    m = sim(mmap(), touch(), fork(0, 1), fork(1, 2), {"op": "exec", "pid": 1})
    p, c, g = ctx_of(m, 0), ctx_of(m, 1), ctx_of(m, 2)
    assert c.parent is None and g.parent is not None and g.parent.mm is None
    assert g.parent.parent is p                        # 1's old context: a zombie held by 2
    assert m.counts()["cow_context"] == 4 and m.counts()["cow_ctx_zombie"] == 1
    m.run([Exit(2)])                                   # its only child gone: the zombie goes
    assert m.counts()["cow_context"] == 2 and p.children == []
    m.run([Exit(0), Exit(1)])
    check_no_leaks(m)


def test_reuse_of_an_exclusive_folio_moves_it_to_the_writer_context():
    m = sim(mmap(), touch(), fork(0, 1), {"op": "exit", "pid": 0}, touch(1))
    c = ctx_of(m, 1)
    (vma,) = m.procs[1].vmas
    assert set(m.folios.mapping[vma.pte].tolist()) == {c.id}
    assert m.counts()["cow_folio_moves"] == 8
    assert m.counts()["cow_context"] == 2 and c.parent.folios == 0   # the zombie: C's ref only


def test_mremap_records_a_remap_and_munmap_removes_it():
    m = sim(mmap(), touch(), {"op": "mremap", "pid": 0, "region": "a", "to": "b",
                              "first": 2, "count": 4})
    assert m.counts()["cow_remap_entries"] == 1 and m.counts()["cow_remap_node"] == 1
    m.run(ops({"op": "munmap", "pid": 0, "region": "b", "first": 0, "count": 2}))
    assert m.counts()["cow_remap_entries"] == 1        # trimmed to the 2 pages left
    m.run(ops({"op": "munmap", "pid": 0, "region": "b", "first": 2, "count": 2}))
    assert m.counts()["cow_remap_entries"] == 0 and m.counts()["cow_remap_node"] == 0


def test_a_pgoff_range_mapped_at_two_offsets_needs_a_dynarray():
    # two private mappings of one file at offset 0: the same pgoffs at two offsets
    lib = dict(kind="file", file="lib", offset=0, pages=4)
    m = sim(mmap(region="f", **lib), touch(region="f"), mmap(region="g", **lib))
    assert (m.counts()["cow_remap_entries"], m.counts()["cow_remap_multi"]) == (1, 0)
    m.run(ops(touch(region="g", first=2, count=2)))   # g's first fault records all of g
    counts = m.counts()
    assert (counts["cow_remap_entries"], counts["cow_remap_multi"]) == (1, 1)
    assert counts["cow_remap_array_bytes"] == 32       # 8 + 2 x 8 bytes: kmalloc-32
    assert ctx_of(m, 0).remaps.offsets(0, 4) == sorted(
        v.vm_start for v in m.procs[0].vmas)           # offset = address - pgoff, pgoff 0
    m.run(ops({"op": "munmap", "pid": 0, "region": "g", "first": 0, "count": 2}))
    counts = m.counts()
    assert (counts["cow_remap_entries"], counts["cow_remap_multi"]) == (2, 1)   # [0,2) [2,4)


def test_private_file_cow_records_its_remap_at_the_first_fault():
    m = sim(mmap(kind="file", file="lib", offset=0, pages=4), touch())
    assert m.counts()["cow_remap_entries"] == 1


def test_fork_links_the_child_under_the_parent_newest_first():
    m = sim(mmap(), fork(0, 1), fork(0, 2))
    p = ctx_of(m, 0)
    assert [c.mm.pid for c in p.children] == [2, 1]
    assert p.refcnt == 1 + 2 and m.counts()["cow_list_lock"] == 2


def test_fork_record_counts_the_design_own_fork_work():
    """Per fork: the child's context and its link; a remap store for each tracked VMA the
    child inherits (the middle of a moved to b: b is the one VMA at pgoff != address; a's two
    other pieces and c are not), one maple node.  eager's record has no policy work, its AVCs
    and anon_vmas instead (a0, a1, b, c: an anon_vma each in the child, 2 AVCs each)."""
    steps = (mmap(), touch(), {"op": "mremap", "pid": 0, "region": "a", "to": "b",
                               "first": 2, "count": 4}, mmap(region="c"), touch(region="c"),
             fork(0, 1), fork(1, 2))
    m = sim(*steps)
    first, second = m.forks
    assert dict(first.policy) == {"cow_ctx_allocs": 1, "cow_list_lock": 1, "cow_remap_stores": 1,
                                  "cow_remap_updates": 1, "cow_remap_nodes": 1}
    assert dict(second.policy) == dict(first.policy)
    assert (first.vmas, first.avcs, first.anon_vmas, first.ptes) == (4, 0, 0, 16)
    eager = Machine("eager").run(ops(*steps)).forks[0]
    assert dict(eager.policy) == {} and (eager.vmas, eager.avcs, eager.anon_vmas) == (4, 8, 4)
    from simcore.arch import ArchConf
    from simcore.fork import fork_metrics, policy_fork_ns
    arch = vars(ArchConf())
    assert policy_fork_ns(first, arch) == arch["fork_cow_ctx_allocs_ns"] + \
        arch["fork_cow_remap_stores_ns"]
    assert policy_fork_ns(eager, arch) == 0
    assert fork_metrics(m.forks, CowContextPolicy.fork_counters) == {
        "fork_vmas": 8, "fork_ptes": 32, "fork_anon_vmas": 0, "fork_avcs": 0,
        "fork_upgrade_ptes": 0, "fork_cow_ctx_allocs": 2, "fork_cow_list_lock": 2,
        "fork_cow_remap_stores": 2, "fork_cow_remap_updates": 2, "fork_cow_remap_nodes": 2}


# ---- the worked example of cow-context.md §6.4 ----------------------------------------
@pytest.mark.parametrize("nvmas", [1, 3])
def test_worked_example_fork_chain(nvmas):
    names = [f"v{i}" for i in range(nvmas)]
    steps = [o for n in names for o in (mmap(region=n), touch(region=n))]
    steps += [fork(0, 1), fork(1, 2)]
    eager = Machine("eager", check=True).run(ops(*steps))
    cow = Machine("cow_context", check=True).run(ops(*steps))
    assert eager.slab.live == [3 * nvmas, 3 * nvmas, 6 * nvmas]
    counts = cow.counts()
    assert (counts["anon_vma"], counts["anon_vma_chain"], counts["cow_context"],
            counts["cow_remap_entries"]) == (0, 0, 3, 0)
    p, c, g = ctx_of(cow, 0), ctx_of(cow, 1), ctx_of(cow, 2)
    assert list(subtree(p)) == [p, g, c]               # P, then post-order: G before C
    fid = int(cow.procs[0].vmas[0].pte[0])             # faulted in P, shared by all three
    found, cost = walk(cow, fid)
    assert sorted(pid for pid, _ in found) == [0, 1, 2]
    assert (cost.extra["cow_ctx_visited"], cost.extra["cow_mm_lookups"], cost.vmas_visited) \
        == (3, 3, 3)
    cow.run(ops(touch(1, "v0", first=0, count=1)))     # COW-copied in C
    copy = int(cow.procs[1].vmas[0].pte[0])
    assert int(cow.folios.mapping[copy]) == c.id
    found, cost = walk(cow, copy)
    assert found == [(1, cow.procs[1].vmas[0].vm_start)]
    assert (cost.extra["cow_ctx_visited"], cost.vmas_visited, cost.vmas_not_mapping) == (2, 2, 1)
    cow.run([Exit(0)])                                 # P exits: a zombie held by C and folios
    assert cow.counts()["cow_ctx_zombie"] == 1 and p.mm is None
    fid = int(cow.procs[2].vmas[0].pte[1])             # still P's folio, shared by C and G
    found, cost = walk(cow, fid)
    assert sorted(pid for pid, _ in found) == [1, 2]
    assert (cost.extra["cow_ctx_visited"], cost.extra["cow_ctx_dead"],
            cost.extra["cow_mm_lookups"]) == (3, 1, 2)


# ---- variants -----------------------------------------------------------------------
def test_merge_rule_variants():
    steps = (mmap(), touch(), mmap(region="b", after="a"))
    assert len(Machine("eager").run(ops(*steps)).procs[0].vmas) == 1
    assert len(sim(*steps).procs[0].vmas) == 2                      # faulted + unfaulted refused
    assert len(sim(*steps, merge="ideal").procs[0].vmas) == 1
    # a fork child's two faulted VMAs: two anon_vmas in mainline, one marker in the PoC
    both = (mmap(), touch(), mmap(region="b", after="a", prot="rwx"), touch(region="b"),
            fork(0, 1), {"op": "mprotect", "pid": 1, "region": "b", "prot": "rw"})
    assert len(Machine("eager").run(ops(*both)).procs[1].vmas) == 2
    assert len(sim(*both).procs[1].vmas) == 1


@pytest.mark.parametrize("zombie, contexts", [("none", 2), ("reparent", 1), ("collapse", 1)])
def test_zombie_variants_without_folios(zombie, contexts):
    m = sim(mmap(), fork(0, 1), {"op": "exit", "pid": 0}, zombie=zombie)
    assert m.counts()["cow_context"] == contexts


@pytest.mark.parametrize("zombie, contexts, moved", [("none", 2, 0), ("reparent", 2, 0),
                                                      ("collapse", 1, 8)])
def test_zombie_variants_with_folios(zombie, contexts, moved):
    m = sim(mmap(), touch(), fork(0, 1), {"op": "exit", "pid": 0}, zombie=zombie)
    assert m.counts()["cow_context"] == contexts
    assert m.counts()["cow_zombie_folios_moved"] == moved
    m.run([Exit(1)])
    check_no_leaks(m)


def test_nonexclusive_new_folio_context():
    m = sim(mmap(), fork(0, 1), fork(1, 2))
    mm = m.procs[2]
    assert m.policy._folio_ctx(mm, exclusive=False) is ctx_of(m, 2)
    root = CowContextPolicy(nonexcl_ctx="root")
    m = Machine(root).run(ops(mmap(), fork(0, 1), fork(1, 2)))
    assert root._folio_ctx(m.procs[2], exclusive=False) is ctx_of(m, 0)
    assert root._folio_ctx(m.procs[2], exclusive=True) is ctx_of(m, 2)


@pytest.mark.parametrize("lock, locks", [("rcu", 0), ("ctx", 3), ("vma", 3)])
def test_walk_lock_models(lock, locks):
    m = sim(mmap(), touch(), fork(0, 1), fork(1, 2), walk_lock=lock)
    _, cost = walk(m, int(m.procs[0].vmas[0].pte[0]))
    assert cost.extra["cow_walk_locks"] == locks
    assert cost.lockless_walks == (lock == "rcu")


@pytest.mark.parametrize("variant, arch, size", [({}, {"name": "x86_64"}, 96),
                                                 ({}, {"name": "arm64_android"}, 128),
                                                 ({"ctx_bytes": "128"}, {"name": "x86_64"}, 128),
                                                 ({}, {"name": "x86_64", "cow_context": 64}, 64)])
def test_context_size_per_arch(variant, arch, size):
    (ctx_cache,) = [c for c in CowContextPolicy(**variant).caches if c.name == "cow_context"]
    assert ctx_cache.size(arch) == size


def test_policy_cache_without_a_size_for_the_arch_is_an_error():
    with pytest.raises(ValueError, match="no object size for arch 'sparc'"):
        PolicyCache("x", {"x86_64": 8}).size({"name": "sparc"})


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown cow_context variant knob"):
        make_policy("cow_context", colour="red")
    with pytest.raises(ValueError, match="is not one of"):
        make_policy("cow_context", fastpath="maybe")


# ---- findings -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.stem for p in FINDINGS.glob("*.jsonl")))
def test_findings_default_is_complete(name):
    m = Machine("cow_context", check=True).run(trace.load(FINDINGS / f"{name}.jsonl"))
    m.run([Exit(pid) for pid in list(m.procs)])
    check_no_leaks(m)


@pytest.mark.parametrize("knob, name", [(k, n) for k, names in UNSOUND.items() for n in names])
def test_findings_unsound_variants_miss_mappings(knob, name):
    key, value = knob.split("=")
    with pytest.raises(InvariantError, match="rmap incomplete") as exc:
        Machine(CowContextPolicy(**{key: value}), check=True).run(
            trace.load(FINDINGS / f"{name}.jsonl"))
    assert exc.value.invariant == "rmap-complete"


# ---- the corpus and random traces ----------------------------------------------------
@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.stem)
def test_corpus_checked_and_no_leaks(path):
    m = Machine("cow_context", check=True).run(trace.load(path))
    assert m.slab.live[1:3] == [0, 0]
    m.run([Exit(pid) for pid in m.layout.alive()])
    check_no_leaks(m)


def resident(m: Machine) -> set[tuple[tuple[int, int], ...]]:
    """Every resident anon folio as the sorted (pid, page) places that map it (folio ids
    depend on fault order, which VMA boundaries change; the sharing does not)."""
    where: dict[int, list[tuple[int, int]]] = {}
    for pid, mm in m.procs.items():
        for v in mm.vmas:
            if v.pte is not None:
                for i in np.flatnonzero(v.pte >= 0).tolist():
                    where.setdefault(int(v.pte[i]), []).append((pid, v.vm_start + i))
    return {tuple(sorted(places)) for places in where.values()}


def lockstep(seed: int, variant: dict) -> None:
    """One random trace under eager and cow_context, checked after every op: the same
    processes, the same resident pages shared the same way, no anon_vma or AVC, no leaks."""
    from simcore.workloads import random_trace
    eager = Machine("eager")
    cow = Machine(CowContextPolicy(**variant), check=True)
    for op in random_trace(seed, 30, exit_all=True):
        eager.apply(op)
        cow.apply(op)
        assert cow.slab.live[1:3] == [0, 0]
        assert resident(cow) == resident(eager), (seed, op)
        assert cow.counts()["cow_context"] == len(cow.procs) + cow.counts()["cow_ctx_zombie"]
    check_no_leaks(cow)


@pytest.mark.parametrize("variant", SOUND, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items())
                         or "default")
def test_random_traces_in_lockstep_with_eager_checked(variant):
    n = LOCKSTEP if not variant else max(LOCKSTEP // 5, 1)
    for seed in range(n):
        lockstep(10_000 + seed, variant)


# ---- sweep rows ---------------------------------------------------------------------
def test_sweep_rows_carry_the_design_objects_kb_and_walk_counters(tmp_path):
    from dataclasses import asdict

    import yaml

    from simcore.arch import ArchConf
    from sweep.runner import simulate_cell
    from sweep.store import FLOAT_METRICS, INT_METRICS
    assert {"cow_context", "cow_context_peak", "cow_remap_node", "rmap_cow_ctx_visited",
            "cow_ctx_zombie"} <= set(INT_METRICS)
    assert {"cow_context_kb", "cow_context_slab_kb", "cow_folio_ptr_kb"} <= set(FLOAT_METRICS)
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in (
        mmap(), touch(), fork(0, 1), fork(1, 2), {"op": "rmap", "pid": 0, "region": "a",
                                                  "walk": "reclaim"})))
    conf = Path(__file__).parent.parent / "conf" / "arch"
    for arch, size in (("x86_64", 96), ("arm64_android", 128)):
        cfg = {"workload": {"name": "trace", "path": str(path)}, "seed": 0,
               "policy": {"name": "cow_context"},
               "arch": {**asdict(ArchConf()),          # the profile: schema defaults + file
                        **yaml.safe_load((conf / f"{arch}.yaml").read_text())}}
        row = simulate_cell(cfg)
        assert (row["anon_vma"], row["anon_vma_chain"], row["cow_context"]) == (0, 0, 3)
        assert row["cow_context_kb"] == 3 * size / 1024
        assert row["cow_folio_ptr_kb"] == row["cow_folio_ptr_slab_kb"] == 8 * 8 / 1024
        # 8 folios, 2 reclaim passes each; every walk visits P, G, C and stops once done
        assert row["rmap_walks"] == 16 and row["rmap_cow_ctx_visited"] == 16 * 3
        assert (row["fork_cow_ctx_allocs"], row["fork_cow_list_lock"], row["fork_vmas"],
                row["fork_avcs"]) == (2, 2, 2, 0)


# ---- recordings ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sh", "perl"])
def test_recordings_replay_checked_and_leave_only_the_boot_context(name):
    """A replay creates and drops mms itself (execve's early mm, vfork, exit_mmap inside
    exec): each gets its context and puts it (mm_alloc, mmput), and perl's in-place mremap
    grow of a tracked VMA updates its remap range (vma_adjust), or the walk misses pages."""
    from simcore.check import check_machine
    from simcore.replay import recorded_ops
    m = Machine("cow_context")
    m.observers.append(lambda m, op: m.ops_done % 50 or check_machine(m))
    m.run(recorded_ops(Path(__file__).parent / "recordings" / f"{name}.rec"))
    check_machine(m)
    counts = m.counts()                               # every recorded process exited:
    assert counts["cow_context"] == 1 and counts["cow_ctx_zombie"] == 0   # the boot mm's
    assert counts["cow_context_peak"] >= 2 and counts["cow_folio_ptr"] == 0
    assert counts["cow_remap_node"] == counts["cow_remap_array_bytes"] == 0

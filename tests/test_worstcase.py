"""The worst-case workloads (simcore/workloads/worstcase.py): valid, checked under eager, lazy
and cow_context, leak-free, with rmap walks, and each showing the design cost it is made for."""
from __future__ import annotations

import pytest

from simcore import registry
from simcore import trace as T
from simcore.check import check_machine, check_no_leaks
from simcore.machine import Machine
from simcore.rmap import WalkCost
from simcore.workloads import worstcase

NAMES = ("fork_chain", "fork_fanout", "mremap_fork")
POLICIES = ("eager", "lazy", "cow_context")
CHECK_EVERY = 20


def ops(name: str, **kw) -> list:
    e = registry.lookup("workload", name)
    return list(e.make(e.schema(**kw), 3))


def run(policy: str, trace: list) -> Machine:
    return Machine(policy).run(trace)


def walked(m: Machine) -> WalkCost:
    total = WalkCost.for_policy(m.policy)
    for c in m.walk_costs.values():
        for k, v in c.as_dict("").items():
            if k in total.extra:
                total.extra[k] += v
            else:
                setattr(total, k, getattr(total, k) + v)
    return total


def test_every_worst_case_is_registered_from_its_module():
    mine = {n for n in registry.names("workload")
            if registry.lookup("workload", n).module == worstcase.__name__}
    assert mine == set(NAMES)


@pytest.mark.parametrize("exits", worstcase.EXIT_ORDERS)
@pytest.mark.parametrize("name", NAMES)
def test_runs_checked_with_walks_and_leaks_nothing(name, exits):
    trace = ops(name, size=4, regions=3, exits=exits, pressure_every=10)
    assert any(isinstance(op, T.Rmap) for op in trace)
    survivors = 1
    for policy in POLICIES:
        m = Machine(policy)
        m.observers.append(lambda m, op: m.ops_done % CHECK_EVERY or check_machine(m))
        m.run(trace)
        check_machine(m)
        assert len(m.layout.alive()) == survivors + 1        # pid 0 and the last to exit
        assert walked(m).walks > 0
        m.run([T.Exit(pid) for pid in m.layout.alive()])
        check_no_leaks(m)


def test_unknown_exit_order_is_an_error():
    with pytest.raises(ValueError, match="exits='sideways'"):
        ops("fork_fanout", size=3, exits="sideways")


def test_fork_chain_eager_avcs_grow_with_depth_squared_cow_contexts_linearly():
    """All alive (the leaf exits first): a child at depth d links d + 1 AVCs per VMA."""
    peaks = {}
    for depth in (8, 16):
        trace = ops("fork_chain", size=depth, regions=2, cow=0.0, exits="children_first")
        eager, cow = run("eager", trace), run("cow_context", trace)
        peaks[depth] = (eager.slab.peak[2], cow.counts()["cow_context_peak"])
        assert cow.slab.peak[1:3] == [0, 0]
    assert peaks[8][1] == 8 + 2 and peaks[16][1] == 16 + 2  # one context per mm (+ pid 0)
    assert peaks[16][0] > 3.5 * peaks[8][0]                  # quadratic, not linear


def test_fork_chain_cow_walks_visit_every_generation_leaf_first():
    """A folio of the top process mapped by the top 9 of 17 generations (the lower 8 wrote
    their copy): eager's interval tree meets its VMAs top-down in fork order and stops at
    the 9th mapping; the COW-context walk visits the top, then the subtree in post-order,
    from the leaf up: all 17 contexts, per pass (reclaim: 2 passes, each stopping when done)."""
    trace = [op for op in ops("fork_chain", size=16, regions=2, cow=0.0, exits="children_first",
                              pressure_every=0, scan_pages=0) if not isinstance(op, (T.Exit, T.Rmap))]
    trace += [T.Touch(pid, "r0", 0, 1) for pid in range(10, 18)]
    trace.append(T.Rmap(1, "r0", "reclaim", 0, 1))
    eager, cow = walked(run("eager", trace)), walked(run("cow_context", trace))
    assert (eager.walks, eager.vmas_visited, eager.vmas_not_mapping) == (2, 18, 0)
    assert (cow.walks, cow.extra["cow_ctx_visited"], cow.vmas_visited) == (2, 34, 34)
    assert cow.vmas_not_mapping == 2 * 8


def test_fork_fanout_cow_visits_children_that_unmapped_the_region():
    trace = ops("fork_fanout", size=16, regions=1, cow=0.0, unmap=1.0, exits="random",
                pressure_every=0, scan_pages=0)[:-1]
    trace = [op for op in trace if not isinstance(op, (T.Exit, T.Rmap))]
    trace.append(T.Rmap(1, "r0", "idle", 0, 1))              # every child unmapped r0
    eager, cow = walked(run("eager", trace)), walked(run("cow_context", trace))
    assert eager.vmas_visited == 1
    assert cow.extra["cow_ctx_visited"] == 17 and cow.extra["cow_mm_lookups"] == 17


def test_mremap_fork_cow_looks_up_every_offset_of_the_pgoff_range():
    """A child moves r0 and maps and moves its hole `size` times: size + 1 offsets over r0's
    pgoffs in the child's remap tree (a dynarray), one lookup each per walk."""
    size = 6
    trace = [op for op in ops("mremap_fork", size=size, regions=1, children=1, cow=0.0,
                              pressure_every=0, scan_pages=0) if not isinstance(op, T.Exit)]
    trace.append(T.Rmap(1, "r0", "idle", 0, 1))
    cow_m = run("cow_context", trace)
    assert cow_m.counts()["cow_remap_multi"] == 1
    cow, eager = walked(cow_m), walked(run("eager", trace))
    assert eager.vmas_visited == 2                           # the parent's r0, the child's r0m0
    # parent: offset 0; child: offset 0 (its newest hole mapping) + size remap offsets
    assert cow.extra["cow_mm_lookups"] == 1 + 1 + size
    assert cow.vmas_visited == 1 + 1 + size


def test_worstcase_grid_runs_every_case_size_order_and_design():
    from pathlib import Path

    from sweep.config import load_grid
    grid = load_grid(Path(__file__).parent.parent / "conf" / "worstcase.yaml")
    assert grid.axes["workload"] == list(NAMES) and grid.axes["policy"] == list(POLICIES)
    assert grid.axes["workload.exits"] == list(worstcase.EXIT_ORDERS)
    assert grid.size == 3 * 3 * 4 * 3

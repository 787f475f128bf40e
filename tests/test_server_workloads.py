"""The Linux workload generators: valid, checked under both policies, leak-free, and with
the memory-pressure phases producing rmap walks."""
from __future__ import annotations

import pytest

from simcore import trace as T
from simcore.check import check_machine, check_no_leaks
from simcore.machine import Machine
from simcore import registry
from simcore.workloads import servers

SMALL = {"server_boot": dict(services=5, commands=3), "apache_prefork": dict(parent_vmas=60, workers=6),
         "postgres": dict(postmaster_vmas=40, connections=6, churn=4), "redis_bgsave": dict(vmas=40, heap_regions=6),
         "shell_storm": dict(commands=6), "make_j": dict(jobs=5), "chrome": dict(renderers=3, renderer_vmas=120, navigations=2),
         "jvm_glibc": dict(threads=10, large_mallocs=10, libs=10, metaspace=10)}

CHECK_EVERY = 20                  # check_machine is O(state): every op makes chrome take minutes


def entry(name: str) -> tuple:
    e = registry.lookup("workload", name)
    return e.schema, e.make


def test_every_server_workload_is_registered_from_its_module():
    mine = {n for n in registry.names("workload") if registry.lookup("workload", n).module == servers.__name__}
    assert mine == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_workload_runs_checked_and_leaks_nothing(name):
    cls, gen = entry(name)
    ops = list(gen(cls(**SMALL[name], pressure_every=10), 1))
    assert any(isinstance(op, T.Rmap) for op in ops), "memory-pressure walks are mixed in"
    for policy in ("eager", "lazy"):
        m = Machine(policy)                # every invariant every CHECK_EVERY ops and at the end
        m.observers.append(lambda m, op: m.ops_done % CHECK_EVERY or check_machine(m))
        m.run(ops)
        check_machine(m)
        assert sum(c.walks for c in m.walk_costs.values()) > 0
        m.run([T.Exit(pid) for pid in m.layout.alive()])
        check_no_leaks(m)


def test_a_process_that_never_forks_has_no_anon_vma_under_lazy():
    cls, gen = entry("jvm_glibc")
    ops = list(gen(cls(**SMALL["jvm_glibc"]), 0))
    assert Machine("lazy").run(ops).slab.live[1:] == [0, 0]
    assert Machine("eager").run(ops).slab.live[1] > 0

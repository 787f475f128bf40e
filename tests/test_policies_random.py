"""Random traces replayed under eager and every lazy variant, in lockstep.

Checked mode after every op (invariants I1-I6, rmap completeness), lazy's anon_vma and
AVC counts never above eager's, no leaks after all exits, and no anon_vma/AVC at all
under lazy for traces without fork (and without KSM/collapse/migration upgrades).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from conftest import size
from simcore import trace as T
from simcore.check import check_no_leaks
from simcore.machine import Machine
from simcore.policy.lazy import VARIANTS, Lazy
from traceops import TraceOps

SOUND = [{}] + [{k: v} for k, (vals, d) in VARIANTS.items() for v in vals
                if v != d and (k, v) not in (("mremap", "keep"), ("large", "none"))]
# variants documented to exceed eager in rare traces (tests/lazy_findings, docs/lazy-model.md)
CAN_EXCEED = ({"merge": "refuse"}, {"mremap": "upgrade"})
N_TRACES = size(500, 5000)


class Lockstep(TraceOps):
    """One eager and one machine per sound lazy variant receive the same drawn operations
    (checked mode after every op; no leaks after all exits)."""

    def __init__(self) -> None:
        super().__init__()
        self.eager = Machine("eager", check=True)
        self.lazy = [Machine(Lazy(**v), check=True) for v in SOUND]
        self.targets = [self.eager, *self.lazy]

    @invariant()
    def lazy_never_above_eager(self) -> None:
        # a KSM upgrade may exceed eager's anon_vmas (finding 4, tests/lazy_findings)
        ksm = any(isinstance(op, T.Madvise) and op.advice == "mergeable" for op in self.ops)
        with self.explained():
            for m in self.lazy:
                changed = {k: v for k, v in m.policy.variant.items() if VARIANTS[k][1] != v}
                if changed in CAN_EXCEED:
                    continue
                ksm_upgrades = ksm and m.policy.variant["ksm"] == "upgrade"
                assert ksm_upgrades or m.slab.live[1] <= self.eager.slab.live[1], m.policy.variant
                assert m.slab.live[2] <= self.eager.slab.live[2], m.policy.variant


TestLockstep = pytest.mark.long(Lockstep.TestCase)
TestLockstep.settings = settings(max_examples=size(25, 300), stateful_step_count=40,
                                 deadline=None, suppress_health_check=list(HealthCheck))


def _lockstep(seed: int, n_ops: int = 30) -> None:
    from simcore.workloads import random_trace
    ops = random_trace(seed, n_ops, exit_all=True)
    eager = Machine("eager", check=True)
    lazy = Machine("lazy", check=True)
    ksm = False                 # a KSM upgrade may exceed eager's anon_vmas (finding 4)
    for op in ops:
        eager.apply(op)
        lazy.apply(op)
        ksm |= isinstance(op, T.Madvise) and op.advice == "mergeable"
        assert ksm or lazy.slab.live[1] <= eager.slab.live[1]
        assert lazy.slab.live[2] <= eager.slab.live[2]
    check_no_leaks(eager)
    check_no_leaks(lazy)


@pytest.mark.long
def test_random_traces_per_policy_checked():
    """N_TRACES seeded traces of the random generator (5,000 with ANONSIM_LONG=1)."""
    for seed in range(N_TRACES):
        _lockstep(10_000 + seed)


@pytest.mark.long
def test_traces_without_fork_have_no_anon_vma_under_lazy():
    """Without fork, KSM, collapse or huge pages nothing upgrades.  (A huge folio whose part
    mremap moves away upgrades both parts: finding 5, tests/test_lazy.py.)"""
    from simcore.workloads import random_trace
    for seed in range(size(100, 400)):
        ops = [op for op in random_trace(seed, 40, forks=False)
               if not (isinstance(op, T.Madvise)
                       and op.advice in ("mergeable", "collapse", "hugepage"))]
        m = Machine("lazy", check=True).run(ops)
        assert m.slab.live[1:] == [0, 0], seed

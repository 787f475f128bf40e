"""Differential check: random valid traces give the same counts on the live kernel and in simcore."""
from __future__ import annotations

import pytest

from conftest import needs_kernel, size
from simcore.check import check_layout
from simcore.machine import Machine
from simcore.workloads import random_trace

KEYS = ("vm_area_struct", "anon_vma", "anon_vma_chain")


@needs_kernel
@pytest.mark.long
@pytest.mark.parametrize("seed", range(5000, 5000 + size(10, 30)))
def test_random_trace_matches_kernel(seed):
    from simcore.kernel import measure
    ops = random_trace(seed, 50, kernel_safe=True)
    sim = Machine("eager", check=True).run(ops).counts()
    kern = measure(ops, repeats=1)
    assert [sim[k] for k in KEYS] == [kern[k] for k in KEYS]


# Long traces reach layouts short ones never build (issue 11: a crash after ~6,000 ops).
# CI: one trace of 5,000 ops (6 s on a quiet 2-CPU machine, about 1 min at load 17, most of
# it executor round trips); ANONSIM_LONG=1: three 20,000-op traces (about 30 s each quiet).
KERNEL_OPS = size(5000, 20000)
KERNEL_SEEDS = range(6000, 6000 + size(1, 3))


@needs_kernel
@pytest.mark.long
@pytest.mark.parametrize("seed", KERNEL_SEEDS)
def test_long_random_trace_matches_kernel(seed):
    from simcore.kernel import measure
    ops = random_trace(seed, KERNEL_OPS, kernel_safe=True)
    assert len(ops) >= KERNEL_OPS
    m = Machine("eager")
    m.observers.append(lambda m, op: check_layout(m, (op.pid, getattr(op, "child", op.pid))))
    sim = m.run(ops).counts()
    kern = measure(ops, repeats=1)
    assert [sim[k] for k in KEYS] == [kern[k] for k in KEYS]

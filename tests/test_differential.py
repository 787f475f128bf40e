"""Differential check: random valid traces give the same counts on the live kernel and in simcore."""
from __future__ import annotations

import pytest

from conftest import needs_kernel, size
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

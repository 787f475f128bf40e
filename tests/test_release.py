"""Machine.release(): after it, dropping the machine frees the model by reference counting
alone (a cell runs with the cyclic GC off): no VMA, anon_vma, mm or machine is left in a
reference cycle, under every policy, with processes still alive (their VMAs linked to
anon_vmas, forked children in their parents' trees).  (cow_context's live contexts keep
their parent/children links and ctx->mm: those mms are the cyclic GC's, so that policy
is checked for VMAs, anon_vmas and the machine only.)"""
from __future__ import annotations

import gc

import pytest

from simcore.anon_vma import AnonVMA
from simcore.machine import Machine
from simcore.mm import MM
from simcore.policy.cow_context import CowContextPolicy
from simcore.policy.lazy import Lazy
from simcore.vma import VMA

MODEL = (Machine, MM, VMA, AnonVMA)


def cyclic_model_garbage(make, ops, release: bool = True) -> list:
    """The model's objects the cyclic GC finds after release() and the last reference
    (make() builds the policy: nothing but the machine may hold it)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)            # what it finds goes to gc.garbage, not freed
    try:
        m = Machine(make())
        m.run(ops)
        if release:
            m.release()
        del m
        gc.collect()
        return [o for o in gc.garbage if isinstance(o, MODEL)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("policy", ["eager", "lazy", "cow_context", "lazy-child_cow=own"])
def test_release_leaves_no_cycle(policy):
    from simcore.workloads import random_trace
    make = {"eager": lambda: "eager", "lazy": Lazy, "cow_context": CowContextPolicy,
            "lazy-child_cow=own": lambda: Lazy(child_cow="own")}[policy]
    for seed in range(8):
        ops = random_trace(40_000 + seed, 60)          # no exit_all: live processes
        found = cyclic_model_garbage(make, ops)
        if policy == "cow_context":
            found = [o for o in found if not isinstance(o, MM)]
        assert found == []


def test_without_release_the_cycles_are_found():
    # the check above can fail: a machine dropped without release() leaves cycles
    from simcore.workloads import random_trace
    found = cyclic_model_garbage(lambda: "eager", random_trace(40_000, 60), release=False)
    assert any(isinstance(o, VMA) for o in found) and any(isinstance(o, AnonVMA) for o in found)

"""Eager anon_vma_fork()'s inline fast path (simcore/anon_vma.py: anon_vma_clone(),
anon_vma_alloc(), get_anon_vma() and anon_vma_chain_link() in one function) against the
kernel's sequence of those calls, in lockstep.

Two machines receive the same ops, one forking through the reference sequence; after every
op their whole state must be equal: the VMAs' chains, every field of every anon_vma and
the order of its tree, slab counts (live, peak, allocs), lock records and fork records."""
from __future__ import annotations

import pytest

from conftest import fork, lockstep_pair, mmap, parse, size, touch
from simcore import trace as T
from simcore.anon_vma import (AnonVMA, anon_vma_alloc, anon_vma_chain_link, anon_vma_clone,
                              get_anon_vma)
from simcore.machine import Machine
from simcore.policy.eager import Eager
from simcore.timemodel import lock_write


def ref_anon_vma_fork(m: Machine, vma, pvma, allocs=None) -> None:
    """anon_vma_fork() (mm/rmap.c) call by call."""
    if pvma.anon_vma is None:
        return
    vma.anon_vma = None                   # drop the pointer vm_area_dup() copied
    anon_vma_clone(m, vma, pvma, allocs)  # reuses an idle anon_vma, or leaves it unset
    if vma.anon_vma is not None:
        return
    av = anon_vma_alloc(m)
    av.num_active_vmas += 1
    av.root = pvma.anon_vma.root
    av.parent = pvma.anon_vma
    get_anon_vma(av.root)
    vma.anon_vma = av
    anon_vma_chain_link(m, vma, av)
    lock_write(m, av.root, 1)             # anon_vma_lock_write(anon_vma)
    av.parent.num_children += 1


class RefEager(Eager):
    anon_vma_fork = staticmethod(ref_anon_vma_fork)


def state(m: Machine) -> tuple:
    vmas = [(pid, v.id, v.vm_start, v.vm_end, None if v.anon_vma is None else v.anon_vma.id,
             [a.id for a in v.chain]) for pid, mm in sorted(m.procs.items()) for v in mm.vmas]
    avs = [(a.id, a.root.id, a.parent.id, a.refcount, a.num_children, a.num_active_vmas,
            type(a.tree).__name__, [v.id for v in a.tree], a.freed)
           for a in m.anon_vmas.values()]
    return (m.counts(), list(m.slab.live), list(m.slab.peak), list(m.slab.allocs),
            m.root_lock_write, {k: list(v) for k, v in m.locks.live.items()},
            m.locks.write_items, m.locks.max_write, vmas, avs, list(m.forks))


def lockstep(ops: list[T.Op]) -> tuple[Machine, Machine]:
    return lockstep_pair(Machine("eager", check=True), Machine(RefEager(), check=True), ops,
                         state)


def fields(av: AnonVMA) -> list:
    return [getattr(av, slot) for slot in AnonVMA.__slots__]     # every slot is set


def test_the_fields_of_a_new_anon_vma_equal_anon_vma_alloc_s():
    # anon_vma_prepare() and anon_vma_fork() set AnonVMA's fields themselves (no __init__
    # call): the same values as anon_vma_alloc() followed by the kernel's steps
    fast, _ = lockstep(parse(mmap(), touch()))
    (p,) = fast.procs[0].vmas
    root = AnonVMA(p.anon_vma.id)                 # __anon_vma_prepare(): a new root
    root.num_children = root.num_active_vmas = 1
    root.tree = list(p.anon_vma.tree)
    want = fields(root)
    want[1:3] = [p.anon_vma, p.anon_vma]          # root, parent: itself
    assert fields(p.anon_vma) == want
    fast.apply(parse(fork(0, 1))[0])
    (c,) = fast.procs[1].vmas
    child = AnonVMA(c.anon_vma.id)                # anon_vma_fork()
    child.root, child.parent, child.num_active_vmas = p.anon_vma, p.anon_vma, 1
    child.tree = [c]
    assert fields(c.anon_vma) == fields(child)
    assert [type(v) for v in fields(c.anon_vma)] == [type(v) for v in fields(child)]


def test_fork_reuse_and_generations_equal_the_reference():
    # 0 -> 1 -> 2 -> 3; 1 exits: AV1 has no VMA and one child; 2's next fork reuses AV1
    ops = parse(mmap(), touch(), fork(0, 1), fork(1, 2), fork(2, 3), {"op": "exit", "pid": 1},
                fork(2, 4))
    fast, _ = lockstep(ops)
    (g,), (child,) = fast.procs[2].vmas, fast.procs[4].vmas
    assert child.anon_vma is g.chain[1] is not g.anon_vma


def test_a_wide_fork_fan_out_equals_the_reference():
    # one parent, enough children that its anon_vma's tree becomes a dict
    ops = parse(mmap(), touch(), *(fork(0, c) for c in range(1, 25)),
                *({"op": "exit", "pid": c} for c in range(1, 25, 3)))
    fast, _ = lockstep(ops)
    assert isinstance(fast.procs[0].vmas[0].anon_vma.tree, dict)


@pytest.mark.parametrize("base", [0, 1000])
def test_random_traces_fast_path_equals_the_reference(base):
    from simcore.workloads import random_trace
    for seed in range(size(25, 250)):
        lockstep(random_trace(30_000 + base + seed, 40, exit_all=True))

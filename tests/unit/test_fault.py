"""Page faults (mm/memory.c): first touch, read of the zero page, COW after fork, reuse of
an exclusive folio.  Per page: ``.`` no entry, ``0`` zero page, ``n`` a folio mapped n times."""
from __future__ import annotations

from kstate import counts, machine, machine_state, mapcounts, step
from simcore import trace as T
from simcore.vma import F_EXCL, F_WRITE, PTE_NONE, PTE_ZERO


def vma(m, pid: int = 0):
    (v,) = m.procs[pid].vmas
    return v


def test_first_write_touch_allocates_one_folio_per_page() -> None:
    m = machine()
    # ....          mmap 4 pages: no page table, no folio
    step(m, T.Mmap(0, "a", 4))
    assert vma(m).pte is None and m.procs[0].pt_pmds == set()
    assert counts(m) == (1, 0, 0, 0)
    # 11..          write pages 0-1: anon_vma_prepare, two exclusive writable folios
    step(m, T.Touch(0, "a", 0, 2))
    assert mapcounts(m, vma(m)) == [1, 1, 0, 0]
    assert counts(m) == (1, 1, 1, 2) and len(m.procs[0].pt_pmds) == 1
    assert (vma(m).ptef[:2] == F_WRITE | F_EXCL).all() and (vma(m).pte[2:] == PTE_NONE).all()


def test_read_maps_the_zero_page_then_write_replaces_it() -> None:
    m = machine()
    # 0000          read all: the zero page, no folio, no anon_vma
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a", write=False))
    assert (vma(m).pte == PTE_ZERO).all()
    assert counts(m) == (1, 0, 0, 0)
    # 01 00 -> 0100 write page 1: a new folio replaces the zero page there
    step(m, T.Touch(0, "a", 1, 1))
    assert mapcounts(m, vma(m)) == [0, 1, 0, 0] and vma(m).pte[0] == PTE_ZERO
    assert counts(m) == (1, 1, 1, 1)


def test_cow_after_fork_copies_in_the_writer_only() -> None:
    m = machine()
    # P: 1111
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    # P: 2222  C: 2222    fork shares every folio, write-protected in both
    step(m, T.Fork(0, 1))
    assert mapcounts(m, vma(m, 0)) == mapcounts(m, vma(m, 1)) == [2, 2, 2, 2]
    assert counts(m) == (2, 2, 3, 4)
    assert not (vma(m, 0).ptef & F_WRITE).any() and not (vma(m, 1).ptef & F_WRITE).any()
    # P: 1122  C: 1122    C writes pages 0-1: wp_page_copy, two new folios for C
    step(m, T.Touch(1, "a", 0, 2))
    assert mapcounts(m, vma(m, 0)) == [1, 1, 2, 2] and mapcounts(m, vma(m, 1)) == [1, 1, 2, 2]
    assert counts(m) == (2, 2, 3, 6)
    assert vma(m, 0).pte[0] != vma(m, 1).pte[0] and vma(m, 0).pte[2] == vma(m, 1).pte[2]


def test_write_reuses_a_folio_no_one_else_maps() -> None:
    m = machine()
    # P: 2222  C: 2222
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Fork(0, 1))
    # P: 1111             C exits: the folios are P's alone again, still write-protected
    step(m, T.Exit(1))
    assert mapcounts(m, vma(m, 0)) == [1, 1, 1, 1] and not (vma(m, 0).ptef & F_WRITE).any()
    folios = vma(m, 0).pte.copy()
    # P: 1111             P writes: do_wp_page reuses every folio (no copy, same ids)
    step(m, T.Touch(0, "a"))
    assert (vma(m, 0).pte == folios).all() and (vma(m, 0).ptef & F_WRITE).all()
    assert counts(m) == (1, 1, 1, 4)


# ---- CowBatch: a run of write touches as one COW pass (Machine.run without checks) -----------
BATCH_TRACE = [
    T.Mmap(0, "a", 8), T.Mmap(0, "b", 8), T.Mmap(0, "c", 4), T.Mmap(0, "d", 6), T.Mmap(0, "e", 4),
    T.Touch(0, "a"), T.Touch(0, "b"), T.Touch(0, "c"), T.Touch(0, "d", 0, 3), T.Touch(0, "e"),
    T.Fork(0, 1),
    # one run: all-shared ranges (whole and part of a VMA), a VMA half without entries (the
    # general path in its place), a second touch of one VMA (the run ends before it)
    T.Touch(1, "a"), T.Touch(1, "b", 2, 3), T.Touch(1, "d"), T.Touch(1, "c"), T.Touch(1, "a", 0, 2),
    T.Touch(1, "c", write=False), T.Touch(1, "b"),
    # the parent writes what the child copied: its folios are its own again (reuse), and
    # what the child did not copy is still shared (a COW copy in the same run)
    T.Touch(0, "a"), T.Touch(0, "b"), T.Touch(0, "c"),
    # freed folios: the next copies reuse rows from the free stack, one range after another
    T.Munmap(0, "e"), T.Exit(1), T.Fork(0, 2),
    T.Touch(2, "b"), T.Touch(2, "a", 4, 4), T.Touch(2, "c"),
    # a grandchild: what it inherits from a fork child (lazy: a TREE_PARENT VMA's own
    # anon_vma made at this fork, the grandchild's VMAs TREE_PARENT of it)
    T.Fork(2, 3), T.Touch(3, "a"), T.Touch(3, "d", 0, 2), T.Touch(3, "b"),
    T.Exit(3), T.Exit(2), T.Exit(0),
]

# policies whose batched runs must leave the state of one touch after another: name, variant
# knobs, and whether a COW run goes as one pass (lazy, child_cow=parent: its fork children
# have no anon_vma, yet their COW faults only name the parent's; own/vma: never batched)
BATCH_POLICIES = [("eager", {}, True), ("lazy", {}, True), ("lazy", {"child_cow": "own"}, False),
                  ("lazy", {"child_cow": "vma"}, False)]


def test_cow_batch_equals_one_touch_after_another(monkeypatch) -> None:
    """Machine.run() (runs of touches batched) leaves exactly the state of Machine.apply() of
    each op, folio ids included, under eager and lazy (each child_cow variant); the batched
    path is taken where the policy allows it (Policy.cow_batchable), and only there."""
    from simcore.fault import CowBatch
    from simcore.machine import Machine
    from simcore.policy import make_policy

    copies: list[int] = []
    real = CowBatch._copy
    monkeypatch.setattr(CowBatch, "_copy", lambda self, run, old: (copies.append(len(run)),
                                                                    real(self, run, old)))
    for name, variant, batched in BATCH_POLICIES:
        copies.clear()
        for upto in range(len(BATCH_TRACE) + 1):     # the state after every prefix
            one = Machine(make_policy(name, **variant))
            for op in BATCH_TRACE[:upto]:
                one.apply(op)
            run = Machine(make_policy(name, **variant)).run(BATCH_TRACE[:upto])
            assert machine_state(run) == machine_state(one), (name, variant, upto)
        if batched:                                   # some run of ranges went as one pass
            assert copies and max(copies) >= 2, (name, variant)
        else:
            assert copies == [], (name, variant)


def test_batched_runs_of_random_traces_equal_one_op_after_another(monkeypatch) -> None:
    """Machine.run() -- COW runs batched, first writes of fresh VMAs faulted by
    CowBatch.add() itself -- leaves the state of Machine.apply() of each op, after prefixes
    of random traces, under each policy (those without batch_cow_faults: the plain loop)."""
    from simcore import fault
    from simcore.machine import Machine
    from simcore.policy import make_policy
    from simcore.workloads import random_trace

    firsts: list[int] = []                           # first writes faulted by add()
    in_add: list[bool] = []
    real_add, real_fault = fault.CowBatch.add, fault._fault_new_ptes

    def add(self, op):
        in_add.append(True)
        try:
            return real_add(self, op)
        finally:
            in_add.pop()

    def first_write(m, vma, lo, hi):
        if in_add:
            firsts.append(hi - lo)
        real_fault(m, vma, lo, hi)

    monkeypatch.setattr(fault.CowBatch, "add", add)
    monkeypatch.setattr(fault, "_fault_new_ptes", first_write)
    policies = [("eager", {})] + [("lazy", {"child_cow": c}) for c in ("parent", "own", "vma")]
    for seed in range(8):
        ops = random_trace(400 + seed, 80, exit_all=True)
        for name, variant in policies:
            for upto in range(10, len(ops) + 1, 10):
                one = Machine(make_policy(name, **variant))
                for op in ops[:upto]:
                    one.apply(op)
                run = Machine(make_policy(name, **variant)).run(ops[:upto])
                assert machine_state(run) == machine_state(one), (seed, name, variant, upto)
    assert firsts and max(firsts) > 1                 # first writes went through add()


def test_alloc_few_equals_alloc() -> None:
    """FolioTable.alloc_few() gives the rows, ids and columns alloc() gives: fresh rows, rows
    from the free stack, both, and a table that grows."""
    import random

    import numpy as np

    from simcore.folio import FolioTable

    rng = random.Random(5)
    for _ in range(200):
        tables = [FolioTable(capacity=4), FolioTable(capacity=4)]
        for _ in range(rng.randrange(1, 12)):          # the same history on both tables
            n, index, target = rng.randrange(1, 6), rng.randrange(100), rng.randrange(50)
            kind = rng.randrange(3)
            if rng.random() < 0.5:
                got = [t.alloc(target, kind, np.arange(index, index + n)) for t in tables]
            else:
                got = [tables[0].alloc(target, kind, np.arange(index, index + n)),
                       np.array(tables[1].alloc_few(target, kind, index, n))]
            assert got[0].tolist() == got[1].tolist()
            if rng.random() < 0.5:                     # free some: mapcount 1 each, distinct
                dead = np.array(rng.sample(got[0].tolist(), rng.randrange(len(got[0]) + 1)),
                                np.int32)
                for t in tables:
                    t.put(dead.copy())
        one, few = tables
        for col in ("mapping", "mkind", "index", "nr", "mapcount"):
            assert getattr(one, col)[:one.top].tolist() == getattr(few, col)[:few.top].tolist()
        assert (one.top, one.live, one.free[:one.nfree].tolist()) == \
               (few.top, few.live, few.free[:few.nfree].tolist())


def test_few_page_first_writes_equal_the_general_path(monkeypatch) -> None:
    """_fault_new_ptes() of a few pages (entry by entry, FolioTable.alloc_few()) leaves the
    state the general path (new_anon_folios(), array by array) leaves, after every op of
    random traces, under each policy."""
    from simcore import fault
    from simcore.folio import FolioTable
    from simcore.machine import Machine
    from simcore.policy import make_policy
    from simcore.workloads import random_trace

    few: list[int] = []
    real = FolioTable.alloc_few
    monkeypatch.setattr(FolioTable, "alloc_few", lambda self, *a: (few.append(a[-1]),
                                                                   real(self, *a))[1])
    policies = [("eager", {})] + [("lazy", {"child_cow": c}) for c in ("parent", "own", "vma")]
    policies.append(("cow_context", {}))
    for seed in range(12):
        ops = random_trace(200 + seed, 40, exit_all=True)
        for name, variant in policies:
            fast, general = Machine(make_policy(name, **variant)), Machine(make_policy(name, **variant))
            for op in ops:
                fast.apply(op)
                with monkeypatch.context() as mp:
                    mp.setattr(fault, "FEW_PAGES", 0)   # every first write: the general path
                    general.apply(op)
                assert machine_state(fast) == machine_state(general), (seed, name, variant, op)
    assert few and max(few) > 1                         # the few-page path ran, multi-page too


def test_cow_batch_stops_at_a_bad_touch_with_the_run_before_it_done() -> None:
    """A touch the layout rejects raises its TraceError after the touches before it."""
    import pytest
    from simcore.machine import Machine

    ops = [T.Mmap(0, "a", 4), T.Mmap(0, "b", 4), T.Touch(0, "a"), T.Touch(0, "b"), T.Fork(0, 1),
           T.Touch(1, "a"), T.Touch(1, "zz"), T.Touch(1, "b")]
    m = Machine("eager")
    with pytest.raises(T.TraceError, match="unknown region 'zz'"):
        m.run(ops)
    assert m.ops_done == 6 and m.faults["cow"] == 4


def test_cow_batch_is_done_before_a_bad_trace_line() -> None:
    """A trace line that does not parse, after queued touches: they are done before the
    TraceError, as one op after another would have done them."""
    import pytest
    from simcore.machine import Machine

    lines = [T.dumps([op]) for op in (T.Mmap(0, "a", 4), T.Mmap(0, "b", 4), T.Touch(0, "a"),
                                      T.Touch(0, "b"), T.Fork(0, 1), T.Touch(1, "a"),
                                      T.Touch(1, "b"))] + ["{not json\n"]
    m = Machine("eager")
    with pytest.raises(T.TraceError, match="line 8: not valid JSON"):
        m.run(T.parse_lines(lines))
    assert m.ops_done == 7 and m.faults["cow"] == 8

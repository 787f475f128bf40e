"""anon_vma and anon_vma_chain (mm/rmap.c): anon_vma_prepare, anon_vma_clone via fork,
reuse of an anon_vma without active VMAs, unlink at exit.

Process trees are drawn as ``P(AV1)`` = process P whose VMA's anon_vma is AV1; a chain
``[AV1 AV2]`` lists the anon_vmas a VMA links to (oldest first)."""
from __future__ import annotations

from kstate import counts, machine, step
from simcore import trace as T


def chain(m, pid: int) -> list:
    (vma,) = m.procs[pid].vmas
    return list(vma.chain)


def test_anon_vma_prepare_at_first_write_and_find_mergeable() -> None:
    m = machine()
    # 01234567
    # AAAA          mmap a (4 pages): no anon_vma until a fault needs one
    step(m, T.Mmap(0, "a", 4))
    assert counts(m) == (1, 0, 0, 0)
    # AAAA          read fault: the zero page, still no anon_vma
    step(m, T.Touch(0, "a", write=False))
    assert counts(m) == (1, 0, 0, 0)
    # AAAA          write fault: anon_vma_prepare allocates AV1 and links one AVC
    step(m, T.Touch(0, "a", 0, 2))
    a = m.procs[0].vmas[0]
    assert counts(m) == (1, 1, 1, 2)
    assert a.anon_vma.root is a.anon_vma and a.anon_vma.num_children == 1  # self-parent
    assert a.anon_vma.num_active_vmas == 1
    # AAAA          a second write fault in the same VMA: prepared already
    step(m, T.Touch(0, "a", 2, 2))
    assert counts(m) == (1, 1, 1, 4)
    # AAAABBBB      b after a, rwx: flags differ (no VMA merge), but the anon_vma is
    #               compatible: find_mergeable_anon_vma reuses AV1 (+1 AVC, no anon_vma)
    step(m, T.Mmap(0, "b", 4, prot="rwx", after="a"), T.Touch(0, "b"))
    a, b = m.procs[0].vmas
    assert counts(m) == (2, 1, 2, 8)
    assert b.anon_vma is a.anon_vma and a.anon_vma.num_active_vmas == 2


def test_fork_clones_the_chain_and_adds_an_anon_vma() -> None:
    m = machine()
    # P(AV1)
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    assert counts(m) == (1, 1, 1, 4)
    # P(AV1) -> C(AV2)      anon_vma_fork: C links [AV1 AV2]
    step(m, T.Fork(0, 1))
    av1, av2 = chain(m, 1)
    assert counts(m) == (2, 2, 3, 4)
    assert chain(m, 0) == [av1] and m.procs[1].vmas[0].anon_vma is av2
    assert (av2.parent, av2.root) == (av1, av1) and av1.num_children == 2 and av1.refcount == 2
    # P(AV1) -> C(AV2) -> G(AV3)     G links [AV1 AV2 AV3]
    step(m, T.Fork(1, 2))
    assert counts(m) == (3, 3, 6, 4)
    assert chain(m, 2)[:2] == [av1, av2] and chain(m, 2)[2].parent is av2
    # the child's write faults copy folios (COW), its chain does not change
    step(m, T.Touch(1, "a"))
    assert counts(m) == (3, 3, 6, 8)


def test_fork_reuses_an_anon_vma_with_no_active_vma_and_one_child() -> None:
    m = machine()
    # P(AV1) -> C(AV2) -> G1(AV3)
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Fork(0, 1), T.Fork(1, 2))
    av2 = m.procs[1].vmas[0].anon_vma
    assert counts(m) == (3, 3, 6, 4)
    # C exits: AV2 stays (G1's AVC is in its tree) with no active VMA and one child (AV3)
    step(m, T.Exit(1))
    assert counts(m) == (2, 3, 4, 4)
    assert av2.num_active_vmas == 0 and av2.num_children == 1
    # G1 forks G2: anon_vma_clone reuses AV2 for G2 (no new anon_vma), +3 AVCs
    step(m, T.Fork(2, 3))
    assert counts(m) == (3, 3, 7, 4)
    assert m.procs[3].vmas[0].anon_vma is av2 and av2.num_active_vmas == 1


def test_unlink_frees_an_anon_vma_when_its_tree_empties() -> None:
    m = machine()
    # P(AV1) -> C(AV2)
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Fork(0, 1))
    av1 = m.procs[0].vmas[0].anon_vma
    assert counts(m) == (2, 2, 3, 4)
    # P exits: its AVC goes; AV1 stays (C's AVC is still in its tree)
    step(m, T.Exit(0))
    assert counts(m) == (1, 2, 2, 4)
    assert not av1.freed and len(av1.tree) == 1
    # C exits: every AVC, both anon_vmas (AV2 first, then its root AV1) and every folio
    step(m, T.Exit(1))
    assert counts(m) == (0, 0, 0, 0)
    assert av1.freed and not m.anon_vmas


def test_unlink_from_the_middle_keeps_the_tree_in_link_order() -> None:
    m = machine()
    # P(AV1) -> C1, C2, C3: AV1's tree holds P's AVC, then one per child, in fork order
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Fork(0, 1), T.Fork(0, 2), T.Fork(0, 3))
    av1 = m.procs[0].vmas[0].anon_vma
    assert [vma.mm.pid for vma in av1.tree] == [0, 1, 2, 3]
    assert counts(m) == (4, 4, 7, 4)
    # C2 exits: only its AVC leaves AV1's tree, the others keep their order (rmap walks
    # visit the tree in that order)
    step(m, T.Exit(2))
    assert [vma.mm.pid for vma in av1.tree] == [0, 1, 3]
    assert counts(m) == (3, 3, 5, 4)
    # P exits, then C1: C3's AVC is the last one left
    step(m, T.Exit(0), T.Exit(1))
    assert [vma.mm.pid for vma in av1.tree] == [3]
    assert not av1.freed and counts(m) == (1, 2, 2, 4)


def test_a_tree_past_tree_list_max_keeps_its_link_order() -> None:
    from simcore.anon_vma import TREE_LIST_MAX
    m = machine()
    # P(AV1) -> C1 .. Cn, n = TREE_LIST_MAX + 2: AV1's tree outgrows its list
    n = TREE_LIST_MAX + 2
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), *(T.Fork(0, c) for c in range(1, n + 1)))
    av1 = m.procs[0].vmas[0].anon_vma
    assert [vma.mm.pid for vma in av1.tree] == list(range(n + 1))
    assert counts(m) == (n + 1, n + 1, 2 * n + 1, 4)
    # C2 and the last child exit: their AVCs leave, the rest keep their order
    step(m, T.Exit(2), T.Exit(n))
    assert [vma.mm.pid for vma in av1.tree] == [0, 1, *range(3, n)]
    assert counts(m) == (n - 1, n - 1, 2 * n - 3, 4)


def test_an_avc_is_a_chain_entry_and_a_tree_entry() -> None:
    m = machine()
    # P(AV1) -> C(AV2): C's two AVCs are AV1 and AV2 on its chain and C in both trees
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"), T.Fork(0, 1))
    (p,), (c,) = m.procs[0].vmas, m.procs[1].vmas
    av1, av2 = c.chain
    assert p.chain == (av1,) and list(av1.tree) == [p, c] and list(av2.tree) == [c]
    assert counts(m) == (2, 2, 3, 4)
    # the unlink of an entry of a long list is by identity: no VMA or anon_vma defines ==
    from simcore.anon_vma import AnonVMA
    from simcore.vma import VMA
    for cls in (VMA, AnonVMA):
        assert cls.__eq__ is object.__eq__ and cls.__hash__ is object.__hash__


def test_linking_a_vma_twice_to_one_anon_vma_breaks_avc_once() -> None:
    import pytest

    from simcore.anon_vma import anon_vma_chain_link
    from simcore.check import check_machine
    from simcore.errors import InvariantError
    m = machine()
    # AAAA      P(AV1): one AVC; the kernel never links a VMA to AV1 again (anon_vma_clone()
    #           fills an empty chain, anon_vma_fork() adds a new anon_vma, anon_vma_prepare()
    #           only a VMA without one): a second link is a model bug, named avc-once
    step(m, T.Mmap(0, "a", 4), T.Touch(0, "a"))
    (a,) = m.procs[0].vmas
    anon_vma_chain_link(m, a, a.anon_vma)
    assert counts(m) == (1, 1, 2, 4)
    with pytest.raises(InvariantError) as exc:
        check_machine(m)
    assert exc.value.invariant == "avc-once"

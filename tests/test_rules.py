"""Kernel rules exercised on the model's internals with plain asserts (like tools/testing/vma)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import fork, mmap, touch
from simcore import trace
from simcore.check import check_layout
from simcore.errors import LayoutMismatch
from simcore.layout import UNMAPPED, Region
from simcore.machine import Machine


def sim(*objs) -> Machine:
    return Machine("eager", check=True).run(trace.parse_lines([json.dumps(o) for o in objs]))


def the_vma(m: Machine, pid: int):
    (vma,) = m.procs[pid].vmas
    return vma


def test_anon_vma_prepare_new_root_counts_itself():
    m = sim(mmap(), touch())
    av = the_vma(m, 0).anon_vma
    assert av.root is av and av.parent is av
    assert (av.refcount, av.num_children, av.num_active_vmas, len(av.tree)) == (1, 1, 1, 1)


def test_fork_links_child_into_parent_tree_and_pins_root():
    m = sim(mmap(), touch(), fork(0, 1))
    p, c = the_vma(m, 0), the_vma(m, 1)
    root, leaf = p.anon_vma, c.anon_vma
    assert c.chain == (root, leaf)                               # oldest first
    assert leaf.parent is root and leaf.root is root
    assert root.refcount == 2 and root.num_children == 2 and len(root.tree) == 2


def test_reuse_after_intermediate_exit_picks_the_dead_generation():
    # P -> C -> G; C exits; G forks GG: GG adopts C's anon_vma (R9, S15b)
    m = sim(mmap(), touch(), fork(0, 1), fork(1, 2), {"op": "exit", "pid": 1}, fork(2, 3))
    g, gg = the_vma(m, 2), the_vma(m, 3)
    avs = list(gg.chain)
    assert len(avs) == 3 and gg.anon_vma is avs[1]
    assert avs[1] is g.chain[1] and avs[1].num_active_vmas == 1


def test_new_folios_point_at_the_faulting_vmas_own_anon_vma():
    m = sim(mmap(pages=2), touch(), fork(0, 1), touch(1, first=0, count=1))
    c = the_vma(m, 1)
    f = m.folios
    copied, shared = int(c.pte[0]), int(c.pte[1])
    assert f.mapping[copied] == c.anon_vma.id and f.mapcount[copied] == 1
    assert f.mapping[shared] == the_vma(m, 0).anon_vma.id and f.mapcount[shared] == 2


def test_exclusive_reuse_moves_the_folio_to_the_writer():
    # the child copies page 0; the parent is then the only mapper and reuses it in place
    m = sim(mmap(pages=1), touch(), fork(0, 1), touch(1), touch(0))
    p = the_vma(m, 0)
    assert m.folios.mapping[int(p.pte[0])] == p.anon_vma.id and m.folios.live == 2


def test_split_shares_the_anon_vma_and_clones_the_chain():
    m = sim(mmap(pages=16), touch(), {"op": "mprotect", "pid": 0, "region": "a",
                                      "first": 4, "count": 4, "prot": "r"})
    vmas = m.procs[0].vmas
    assert len(vmas) == 3 and len({v.anon_vma.id for v in vmas}) == 1
    assert [v.vm_pgoff - vmas[0].vm_pgoff for v in vmas] == [0, 4, 8]
    assert vmas[0].anon_vma.num_active_vmas == 3


def test_thp_read_fault_maps_huge_zero_page_and_prepares_anon_vma():
    m = sim(mmap(pages=1024), {"op": "madvise", "pid": 0, "region": "a", "advice": "hugepage"},
            touch(first=3, count=1, write=False))
    v = the_vma(m, 0)
    assert v.anon_vma is not None and m.folios.live == 0
    assert not m.procs[0].pt_pmds, "a PMD mapping has no PTE table"


def _layout(m: Machine, pid: int = 0) -> dict[str, list[int]]:
    return {name: r.prot.tolist() for name, r in m.layout.regions[pid].items()}


def test_munmap_takes_addresses_and_removes_a_region_in_a_hole():
    # z|a a      ->  munmap a[0]  ->  z|. a  ->  mmap c after z  ->  z|c a
    # munmap a (both pages) also unmaps c: do_vmi_munmap() works on [start, end), not names
    m = sim(mmap(region="z", pages=1), mmap(region="a", pages=2, after="z"),
            {"op": "munmap", "pid": 0, "region": "a", "first": 0, "count": 1},
            mmap(region="c", pages=1, after="z"), touch(region="c"),
            touch(region="a", first=1, count=1))
    assert _layout(m) == {"z": [3], "a": [-1, 3], "c": [3]}
    assert len(the_vma(m, 0).chain) == 1 and the_vma(m, 0).pages == 3   # z, c and a merged
    m.apply(trace.parse_op({"op": "munmap", "pid": 0, "region": "a"}))
    assert _layout(m) == {"z": [3]}          # c is gone with a, its name free again
    assert [v.pages for v in m.procs[0].vmas] == [1]
    with pytest.raises(trace.TraceError, match="unknown region 'c'"):
        m.apply(trace.parse_op({"op": "touch", "pid": 0, "region": "c"}))


def test_checked_mode_names_a_layout_that_has_left_the_mm():
    m = sim(mmap(region="z", pages=2), touch(region="z"))
    prot = m.layout.regions[0]["z"].prot.copy()
    prot[1] = UNMAPPED                                     # the layout forgets a mapped page
    m.layout.regions[0].replace("z", prot)                 # (Regions are values: replaced)
    with pytest.raises(LayoutMismatch, match=r"page 0x[0-9a-f]+ is unmapped in the layout but "
                                             r"mapped with protection 0x3 in the mm"):
        check_layout(m)
    with pytest.raises(LayoutMismatch, match=r"invariant layout violated after line"):
        m.apply(trace.parse_op({"op": "touch", "pid": 0, "region": "z", "count": 1}, 9))


def test_unchecked_touch_where_the_mm_has_no_vma_is_a_layout_mismatch():
    # the AttributeError of issue 11 becomes a named error, checked mode or not
    m = Machine("eager").run(trace.parse_lines([json.dumps(mmap(region="z", pages=1))]))
    z = m.layout.regions[0]["z"]
    m.layout.regions[0]["ghost"] = Region(z.end, np.full(1, 3, np.int8))   # no VMA behind it
    with pytest.raises(LayoutMismatch, match=r"no VMA at page 0x[0-9a-f]+, which the trace "
                                             r"layout holds mapped"):
        m.apply(trace.parse_op({"op": "touch", "pid": 0, "region": "ghost"}, 2))

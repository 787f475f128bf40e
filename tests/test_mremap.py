"""mremap (mm/mremap.c) in the style of tools/testing/vma: a small layout drawn one character
per page after every step ('A', 'B', ... one letter per VMA in address order, '.' a hole),
with the vm_area_struct / anon_vma / anon_vma_chain counts beside it."""
from __future__ import annotations

import json
import string

from conftest import fork, mmap, touch
from simcore import trace
from simcore.machine import Machine


def draw(m: Machine, pid: int = 0) -> str:
    """The process's VMAs from its first page to its last."""
    vmas = m.procs[pid].vmas
    out, pos = [], vmas[0].vm_start
    for letter, vma in zip(string.ascii_uppercase, vmas):
        out.append("." * (vma.vm_start - pos) + letter * vma.pages)
        pos = vma.vm_end
    return "".join(out)


def counts(m: Machine) -> tuple[int, int, int]:
    c = m.counts()
    return c["vm_area_struct"], c["anon_vma"], c["anon_vma_chain"]


class Steps:
    """Apply ops one by one; each step states the layout and counts it leads to."""

    def __init__(self) -> None:
        self.m = Machine("eager", check=True)

    def __call__(self, obj: dict, layout: str, expect: tuple[int, int, int], pid: int = 0) -> None:
        self.m.apply(next(trace.parse_lines([json.dumps(obj)])))
        assert (draw(self.m, pid), counts(self.m)) == (layout, expect), obj


def hole_between(step: Steps, a_touched: bool, b_touched: bool) -> None:
    """a (4 pages), an 8-page hole, b (4 pages); a `none` filler keeps them apart."""
    step(mmap(region="a", pages=4), "AAAA", (1, 0, 0))
    if a_touched:
        step(touch(region="a"), "AAAA", (1, 1, 1))
    step(mmap(region="h", pages=8, prot="none", after="a"), "AAAABBBBBBBB", (2, int(a_touched),
                                                                             int(a_touched)))
    step(mmap(region="b", pages=4, after="h"), "AAAABBBBBBBBCCCC", (3, int(a_touched),
                                                                     int(a_touched)))
    n = int(a_touched) + int(b_touched)
    if b_touched:
        step(touch(region="b"), "AAAABBBBBBBBCCCC", (3, n, n))
    step({"op": "munmap", "pid": 0, "region": "h"}, "AAAA........BBBB", (2, n, n))


def test_growth_short_of_the_next_vma_extends_alone():
    step = Steps()
    hole_between(step, a_touched=True, b_touched=False)
    step({"op": "mremap", "pid": 0, "region": "a", "pages": 8}, "AAAAAAAA....BBBB", (2, 1, 1))


def test_growth_reaching_an_unfaulted_next_vma_merges():
    # vma_merge_extend(): R15 case 1 (next has no anon_vma, the growing VMA has one)
    step = Steps()
    hole_between(step, a_touched=True, b_touched=False)
    step({"op": "mremap", "pid": 0, "region": "a", "pages": 12}, "AAAAAAAAAAAAAAAA", (1, 1, 1))


def test_growth_of_an_unfaulted_vma_into_a_faulted_one_takes_its_anon_vma():
    # R15 case 2: vma_expand() -> dup_anon_vma(): +1 AVC for a, -1 AVC with b
    step = Steps()
    hole_between(step, a_touched=False, b_touched=True)
    b_anon = step.m.procs[0].vmas[1].anon_vma
    step({"op": "mremap", "pid": 0, "region": "a", "pages": 12}, "AAAAAAAAAAAAAAAA", (1, 1, 1))
    assert step.m.procs[0].vmas[0].anon_vma is b_anon


def test_growth_into_a_vma_with_another_anon_vma_does_not_merge():
    step = Steps()                                  # R15 case 3: two different anon_vmas
    hole_between(step, a_touched=True, b_touched=True)
    step({"op": "mremap", "pid": 0, "region": "a", "pages": 12}, "AAAAAAAAAAAABBBB", (2, 2, 2))


def test_growth_in_a_fork_child_into_its_faulted_next_is_refused():
    step = Steps()                                  # vma_is_fork_child(next): L = 2
    hole_between(step, a_touched=False, b_touched=True)
    step(fork(0, 1), "AAAA........BBBB", (4, 2, 3), pid=1)
    step({"op": "mremap", "pid": 1, "region": "a", "pages": 12}, "AAAAAAAAAAAABBBB", (4, 2, 3),
         pid=1)


def test_growth_of_a_split_region_extends_its_last_vma():
    step = Steps()
    hole_between(step, a_touched=True, b_touched=False)
    step({"op": "mprotect", "pid": 0, "region": "a", "first": 0, "count": 2, "prot": "r"},
         "AABB........CCCC", (3, 1, 2))
    step({"op": "mremap", "pid": 0, "region": "a", "pages": 12}, "AABBBBBBBBBBBBBB", (2, 1, 2))


def test_shrink_unmaps_the_tail_across_vmas():
    step = Steps()                                  # shrink_vma() -> do_vmi_munmap()
    step(mmap(region="a", pages=8), "AAAAAAAA", (1, 0, 0))
    step(touch(region="a"), "AAAAAAAA", (1, 1, 1))
    step({"op": "mprotect", "pid": 0, "region": "a", "first": 2, "count": 2, "prot": "r"},
         "AABBCCCC", (3, 1, 3))
    step({"op": "mremap", "pid": 0, "region": "a", "pages": 3}, "AAB", (2, 1, 2))


def test_move_across_vmas_moves_each_and_splits_the_ends():
    step = Steps()                                  # remap_move(): one move_vma() per VMA
    step(mmap(region="a", pages=8), "AAAAAAAA", (1, 0, 0))
    step(touch(region="a"), "AAAAAAAA", (1, 1, 1))
    step({"op": "mprotect", "pid": 0, "region": "a", "first": 2, "count": 2, "prot": "r"},
         "AABBCCCC", (3, 1, 3))
    step({"op": "mremap", "pid": 0, "region": "a", "first": 1, "count": 6, "to": "b",
          "after": "a"}, "A......BCDDEEE", (5, 1, 5))


def test_move_keeps_the_gaps_between_vmas():
    step = Steps()
    step(mmap(region="a", pages=8), "AAAAAAAA", (1, 0, 0))
    step({"op": "munmap", "pid": 0, "region": "a", "first": 3, "count": 2}, "AAA..BBB", (2, 0, 0))
    step({"op": "mremap", "pid": 0, "region": "a", "first": 1, "count": 7, "to": "b",
          "after": "a"}, "A.......BB..CCC", (3, 0, 0))

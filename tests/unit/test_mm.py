"""struct mm_struct (simcore.mm.MM, the maple tree as a sorted list): vma_lookup, find_vma,
find_vma_prev, neighbours (vma_prev/vma_next), vmas_in_range, insert/remove ordering.

    0123456789abcdef
    AAA..BBBB...CC..
"""
from __future__ import annotations

import pytest

from simcore.errors import InvariantError
from simcore.mm import MM
from simcore.vma import VMA


def mm_abc() -> tuple[MM, VMA, VMA, VMA]:
    mm = MM(0)
    a, b, c = VMA(1, mm, 0, 3, 0, 0, None), VMA(2, mm, 5, 9, 5, 0, None), \
        VMA(3, mm, 12, 14, 12, 0, None)
    for v in (c, a, b):                          # any insertion order: kept sorted
        mm.insert(v)
    return mm, a, b, c


def test_lookup_at_every_page() -> None:
    mm, a, b, c = mm_abc()
    assert mm.vmas == [a, b, c] and len(mm) == 3
    layout = "AAA..BBBB...CC.."
    names = {a: "A", b: "B", c: "C", None: "."}
    assert "".join(names[mm.vma_lookup(i)] for i in range(16)) == layout
    # find_vma: the first VMA ending above addr (it may start above)
    assert "".join(names[mm.find_vma(i)] for i in range(16)) == "AAABBBBBBCCCCC.."
    # find_vma_prev: the last VMA ending at or below addr
    assert "".join(names[mm.find_vma_prev(i)] for i in range(16)) == "...AAAAAABBBBBCC"
    assert (mm.neighbours(a)[0], mm.neighbours(b)[0], mm.neighbours(b)[1], mm.neighbours(c)[1]) \
        == (None, a, c, None)
    assert [mm.neighbours(v) for v in (a, b, c)] == [(None, b), (a, c), (b, None)]


def test_vmas_in_range_overlapping_only() -> None:
    mm, a, b, c = mm_abc()
    assert mm.vmas_in_range(0, 16) == [a, b, c]
    assert mm.vmas_in_range(3, 5) == []           # the hole between A and B
    assert mm.vmas_in_range(2, 6) == [a, b]       # last page of A, first of B
    assert mm.vmas_in_range(9, 12) == []          # B ends at 9, C starts at 12
    assert mm.vmas_in_range(8, 13) == [b, c]


def test_insert_refuses_overlap_and_remove_keeps_order() -> None:
    mm, a, b, c = mm_abc()
    # AAA..BBBB...CC..   + X at 8-10 overlaps B's last page
    with pytest.raises(InvariantError, match="overlap"):
        mm.insert(VMA(4, mm, 8, 10, 8, 0, None))
    assert mm.vmas == [a, b, c]
    # AAA..BBBBXXXCC..   X fills the hole exactly
    x = VMA(5, mm, 9, 12, 9, 0, None)
    mm.insert(x)
    assert mm.vmas == [a, b, x, c] and mm.starts == [0, 5, 9, 12]
    # AAA......XXXCC..   remove B
    mm.remove(b)
    assert mm.vmas == [a, x, c] and mm.starts == [0, 9, 12] and mm.vma_lookup(6) is None
    with pytest.raises(InvariantError):
        mm.remove(b)                              # not in the tree any more


def test_reindex_after_start_moves_either_way() -> None:
    mm, a, b, c = mm_abc()
    # AAA..BBBB...CC..  -> AAA...BBB...CC..  B's start grows (a split gave its head away)
    b.vm_start = 6
    mm.reindex(b)
    assert mm.starts == [0, 6, 12] and mm.vma_lookup(5) is None and mm.vma_lookup(6) is b
    # AAA..BBBB...CC..  -> AAA.BBBBB...CC..  B extends down (a merge), then C down to 10
    b.vm_start = 4
    mm.reindex(b)
    c.vm_start = 10
    mm.reindex(c)
    assert mm.starts == [0, 4, 10] and mm.vmas == [a, b, c]
    assert "".join("ABC"[mm.vmas.index(v)] if v else "." for v in
                   (mm.vma_lookup(i) for i in range(16))) == "AAA.BBBBB.CCCC.."


def test_insert_above_every_vma_appends() -> None:
    mm, a, b, c = mm_abc()
    # AAA..BBBB...CC..D   D starts right at C's end, E far above
    d, e = VMA(4, mm, 14, 16, 14, 0, None), VMA(5, mm, 40, 41, 40, 0, None)
    mm.insert(d)
    mm.insert(e)
    assert mm.vmas == [a, b, c, d, e] and mm.starts == [0, 5, 12, 14, 40]
    with pytest.raises(InvariantError, match="overlap"):
        mm.insert(VMA(6, mm, 40, 42, 40, 0, None))

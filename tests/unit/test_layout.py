"""simcore.layout.Layout: region names -> pages, and trace validity.  Slots of PMD size
(8 pages here) followed by a gap of 16 pages; ``after`` places a region right after another.

    slot 0          slot 1 (after the 16-page gap)
    aaaaaBBB        cccc
"""
from __future__ import annotations

import pytest

from simcore import trace as T
from simcore.layout import ARENA_BASE, PROT, UNMAPPED, Layout, Span


def lay() -> Layout:
    return Layout(pmd_pages=8, gap_pages=16)


def test_slots_are_pmd_aligned_and_after_is_adjacent() -> None:
    lt = lay()
    assert lt.mmap(T.Mmap(0, "a", 5)) == Span(ARENA_BASE, 5)
    assert lt.mmap(T.Mmap(0, "b", 3, after="a")) == Span(ARENA_BASE + 5, 3)    # aaaaaBBB
    c = lt.mmap(T.Mmap(0, "c", 4))
    assert c == Span(ARENA_BASE + 8 + 16, 4) and c.start % 8 == 0
    assert sorted(lt.regions[0]) == ["a", "b", "c"] and lt.alive() == [0]


def test_ranges_resolve_and_invalid_ops_name_the_line() -> None:
    lt = lay()
    lt.mmap(T.Mmap(0, "a", 8, prot="r"))
    assert lt.access(T.Touch(0, "a", 2, 3, write=False)) == Span(ARENA_BASE + 2, 3)
    with pytest.raises(T.TraceError, match=r"line 7: touch: write to pages that are not writable"):
        lt.access(T.Touch(0, "a", write=True, line=7))
    with pytest.raises(T.TraceError, match=r"line 8: range first=6 count=4 is outside region"):
        lt.access(T.Touch(0, "a", 6, 4, write=False, line=8))
    with pytest.raises(T.TraceError, match=r"unknown region 'zz'"):
        lt.access(T.Touch(0, "zz"))
    with pytest.raises(T.TraceError, match=r"unknown pid 3"):
        lt.access(T.Touch(3, "a"))
    with pytest.raises(T.TraceError, match=r"region 'a' already exists"):
        lt.mmap(T.Mmap(0, "a", 1))


def test_munmap_leaves_holes_and_drops_an_empty_region() -> None:
    lt = lay()
    lt.mmap(T.Mmap(0, "a", 8))
    # aa...aaa      munmap 2-4
    assert lt.munmap(T.Munmap(0, "a", 2, 3)) == Span(ARENA_BASE + 2, 3)
    prot = lt.regions[0]["a"].prot
    assert prot.tolist() == [PROT["rw"]] * 2 + [UNMAPPED] * 3 + [PROT["rw"]] * 3
    with pytest.raises(T.TraceError, match="covers unmapped pages"):
        lt.access(T.Touch(0, "a", 1, 2))
    # bb            a region placed after a fully unmapped page is refused
    lt.munmap(T.Munmap(0, "a", 7, 1))
    with pytest.raises(T.TraceError, match="last page of 'a' is not mapped"):
        lt.mmap(T.Mmap(0, "b", 2, after="a"))
    # ........      munmap the rest: the name is gone
    lt.munmap(T.Munmap(0, "a", 0, 7))
    assert "a" not in lt.regions[0]


def test_fork_exec_exit_and_dontfork() -> None:
    lt = lay()
    lt.mmap(T.Mmap(0, "a", 4))
    lt.mmap(T.Mmap(0, "b", 4))
    lt.access(T.Madvise(0, "b", "dontfork", 0, 2))
    # P: aaaa bbbb (b 0-1 dontfork)  ->  C: aaaa ..bb
    lt.fork(T.Fork(0, 1))
    assert sorted(lt.regions[1]) == ["a", "b"]
    assert (lt.regions[1]["b"].prot[:2] == UNMAPPED).all() and lt.regions[1]["a"].start == \
        lt.regions[0]["a"].start
    with pytest.raises(T.TraceError, match="child pid 1 is already used"):
        lt.fork(T.Fork(0, 1))
    lt.exec(T.Exec(1))                       # exec: an empty address space, same pid
    assert lt.regions[1] == {} and lt.alive() == [0, 1]
    lt.exit(T.Exit(0))
    assert lt.alive() == [1]
    with pytest.raises(T.TraceError, match="pid 0 has exited"):
        lt.mmap(T.Mmap(0, "c", 1))


def test_mprotect_and_fork_advice_rewrite_only_their_pages() -> None:
    """The per-page updates and checks run on the bytes of the prot arrays: the results are
    those of the int8 arithmetic (DONTCOPY kept by mprotect, unmapped pages untouched)."""
    lt = lay()
    lt.mmap(T.Mmap(0, "a", 6))
    lt.munmap(T.Munmap(0, "a", 5, 1))
    # rw rw rw rw rw ..   dontfork 1-2, mprotect r 2-3, dofork 2
    lt.access(T.Madvise(0, "a", "dontfork", 1, 2))
    lt.access(T.Mprotect(0, "a", "r", 2, 2))
    region = lt.regions[0]["a"]
    rw, r, dc = PROT["rw"], PROT["r"], 8
    assert region.prot.tolist() == [rw, rw | dc, r | dc, r, rw, UNMAPPED]
    assert "a" in lt.regions[0].dontcopy and region.same() is None
    lt.access(T.Madvise(0, "a", "dofork", 1, 2))
    assert lt.regions[0]["a"].prot.tolist() == [rw, rw, r, r, rw, UNMAPPED]
    assert "a" not in lt.regions[0].dontcopy
    assert not lt.regions[0]["a"].prot.flags.writeable          # regions are values
    with pytest.raises(T.TraceError, match="write to pages that are not writable"):
        lt.access(T.Touch(0, "a", 1, 2))
    lt.access(T.Touch(0, "a", 2, 2, write=False))               # r pages: readable
    lt.access(T.Mprotect(0, "a", "rw", 0, 5))
    assert lt.regions[0]["a"].prot.tolist()[:5] == [rw] * 5


def test_whole_region_access_and_dontcopy_state_match_the_general_path() -> None:
    """access() of a whole, fully mapped region skips _range(), and mprotect keeps a region's
    DONTCOPY state without a scan: the spans, the errors and the dontcopy set are those of
    the general path (a region that does not know it is uniform, a full rescan)."""
    import random

    from simcore.layout import DONTCOPY, Region

    def general(lt: Layout, op: T.Op) -> Span | str:
        region = lt.regions[op.pid].get(op.region)
        if region is not None:                   # forget the uniform protection it knows
            dict.__setitem__(lt.regions[op.pid], op.region, Region(region.start, region.prot))
        return outcome(lt, op)

    def outcome(lt: Layout, op: T.Op) -> Span | str:
        try:
            return lt.access(op)
        except T.TraceError as exc:
            return str(exc)

    rng = random.Random(5)
    fast, slow = lay(), lay()
    names = [f"r{i}" for i in range(8)]
    for name in names:
        op = T.Mmap(0, name, rng.randint(1, 6), prot=rng.choice(["r", "rw", "rx", "none"]))
        for lt in (fast, slow):
            lt.mmap(op)
    for i in range(400):
        name = rng.choice(names)
        extent = fast.regions[0][name].extent
        first, count = (0, None) if rng.random() < 0.6 else (rng.randrange(extent), 1)
        op = rng.choice([T.Touch(0, name, first, count, write=rng.random() < 0.5, line=i),
                         T.Mprotect(0, name, rng.choice(["r", "rw", "none"]), first, count),
                         T.Madvise(0, name, rng.choice(["dontfork", "dofork"]), first, count),
                         T.Rmap(0, name, "reclaim", first, count or 1)])
        assert outcome(fast, op) == general(slow, op), op
        for lt in (fast, slow):
            regions = lt.regions[0]
            rescan = {n for n, r in regions.items() if ((r.prot != UNMAPPED)
                                                        & (r.prot & DONTCOPY != 0)).any()}
            assert regions.dontcopy == rescan, op
    assert fast.regions[0].dontcopy                  # some region got DONTCOPY pages


def test_placement_overlap_is_refused() -> None:
    #   aaaaBBBB        a shrunk to 4 pages; b placed after a's old end
    lt = lay()
    lt.mmap(T.Mmap(0, "a", 8))
    lt.mmap(T.Mmap(0, "b", 4, after="a"))
    lt.mremap_resize(T.MremapResize(0, "a", 4))
    with pytest.raises(T.TraceError, match=r"line 9: placement overlaps region 'b'"):
        lt.mmap(T.Mmap(0, "c", 5, after="a", line=9))
    assert lt.mmap(T.Mmap(0, "c", 4, after="a")) == Span(ARENA_BASE + 4, 4)    # aaaaccccBBBB
    assert lt.mmap(T.Mmap(0, "d", 2, after="b")) == Span(ARENA_BASE + 12, 2)


def test_placement_check_skipped_above_every_region_matches_the_full_scan() -> None:
    """_place() skips _check_free()'s scan for a range starting at or above Regions.top
    (an upper bound of every region's end): random mmaps (fresh or `after`), munmaps,
    resizes and moves give the same spans, errors and regions as on a layout whose top is
    always unknown (every placement scans)."""
    import random

    def outcome(lt: Layout, op: T.Op):
        try:
            out = {T.Mmap: lt.mmap, T.Munmap: lt.munmap, T.MremapResize: lt.mremap_resize,
                   T.MremapMove: lt.mremap_move}[type(op)](op)
        except T.TraceError as exc:
            out = str(exc)
        regions = lt.regions[0]
        return out, {n: (r.start, r.prot.tolist()) for n, r in regions.items()}, \
            list(regions.starts), lt.cursor

    rng = random.Random(7)
    fast, slow = lay(), lay()
    skipped = scanned = 0
    for i in range(600):
        names = sorted(fast.regions[0]) + ["zz"]
        name = rng.choice(names)
        after = rng.choice(names) if rng.random() < 0.7 else None
        if fast.regions[0]:                                 # the region that ends highest
            high = max(fast.regions[0].items(), key=lambda item: item[1].end)[0]
            name = high if rng.random() < 0.3 else name
            after = high if rng.random() < 0.3 else after
        region = fast.regions[0].get(name)
        extent = region.extent if region is not None else 4
        first = rng.randrange(extent)
        count = rng.randint(1, extent - first)
        op = rng.choice([T.Mmap(0, f"n{i}", rng.randint(1, 6), after=after, line=i),
                         T.Mmap(0, f"n{i}", rng.randint(1, 6), after=after, line=i),
                         T.Munmap(0, name, first, count, line=i),
                         T.MremapResize(0, name, rng.randint(1, 8), line=i),
                         T.MremapMove(0, name, f"n{i}", first, count, after=after, line=i)])
        top = fast.regions[0].top
        assert top >= max((r.end for r in fast.regions[0].values()), default=0)
        if isinstance(op, T.Mmap) and after in fast.regions[0]:
            skipped += fast.regions[0][after].end >= top
            scanned += fast.regions[0][after].end < top
        slow.regions[0].top = 1 << 60                 # every placement scans
        assert outcome(fast, op) == outcome(slow, op), op
    assert skipped > 20 and scanned > 20

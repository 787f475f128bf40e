"""Trace semantics: region names -> page addresses, and trace validity.

The layout is shared by the simulator and the kernel executor, so both place
every region at the same virtual page.  New regions go to fresh *slots*: each
slot starts on a PMD boundary (so hugepage eligibility is the same everywhere)
and is followed by a gap that leaves room for in-place growth and for regions
placed with ``after``.  Addresses are page numbers (address >> PAGE_SHIFT).
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .trace import (Exec, Exit, Fork, Madvise, Mlock, Mmap, MremapMove, MremapResize,
                    Mprotect, Munmap, Op, Rmap, Touch, TraceError)

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
PROT = {"none": 0, "r": PROT_READ, "rw": PROT_READ | PROT_WRITE, "rx": PROT_READ | PROT_EXEC,
        "rwx": PROT_READ | PROT_WRITE | PROT_EXEC}
UNMAPPED = -1
DONTCOPY = 8      # a layout bit beside the protection: MADV_DONTFORK pages vanish in a child
ARENA_BASE = 0x100000000000 >> 12   # 16 TiB: far from a process's own text, heap and stack
ARENA_LIMIT = 0x7F0000000000 >> 12  # below the usual mmap base of a 47-bit address space


@dataclass(slots=True)
class Region:
    """A named range of pages; ``prot[i]`` is page i's protection or UNMAPPED.

    A Region is a value: ``prot`` is a read-only array, never written in place, and a
    change makes a new Region (:meth:`Regions.replace`).  So a fork shares its parent's
    Region objects (and regions of equal shape share one ``prot`` array).  ``uniform``
    caches the one protection of a fully mapped region (None: mixed or not known).
    """
    start: int
    prot: np.ndarray
    uniform: int | None = None

    def same(self) -> int | None:
        """The protection shared by every page, or None."""
        if self.uniform is None:
            raw = self.prot.tobytes()     # regions are small: a bytes scan, not numpy calls
            if raw[0] != UNMAPPED_BYTE and raw.count(raw[0]) == len(raw):
                self.uniform = raw[0]     # a protection (0..15) is the same as a byte
        return self.uniform

    @property
    def extent(self) -> int:
        return len(self.prot)

    @property
    def end(self) -> int:
        return self.start + len(self.prot)


# The layout's per-page checks and updates run on the bytes of the (int8) prot arrays: a
# region has a few pages, where one numpy call costs more than the whole bytes operation.
# Tables map the byte of a page's protection to the byte of a result (bytes.translate).
UNMAPPED_BYTE = UNMAPPED & 0xFF


def _table(fn) -> bytes:
    """256-byte translate table: signed page protection -> fn(protection) as a byte."""
    return bytes(fn(b - 256 if b > 127 else b) & 0xFF for b in range(256))


# page -> 1 if mapped with MADV_DONTFORK
_DONTCOPY_MAPPED = _table(lambda p: int(p != UNMAPPED and p & DONTCOPY != 0))
# page -> 1 if it lacks PROT_READ / PROT_WRITE (touch permission check)
_LACKS = {need: _table(lambda p, need=need: int(p & need == 0)) for need in (PROT_READ, PROT_WRITE)}
# page -> its protection after mprotect(prot) (the DONTCOPY bit stays)
_SET_PROT = {prot: _table(lambda p, prot=prot: (p & DONTCOPY) | prot) for prot in PROT.values()}
# page -> after MADV_DONTFORK / MADV_DOFORK
_FORK_ADVICE = {"dontfork": _table(lambda p: p | DONTCOPY), "dofork": _table(lambda p: p & ~DONTCOPY)}


def _translated(prot: np.ndarray, first: int, count: int, table: bytes) -> np.ndarray:
    """A new read-only prot array: pages [first, first + count) of `prot` mapped by table."""
    raw = prot.tobytes()
    end = first + count
    return np.frombuffer(raw[:first] + raw[first:end].translate(table) + raw[end:], np.int8)


def _frozen(prot: np.ndarray) -> np.ndarray:
    prot.flags.writeable = False
    return prot


_CONST: dict[tuple[int, int], np.ndarray] = {}


def const_prot(pages: int, prot: int) -> np.ndarray:
    """A read-only array of `pages` entries `prot`, shared by every small region of that
    shape (regions are values: nothing writes it)."""
    arr = _CONST.get((pages, prot))
    if arr is None:
        arr = _frozen(np.full(pages, prot, np.int8))
        if pages <= 64:
            _CONST[(pages, prot)] = arr
    return arr


class Regions(dict):
    """name -> Region of one process, with the starts kept sorted for overlap queries.

    ``dontcopy`` holds the names of regions that may have MADV_DONTFORK pages (a fork
    filters those; every other Region is shared with the child as it is)."""
    # slots: an attribute of a dict subclass without them is a lookup in its __dict__,
    # several times the cost (mmap_start() reads and sets a few per op)
    __slots__ = ("starts", "widest", "top", "dontcopy")

    def __init__(self, items: dict | None = None) -> None:
        super().__init__()
        self.starts: list[tuple[int, str]] = []
        self.widest = 0                       # an upper bound of every region's extent
        self.top = 0                          # an upper bound of every region's end
        self.dontcopy: set[str] = set()
        for name, region in (items or {}).items():
            self[name] = region

    def __setitem__(self, name: str, region: Region) -> None:
        super().__setitem__(name, region)
        insort(self.starts, (region.start, name))
        self.widest = max(self.widest, region.extent)
        self.top = max(self.top, region.end)
        self._note_dontcopy(name, region)

    def _note_dontcopy(self, name: str, region: Region) -> None:
        same = region.same()
        if (same & DONTCOPY if same is not None else
                1 in region.prot.tobytes().translate(_DONTCOPY_MAPPED)):
            self.dontcopy.add(name)
        else:
            self.dontcopy.discard(name)

    def replace(self, name: str, prot: np.ndarray, same_dontcopy: bool = False) -> Region:
        """Region `name` gets a new protection array (same start): a new Region, so that
        processes sharing the old one (fork) keep theirs.  same_dontcopy: every page keeps
        its DONTCOPY bit (mprotect), so the region's DONTCOPY state needs no new scan."""
        region = Region(self[name].start, _frozen(prot))
        super().__setitem__(name, region)
        if len(prot) > self.widest:
            self.widest = len(prot)
        if region.start + len(prot) > self.top:
            self.top = region.start + len(prot)
        if not same_dontcopy:
            self._note_dontcopy(name, region)
        return region

    def __delitem__(self, name: str) -> None:
        region = self[name]
        super().__delitem__(name)
        key = (region.start, name)
        starts = self.starts                      # sorted: bisect, not list.remove()'s scan
        i = bisect_left(starts, key)
        if i < len(starts) and starts[i] == key:
            del starts[i]
        else:
            starts.remove(key)                    # raises ValueError as before
        self.dontcopy.discard(name)

    def clear(self) -> None:
        super().clear()
        self.starts.clear()
        self.dontcopy.clear()

    def near(self, start: int, end: int) -> list[tuple[str, Region]]:
        """Regions that may overlap [start, end)."""
        lo = bisect_left(self.starts, (start - self.widest, ""))
        hi = bisect_left(self.starts, (end, ""))
        return [(name, self[name]) for _, name in self.starts[lo:hi]]


class Span(NamedTuple):
    """A resolved page range: ``start`` (page number) and ``count`` pages (a tuple: made
    once per operation, so cheaply)."""
    start: int
    count: int


class Layout:
    """Validates a trace op by op and assigns addresses (page numbers)."""

    def __init__(self, pmd_pages: int = 512, gap_pages: int = 16384) -> None:
        self.pmd_pages = pmd_pages
        self.gap_pages = max(gap_pages, pmd_pages)
        self.cursor = ARENA_BASE
        self.regions: dict[int, Regions] = {0: Regions()}
        self.exited: set[int] = set()
        # pids not exited, in order of creation -> their regions (one lookup per op)
        self.live: dict[int, Regions] = {0: self.regions[0]}

    # ---- helpers -------------------------------------------------------
    def _proc(self, op: Op) -> Regions:
        regions = self.live.get(op.pid)
        if regions is None:
            if op.pid in self.exited:
                raise TraceError(op.line, f"pid {op.pid} has exited")
            raise TraceError(op.line, f"unknown pid {op.pid} (a pid appears only through fork)")
        return regions

    def _region(self, op: Op, name: str) -> Region:
        regions = self.live.get(op.pid)
        if regions is None:
            regions = self._proc(op)                         # raises
        region = regions.get(name)
        if region is None:
            raise TraceError(op.line, f"unknown region {name!r} in pid {op.pid}")
        return region

    def _slot(self, pages: int, line: int) -> int:
        start = self.cursor
        span = -(-pages // self.pmd_pages) * self.pmd_pages
        self.cursor = start + span + self.gap_pages
        if self.cursor > ARENA_LIMIT:
            raise TraceError(line, "trace maps more address space than the layout arena holds")
        return start

    def _range(self, op: Op, region: Region, mapped: bool) -> tuple[int, int]:
        first = op.first
        count = region.extent - first if op.count is None else op.count
        if first >= region.extent or count <= 0 or first + count > region.extent:
            raise TraceError(op.line, f"range first={first} count={op.count} is outside region "
                                      f"{op.region!r} ({region.extent} pages)")
        if mapped and region.same() is None and \
                UNMAPPED_BYTE in region.prot[first:first + count].tobytes():
            raise TraceError(op.line, f"range first={first} count={count} of region "
                                      f"{op.region!r} covers unmapped pages")
        return first, count

    def _place(self, op: Op, regions: dict[str, Region], after: str | None, pages: int) -> int:
        if after is None:
            return self._slot(pages, op.line)
        anchor = regions.get(after) or self._region(op, after)   # the latter raises
        if anchor.uniform is None and anchor.prot[-1] == UNMAPPED:
            raise TraceError(op.line, f"after={after!r}: the last page of {after!r} is not mapped")
        start = anchor.start + len(anchor.prot)
        if start < regions.top:                  # else no region reaches start: none to scan
            self._check_free(op, regions, start, pages)
        self._reserve(start + pages)
        return start

    def _reserve(self, end: int) -> None:
        """Fresh slots start beyond `end`, which an after-chain or a growth reached."""
        span = -(-end // self.pmd_pages) * self.pmd_pages + self.gap_pages
        if span > self.cursor:
            self.cursor = span

    @staticmethod
    def _check_free(op: Op, regions: Regions, start: int, pages: int) -> None:
        end = start + pages
        starts = regions.starts                          # Regions.near(), without its list
        near = bisect_left(starts, (start - regions.widest, ""))
        for i in range(near, bisect_left(starts, (end, ""), near)):
            first, name = starts[i]
            other = regions[name]
            if first + len(other.prot) <= start:         # ends below (an after-chain)
                continue
            lo, hi = max(start, first), min(end, first + len(other.prot))
            if lo < hi and (other.prot[lo - first:hi - first] != UNMAPPED).any():
                raise TraceError(op.line, f"placement overlaps region {name!r}")

    def _new_name(self, op: Op, regions: dict[str, Region], name: str) -> None:
        if name in regions:
            raise TraceError(op.line, f"region {name!r} already exists in pid {op.pid}")

    @staticmethod
    def _drop_if_empty(regions: dict[str, Region], name: str) -> None:
        if (regions[name].prot == UNMAPPED).all():
            del regions[name]

    # ---- operations ----------------------------------------------------
    def mmap(self, op: Mmap) -> Span:
        return Span(self.mmap_start(op), op.pages)

    def mmap_start(self, op: Mmap) -> int:
        """mmap() -> the first page only (the simulator's mmap path: no Span per op)."""
        pid, name, pages = op.pid, op.region, op.pages
        regions = self.live.get(pid)
        if regions is None:
            self._proc(op)                                   # raises
        if name in regions:
            self._new_name(op, regions, name)                # raises
        after = op.after
        if after is None:                   # _slot(), inline: a fresh slot above every region
            start = self.cursor
            pmd = self.pmd_pages
            cursor = self.cursor = start + -(-pages // pmd) * pmd + self.gap_pages
            if cursor > ARENA_LIMIT:
                raise TraceError(op.line, "trace maps more address space than the layout "
                                          "arena holds")
            regions.top = start + pages     # every region ends at or below the cursor
        else:
            start = self._place(op, regions, after, pages)
            if start + pages > regions.top:
                regions.top = start + pages
        prot = PROT[op.prot]
        arr = _CONST.get((pages, prot))
        if arr is None:
            arr = const_prot(pages, prot)
        # dict's own store, past Regions.__setitem__ (the name is new: checked above);
        # setdefault() is a plain method call, cheaper than dict.__setitem__(regions, ...)
        regions.setdefault(name, Region(start, arr, prot))
        starts = regions.starts                  # Regions.__setitem__, no DONTCOPY pages
        if after is None or starts[-1][0] < start:   # above every region (a fresh slot is)
            starts.append((start, name))
        else:
            insort(starts, (start, name))
        if pages > regions.widest:
            regions.widest = pages
        return start

    def access(self, op: Touch | Mprotect | Madvise | Mlock | Rmap) -> Span:
        """A ranged op over mapped pages (touch also checks permissions)."""
        region = self._region(op, op.region)
        kind = type(op)                                  # op types are final (no subclasses)
        same = region.uniform
        if same is not None and op.first == 0 and op.count is None:
            first, count = 0, len(region.prot)           # _range() of a whole mapped region
        else:
            first, count = self._range(op, region, mapped=kind is not Rmap)
        if kind is Touch:
            need = PROT_WRITE if op.write else PROT_READ
            if same is None:
                same = region.same()
            if ((same & need) == 0) if same is not None else \
                    1 in region.prot[first:first + count].tobytes().translate(_LACKS[need]):
                what = "write to pages that are not writable" if op.write else \
                    "read of pages that are not readable"
                raise TraceError(op.line, f"touch: {what} in region {op.region!r}")
        elif kind is Mprotect:                           # _SET_PROT keeps the DONTCOPY bit
            self.regions[op.pid].replace(op.region, _translated(
                region.prot, first, count, _SET_PROT[PROT[op.prot]]), same_dontcopy=True)
        elif kind is Madvise and op.advice in _FORK_ADVICE:
            self.regions[op.pid].replace(op.region, _translated(
                region.prot, first, count, _FORK_ADVICE[op.advice]))
        return Span(region.start + first, count)

    def peek(self, op: MremapMove | MremapResize) -> Span:
        """The mapped range an mremap names, validated but without changing anything."""
        region = self._region(op, op.region)
        if isinstance(op, MremapResize):
            if (region.prot == UNMAPPED).any():
                raise TraceError(op.line, f"mremap resize needs all of region {op.region!r} mapped")
            return Span(region.start, region.extent)
        first, count = self._move_range(op, region)
        return Span(region.start + first, count)

    def _move_range(self, op: MremapMove, region: Region) -> tuple[int, int]:
        """The range a move names.  Since Linux 6.17 one MREMAP_FIXED move may span several
        VMAs and the gaps between them (remap_move(): each VMA moves, the gaps keep their
        size at the destination), so unmapped pages are allowed after the first page; a gap
        at the start is EFAULT.  No other region can hold pages there: a region is only ever
        placed at a fresh slot or right after another one's end, so pages inside a region's
        extent that are not its own all lie before its first mapped page."""
        first, count = self._range(op, region, mapped=False)
        if region.prot[first] == UNMAPPED:
            raise TraceError(op.line, f"mremap: page {first} of region {op.region!r}, where the "
                                      "moved range starts, is not mapped (EFAULT)")
        return first, count

    def munmap(self, op: Munmap) -> Span:
        """munmap() takes addresses, not regions (do_vmi_munmap()): every page in the range
        goes, also those another region holds in a hole of this one (placed there by an
        ``after`` of mmap or mremap)."""
        regions = self._proc(op)
        region = self._region(op, op.region)
        first, count = self._range(op, region, mapped=False)
        start, end = region.start + first, region.start + first + count
        for name, other in regions.near(start, end):
            lo, hi = max(start, other.start), min(end, other.end)
            if lo < hi:
                prot = other.prot.copy()
                prot[lo - other.start:hi - other.start] = UNMAPPED
                regions.replace(name, prot)
                self._drop_if_empty(regions, name)
        return Span(start, count)

    def mremap_resize(self, op: MremapResize) -> tuple[Span, int]:
        """-> (old span, new page count)."""
        regions = self._proc(op)
        region = self._region(op, op.region)
        if (region.prot == UNMAPPED).any():
            raise TraceError(op.line, f"mremap resize needs all of region {op.region!r} mapped")
        old = Span(region.start, region.extent)
        if op.pages > region.extent:
            self._check_free(op, regions, region.end, op.pages - region.extent)
            grown = np.full(op.pages - region.extent, region.prot[-1], np.int8)
            region = regions.replace(op.region, np.concatenate([region.prot, grown]))
            self._reserve(region.end)
        else:
            regions.replace(op.region, region.prot[:op.pages].copy())
        return old, op.pages

    def mremap_move(self, op: MremapMove) -> tuple[Span, int]:
        """-> (source span, destination page)."""
        regions = self._proc(op)
        region = self._region(op, op.region)
        first, count = self._move_range(op, region)
        self._new_name(op, regions, op.to)
        dest = self._place(op, regions, op.after, count)
        moved = region.prot[first:first + count].copy()
        prot = region.prot.copy()
        prot[first:first + count] = UNMAPPED
        regions.replace(op.region, prot)
        regions[op.to] = Region(dest, _frozen(moved))
        self._drop_if_empty(regions, op.region)
        return Span(region.start + first, count), dest

    def fork(self, op: Fork) -> None:
        regions = self._proc(op)
        if op.child in self.regions:
            raise TraceError(op.line, f"fork: child pid {op.child} is already used")
        child = Regions()
        dict.update(child, regions)                  # Regions are values: shared
        for name in regions.dontcopy:                # MADV_DONTFORK pages vanish in the child
            r = regions[name]
            prot = np.where(r.prot & DONTCOPY, UNMAPPED, r.prot).astype(np.int8)
            if (prot != UNMAPPED).any():
                dict.__setitem__(child, name, Region(r.start, _frozen(prot)))
            else:
                dict.__delitem__(child, name)
        child.starts = (list(regions.starts) if not regions.dontcopy else
                        [item for item in regions.starts if item[1] in child])  # already sorted
        child.widest, child.top = regions.widest, regions.top
        self.regions[op.child] = self.live[op.child] = child

    def exec(self, op: Exec) -> None:
        self._proc(op).clear()

    def exit(self, op: Exit) -> None:
        self._proc(op).clear()
        self.exited.add(op.pid)
        del self.live[op.pid]

    def alive(self) -> list[int]:
        return list(self.live)


def absolute_region(page: int) -> str:
    """The region name that denotes absolute page ``page`` in :class:`AbsoluteLayout`."""
    return f"@{page:x}"


class AbsoluteLayout:
    """The layout of a recording (trace format v2): no placement, no names.  A region
    name ``@P`` (:func:`absolute_region`) is the page number P itself, so ``first`` and
    ``count`` select pages P+first .. P+first+count-1 as the recorded program used them;
    adjacency, merges and holes are the kernel's.  The kernel already validated every
    recorded operation, so nothing is checked here beyond the name."""

    def __init__(self) -> None:
        self.exited: set[int] = set()
        self.pids: set[int] = set()

    @staticmethod
    def _start(op: Op) -> int:
        name = op.region
        if not name.startswith("@"):
            raise TraceError(op.line, f"absolute layout: region {name!r} is not @PAGE")
        return int(name[1:], 16)

    def mmap(self, op: Mmap) -> Span:
        self.pids.add(op.pid)
        return Span(self._start(op), op.pages)

    def access(self, op: Touch | Mprotect | Madvise | Mlock | Rmap) -> Span:
        return Span(self._start(op) + op.first, 1 if op.count is None else op.count)

    munmap = access

    def fork(self, op: Fork) -> None:
        self.pids.add(op.child)

    def exec(self, op: Exec) -> None:
        self.pids.add(op.pid)

    def exit(self, op: Exit) -> None:
        self.exited.add(op.pid)

    def alive(self) -> list[int]:
        return sorted(self.pids - self.exited)

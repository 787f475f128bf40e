"""struct folio, anonymous folios only, as NumPy columns (mm/rmap.c, include/linux/mm_types.h).

A folio is a row: ``mapping`` (the id of the anon_vma -- or of a target the policy
defines: a VMA for a lazy design, a COW context -- that rmap walks start from; ``mkind``
says which kind, and rmap_walk() hands every kind but MAP_ANON_VMA to the policy), ``index``
(``linear_page_index`` of its first page), ``nr`` pages and ``mapcount``
(page-table entries that map it, summed over its pages).  Freed rows are reused.
"""
from __future__ import annotations

import numpy as np

MAP_ANON_VMA, MAP_VMA = 0, 1     # what `mapping` points at (FOLIO_MAPPING_ANON / a lazy VMA)
MAP_POLICY = 2                   # the first kind free for a policy's own targets (Policy.folio_targets)


class FolioTable:
    """Columns of all anonymous folios; rows are folio ids.

    Rows below ``top`` have been used; freed ones wait on the ``free`` stack.
    """
    __slots__ = ("mapping", "mkind", "index", "nr", "mapcount", "free", "nfree", "top", "live",
                 "large", "on_free")

    def __init__(self, capacity: int = 1024) -> None:
        self.mapping = np.full(capacity, -1, np.int64)
        self.mkind = np.zeros(capacity, np.uint8)
        self.index = np.zeros(capacity, np.int64)
        self.nr = np.zeros(capacity, np.int32)
        self.mapcount = np.zeros(capacity, np.int32)
        self.free = np.empty(capacity, np.int32)     # a stack of freed rows
        self.nfree = 0
        self.top = 0
        self.live = 0
        self.large = 0            # live folios with nr > 1 (0: every id maps one page once)
        self.on_free = None       # called with the ids of folios about to be freed

    def _grow(self, need: int) -> None:
        old = len(self.mapping)
        new = max(old * 2, old + need)
        for name, fill in (("mapping", -1), ("mkind", 0), ("index", 0), ("nr", 0), ("mapcount", 0)):
            col = getattr(self, name)
            if fill:
                grown = np.empty(new, col.dtype)
                grown[old:] = fill
            else:
                grown = np.zeros(new, col.dtype)     # calloc: the new rows cost nothing yet
            grown[:old] = col
            setattr(self, name, grown)
        free = np.empty(new, np.int32)
        free[:self.nfree] = self.free[:self.nfree]
        self.free = free

    def alloc(self, mapping: int, mkind: int, index: np.ndarray, nr: int = 1) -> np.ndarray:
        """folio_alloc() + folio_add_new_anon_rmap(): len(index) folios, each mapped once per page."""
        n = len(index)
        nfree, top = self.nfree, self.top
        if not nfree:                     # only fresh rows: slices are cheaper than fancy indexing
            end = top + n
            if end > len(self.mapping):
                self._grow(end - len(self.mapping))
            ids, rows = np.arange(top, end, dtype=np.int32), slice(top, end)
            self.top = end
        else:                             # freed rows first, from the top of the stack
            take = min(n, nfree)
            fresh = n - take
            if top + fresh > len(self.mapping):
                self._grow(top + fresh - len(self.mapping))
            ids = rows = self.free[nfree - take:nfree].copy()
            self.nfree = nfree - take
            if fresh:
                ids = rows = np.concatenate([ids, np.arange(top, top + fresh, dtype=np.int32)])
            self.top = top + fresh
        self.mapping[rows] = mapping
        self.mkind[rows] = mkind
        self.index[rows] = index
        self.nr[rows] = nr
        self.mapcount[rows] = nr
        self.live += n
        if nr > 1:
            self.large += n
        return ids

    def alloc_few(self, mapping: int, mkind: int, index: int, n: int) -> list[int] | range:
        """alloc(mapping, mkind, np.arange(index, index + n)) of a handful of small folios (the
        same rows in the same order), row by row: for a few rows, scalar stores cost less
        than numpy's per-call cost of alloc()'s column slices and id array."""
        nfree, top = self.nfree, self.top
        if not nfree:                     # only fresh rows (most calls): a range of ids
            end = top + n
            if end > len(self.mapping):
                self._grow(end - len(self.mapping))
            ids = range(top, end)
            self.top = end
        else:
            take = min(n, nfree)
            ids = self.free[nfree - take:nfree].tolist()        # freed rows first
            self.nfree = nfree - take
            end = top + n - take
            if end > top:
                if end > len(self.mapping):
                    self._grow(end - len(self.mapping))
                ids += range(top, end)
                self.top = end
        mapping_, mkind_, index_, nr, mapcount = (self.mapping, self.mkind, self.index, self.nr,
                                                  self.mapcount)
        for fid in ids:
            mapping_[fid] = mapping
            mkind_[fid] = mkind
            index_[fid] = index
            nr[fid] = mapcount[fid] = 1
            index += 1
        self.live += n
        return ids

    def get(self, ids: np.ndarray) -> None:
        """One more mapping of each id (duplicates count once each)."""
        if self.large:
            np.add.at(self.mapcount, ids, 1)
        else:                     # only small folios: page-table entries hold distinct ids
            self.mapcount[ids] += 1

    def put(self, ids: np.ndarray) -> int:
        """One mapping fewer of each id; frees folios whose mapcount reaches 0. -> folios freed."""
        if len(ids) == 0:
            return 0
        if self.large:
            np.subtract.at(self.mapcount, ids, 1)
            ids = np.unique(ids)
            dead = ids[self.mapcount[ids] == 0]
        else:                     # distinct ids (one page-table entry each)
            left = self.mapcount[ids] - 1
            self.mapcount[ids] = left
            dead = ids[left == 0]
        if len(dead):
            if self.on_free is not None:
                self.on_free(dead)
            self.large -= int(np.count_nonzero(self.nr[dead] > 1)) if self.large else 0
            self.mapping[dead] = -1
            self.nr[dead] = 0
            self.free[self.nfree:self.nfree + len(dead)] = dead
            self.nfree += len(dead)
            self.live -= len(dead)
        return len(dead)

    def move_anon_rmap(self, ids: np.ndarray, mapping: int, mkind: int) -> None:
        """folio_move_anon_rmap(): re-point exclusively owned folios."""
        self.mapping[ids] = mapping
        self.mkind[ids] = mkind

    def nbytes(self) -> int:
        return sum(getattr(self, c).nbytes for c in ("mapping", "mkind", "index", "nr",
                                                     "mapcount", "free"))

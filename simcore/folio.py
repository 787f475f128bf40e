"""struct folio, anonymous folios only, as NumPy columns (mm/rmap.c, include/linux/mm_types.h).

A folio is a row: ``mapping`` (the id of the anon_vma -- or, for a lazy policy,
of the VMA -- that rmap walks start from; ``mkind`` says which), ``index``
(``linear_page_index`` of its first page), ``nr`` pages and ``mapcount``
(page-table entries that map it, summed over its pages).  Freed rows are reused.
"""
from __future__ import annotations

import numpy as np

MAP_ANON_VMA, MAP_VMA = 0, 1     # what `mapping` points at (FOLIO_MAPPING_ANON / a lazy VMA)


class FolioTable:
    """Columns of all anonymous folios; rows are folio ids."""
    __slots__ = ("mapping", "mkind", "index", "nr", "mapcount", "free", "nfree", "live", "large")

    def __init__(self, capacity: int = 1024) -> None:
        self.mapping = np.full(capacity, -1, np.int64)
        self.mkind = np.zeros(capacity, np.uint8)
        self.index = np.zeros(capacity, np.int64)
        self.nr = np.zeros(capacity, np.int32)
        self.mapcount = np.zeros(capacity, np.int32)
        self.free = np.arange(capacity - 1, -1, -1, dtype=np.int32)   # a stack of free rows
        self.nfree = capacity
        self.live = 0
        self.large = 0            # live folios with nr > 1 (0: every id maps one page once)

    def _grow(self, need: int) -> None:
        old = len(self.mapping)
        new = max(old * 2, old + need)
        for name, fill in (("mapping", -1), ("mkind", 0), ("index", 0), ("nr", 0), ("mapcount", 0)):
            col = getattr(self, name)
            grown = np.full(new, fill, col.dtype)
            grown[:old] = col
            setattr(self, name, grown)
        free = np.empty(new, np.int32)
        free[:self.nfree] = self.free[:self.nfree]
        free[self.nfree:self.nfree + new - old] = np.arange(new - 1, old - 1, -1, dtype=np.int32)
        self.free = free
        self.nfree += new - old

    def alloc(self, mapping: int, mkind: int, index: np.ndarray, nr: int = 1) -> np.ndarray:
        """folio_alloc() + folio_add_new_anon_rmap(): len(index) folios, each mapped once per page."""
        n = len(index)
        if n > self.nfree:
            self._grow(n - self.nfree)
        ids = self.free[self.nfree - n:self.nfree][::-1].copy()
        self.nfree -= n
        self.mapping[ids] = mapping
        self.mkind[ids] = mkind
        self.index[ids] = index
        self.nr[ids] = nr
        self.mapcount[ids] = nr
        self.live += n
        if nr > 1:
            self.large += n
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
        else:
            self.mapcount[ids] -= 1
        dead = ids[self.mapcount[ids] == 0]
        if len(dead):
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

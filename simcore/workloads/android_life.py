"""What Android processes do after they have mapped their image: allocator arenas, heap
growth, thread stacks, JIT code pages, GC; and what the system does to apps: LMKD kills and
restarts, and the cached-app optimizer's compaction (process_madvise MADV_PAGEOUT).

Each behaviour's rate is a field of AndroidBoot/AndroidApps with its source (the field
metadata); with every one of them at 0 the generators emit exactly the op stream they
emitted before these behaviours existed (tests/test_android_life.py).  docs/android-workloads.md
describes the patterns and where each rate comes from (tests/recordings/java.rec and
node.rec as proxies for ART and V8).

RNG discipline: these behaviours draw from their own generator, seeded from the initial
state of the workload's generator (so from the seed alone) before its first draw: turning
a behaviour on or off does not change which image a process maps.  Regions get names of
their own (``Ar``, ``Hp``, ``Th``, ``Jt`` and a counter), not the Emitter's.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from .. import trace as T


@dataclass
class Arena:
    """One allocator reservation: mapped pages [lo, hi) of the region, the committed
    (PROT_READ|WRITE, written) chunks of `chunk` pages each."""
    name: str
    lo: int
    hi: int
    chunk: int
    committed: set[int] = field(default_factory=set)


@dataclass
class Proc:
    """What compaction and LMKD need to know of an app process."""
    pid: int
    anon: list[str] = field(default_factory=list)      # whole anonymous regions
    arenas: list[Arena] = field(default_factory=list)


class Life:
    """Emits the runtime behaviour of app processes (see the module docstring)."""

    def __init__(self, cfg, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = random.Random(repr(rng.getstate()[1][:8]))   # from the seed, no draw
        self.n = 0
        self.procs: dict[int, Proc] = {}

    def _name(self, tag: str) -> str:
        self.n += 1
        return f"{tag}{self.n}"

    def _pages(self) -> int:
        return self.rng.randint(1, self.cfg.pages)

    def runtime(self, pid: int, anon: list[str]) -> Iterator[T.Op]:
        """An app process after its image (anon: its anonymous regions so far, inherited
        written ones included): arenas, heap growth, threads, JIT, GC."""
        cfg = self.cfg
        proc = self.procs[pid] = Proc(pid, list(anon))
        yield from self._arenas(proc)
        yield from self._heap(proc)
        stacks = list(self._threads(proc))
        for ops in stacks:
            yield from ops[0]
        yield from self._jit(proc)
        yield from self._gc(proc)
        yield from self._trims(proc)
        yield from self._free_arenas(proc)
        for ops in stacks:                               # threads that exit: stack unmapped
            if self.rng.random() < cfg.thread_exits:
                yield ops[1]
                proc.anon.remove(ops[1].region)

    # ---- allocator arenas (scudo primary regions, ART/V8 heap pages) ----------
    def _arenas(self, proc: Proc) -> Iterator[T.Op]:
        """Each arena: a PROT_NONE reservation (the first one of 2N pages, its head trimmed
        to align it: a partial munmap; the others placed right after the previous one, so
        reservations merge), committed chunk by chunk with mprotect(RW) and written: each
        commit merges with the committed piece before it, across arenas too."""
        cfg = self.cfg
        prev = None
        for _ in range(cfg.arenas):
            name = self._name("Ar")
            n = max(2, cfg.arena_commits) * self._pages()
            if prev is None:                              # the first: aligned by trimming
                yield T.Mmap(proc.pid, name, 2 * n, prot="none")
                yield T.Munmap(proc.pid, name, 0, n)      # its head (a partial munmap)
                lo = n
            else:                                         # the next ones follow it
                yield T.Mmap(proc.pid, name, n, prot="none", after=prev)
                lo = 0
            arena = Arena(name, lo, lo + n, max(1, n // max(1, cfg.arena_commits)))
            for k in range(cfg.arena_commits):
                yield from self._commit(proc, arena, k)
            proc.arenas.append(arena)
            proc.anon.append(name)
            prev = name

    def _chunk(self, arena: Arena, k: int) -> tuple[int, int]:
        first = arena.lo + k * arena.chunk
        return first, min(arena.chunk, arena.hi - first)

    def _commit(self, proc: Proc, arena: Arena, k: int) -> Iterator[T.Op]:
        first, count = self._chunk(arena, k)
        if count <= 0:
            return
        yield T.Mprotect(proc.pid, arena.name, "rw", first, count)
        yield T.Touch(proc.pid, arena.name, first, count)
        arena.committed.add(k)

    def _heap(self, proc: Proc) -> Iterator[T.Op]:
        """A heap that grows in place (mremap; node.rec's brk calls), written as it grows."""
        if not self.cfg.heap_grows:
            return
        name = self._name("Hp")
        pages = self._pages()
        yield T.Mmap(proc.pid, name, pages)
        yield T.Touch(proc.pid, name)
        for _ in range(self.cfg.heap_grows):
            grow = self._pages()
            yield T.MremapResize(proc.pid, name, pages + grow)
            yield T.Touch(proc.pid, name, pages, grow)
            pages += grow
        proc.anon.append(name)

    # ---- thread stacks ----------------------------------------------------------
    def _threads(self, proc: Proc) -> Iterator[tuple[list[T.Op], T.Op]]:
        """bionic pthread_create(): mmap(RW) stack + guard, mprotect(PROT_NONE) of the
        guard at the bottom, the top of the stack written; the stack's munmap at exit."""
        for _ in range(self.cfg.threads):
            name = self._name("Th")
            pages = 1 + self._pages()
            create = [T.Mmap(proc.pid, name, pages), T.Mprotect(proc.pid, name, "none", 0, 1),
                      T.Touch(proc.pid, name, pages - 1, 1)]
            proc.anon.append(name)
            yield create, T.Munmap(proc.pid, name)

    # ---- JIT code cache ---------------------------------------------------------
    def _jit(self, proc: Proc) -> Iterator[T.Op]:
        """A code cache written then made RX; each flip makes one page RW (a split), writes
        it and makes it RX again (the pieces merge back)."""
        if not self.cfg.jit_flips:
            return
        name = self._name("Jt")
        pages = 2 + self._pages()
        yield T.Mmap(proc.pid, name, pages)
        yield T.Touch(proc.pid, name)
        yield T.Mprotect(proc.pid, name, "rx")
        for _ in range(self.cfg.jit_flips):
            i = self.rng.randrange(pages)
            yield T.Mprotect(proc.pid, name, "rw", i, 1)
            yield T.Touch(proc.pid, name, i, 1)
            yield T.Mprotect(proc.pid, name, "rx", i, 1)
        proc.anon.append(name)

    # ---- GC and trims -------------------------------------------------------------
    def _gc(self, proc: Proc) -> Iterator[T.Op]:
        """GC: madvise(DONTNEED) of a committed chunk; half the time the chunk is reused
        (written again), else it is uncommitted (mprotect PROT_NONE: it merges with the
        reservation around it)."""
        for _ in range(self.cfg.gc_dontneeds):
            live = [(a, k) for a in proc.arenas for k in sorted(a.committed)]
            if not live:
                return
            arena, k = self.rng.choice(live)
            first, count = self._chunk(arena, k)
            yield T.Madvise(proc.pid, arena.name, "dontneed", first, count)
            if self.rng.random() < 0.5:
                yield T.Touch(proc.pid, arena.name, first, count)
            else:
                yield T.Mprotect(proc.pid, arena.name, "none", first, count)
                arena.committed.discard(k)

    def _trims(self, proc: Proc) -> Iterator[T.Op]:
        """Heap trims: the tail chunk of an arena is unmapped (a partial munmap)."""
        for _ in range(self.cfg.heap_trims):
            arenas = [a for a in proc.arenas if a.hi - a.lo > a.chunk]
            if not arenas:
                return
            arena = self.rng.choice(arenas)
            last = (arena.hi - arena.lo - 1) // arena.chunk
            first = arena.lo + last * arena.chunk
            yield T.Munmap(proc.pid, arena.name, first, arena.hi - first)
            arena.hi = first
            arena.committed.discard(last)

    def _free_arenas(self, proc: Proc) -> Iterator[T.Op]:
        """Freed arenas are unmapped whole."""
        for arena in list(proc.arenas):
            if self.rng.random() < self.cfg.arena_frees:
                yield T.Munmap(proc.pid, arena.name)
                proc.arenas.remove(arena)
                proc.anon.remove(arena.name)

    # ---- the system: compaction, LMKD ---------------------------------------------
    def compact(self, pid: int) -> Iterator[T.Op]:
        """The cached-app optimizer: process_madvise(MADV_PAGEOUT) over the app's
        anonymous VMAs (a share of them); the kernel skips folios mapped elsewhere."""
        proc = self.procs.get(pid)
        if proc is None:
            return
        for name in self._compacted(proc):
            yield from self._over_mapped(proc, name, "pageout")

    def _compacted(self, proc: Proc) -> list[str]:
        share = self.cfg.compact_share
        return [n for n in proc.anon if share >= 1 or self.rng.random() < share]

    def _over_mapped(self, proc: Proc, name: str, advice: str) -> Iterator[T.Op]:
        """madvise over the mapped pages of a region (an arena's trimmed head is gone)."""
        arena = next((a for a in proc.arenas if a.name == name), None)
        if arena is None:
            yield T.Madvise(proc.pid, name, advice)
        elif arena.hi > arena.lo:
            yield T.Madvise(proc.pid, name, advice, arena.lo, arena.hi - arena.lo)

    def come_back(self, pid: int) -> Iterator[T.Op]:
        """A compacted app comes back to the foreground: its anonymous memory is written
        again (swap-in faults)."""
        proc = self.procs.get(pid)
        if proc is None:
            return
        for name in proc.anon:
            if name.startswith("Th"):
                continue                                  # the guard page is PROT_NONE
            arena = next((a for a in proc.arenas if a.name == name), None)
            if arena is None:
                if name.startswith("Jt"):
                    continue                              # code pages are RX
                yield T.Touch(pid, name)
            else:
                for k in sorted(arena.committed):
                    first, count = self._chunk(arena, k)
                    yield T.Touch(pid, name, first, count)

    def died(self, pid: int) -> None:
        self.procs.pop(pid, None)

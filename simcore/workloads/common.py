"""What every generated workload shares: process images and the Emitter that maps them,
memory-pressure phases (rmap walks) mixed into a stream, and the seeded wrapper that turns
a workload body into a registered generator ``(cfg, seed) -> ops``.

RNG discipline (`pressured`): the body and its Emitter draw from ``Random(seed)``; the
pressure walks draw either from that same generator (``own_walk_rng=False``, the Linux
server workloads) or from their own ``Random(seed + 1)`` (Android), as the op streams of
the published figures were made.  With its own generator the body's ops do not depend on
the pressure settings.

Cost: the android cells take ~4-5 x 10^5 ops from here.  Bodies with their own walk
generator yield a list of ops per process (``pressured(lists=True)``), with_pressure() cuts
the lists where walks fall, and the ops reach the consumer through itertools in C: no
Python generator frame per op.  The Emitter's generators are drained into those lists.
"""
from __future__ import annotations

import random
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from functools import wraps
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

from .. import trace as T


@dataclass
class Image:
    """What one process maps: counts of each kind of mapping."""
    libs: int                 # shared libraries: r-- | r-x | relro r-- | rw- (+ .bss)
    anon: int                 # anonymous regions (dalvik spaces, malloc, stacks)
    anon_written: float       # fraction of them written
    file_private: int         # boot image / jar / oat mappings (private, written)
    guards: int               # PROT_NONE guards and reservations
    shared: int               # shared mappings (GPU, dma-buf, ashmem, /dev)
    bss: float = 0.6          # fraction of libraries with an anonymous .bss after .data


def shuffle(rng: random.Random, x: list) -> None:
    """rng.shuffle(x), the same draws: Lib/random.py's Random.shuffle with its call of
    _randbelow_with_getrandbits(i + 1) per element inline (Python 3.11-3.13; an image
    shuffles ~1,500 kinds, and the call per element was a third of the shuffle).  The
    Emitter checks that rng draws that way; tests/unit/test_emitter.py compares the two.
    The elements are taken by the bit length k of i + 1 (a run of i with one k), without
    a bit_length() call per element."""
    getrandbits = rng.getrandbits
    hi = len(x) - 1
    while hi > 0:                       # the i whose i + 1 has k bits: [2^(k-1) - 1, hi]
        k = (hi + 1).bit_length()
        lo = (1 << (k - 1)) - 1
        for i in range(hi, lo - 1, -1):
            j = getrandbits(k)          # _randbelow(i + 1)
            while j > i:
                j = getrandbits(k)
            x[i], x[j] = x[j], x[i]
        hi = lo - 1


class Emitter:
    """Builds the ops of process images with unique region names.  image() and library()
    are generators that draw as their ops are taken: a body that shares its generator with
    the pressure walks (own_walk_rng=False) has its draws and the walks' in op order.
    cow() makes its list at once, for the bodies that yield lists."""

    def __init__(self, rng: random.Random, pages: int) -> None:
        if type(rng)._randbelow is not random.Random._randbelow_with_getrandbits:
            raise TypeError(f"Emitter draws as random.Random does, not as {type(rng).__name__}")
        self.rng, self.pages, self.n = rng, pages, 0
        # randint(1, pages) is randrange(1, pages + 1) = 1 + _randbelow(pages) (Lib/random.py):
        # the same draws, without two Python frames per page count
        self._below = rng._randbelow

    def library(self, pid: int, lib: str, bss: float,
                written: list[str] | None = None) -> Iterator[T.Op]:
        """The loader's pattern: text and rodata, then .data written (relocations) with its
        relro head made read-only (one anon_vma, two VMAs), and often a written .bss
        (appended to `written`)."""
        n = self.n                          # four names and four sizes
        self.n = n + 4
        a, b, c, d = f"L{n + 1}", f"L{n + 2}", f"L{n + 3}", f"L{n + 4}"
        below, pages = self._below, self.pages
        ra, rx, relro, data = 1 + below(pages), 1 + below(pages), 1 + below(pages), 1 + below(pages)
        # Mmap fields by position: pid, region, pages, kind, prot, after, populate, file, offset
        yield T.Mmap(pid, a, ra, "file", "r", None, False, lib)
        yield T.Mmap(pid, b, rx, "file", "rx", a, False, lib, ra)
        yield T.Mmap(pid, c, relro + data, "file", "rw", b, False, lib, ra + rx)
        yield T.Touch(pid, c)
        yield T.Mprotect(pid, c, "r", 0, relro)
        if self.rng.random() < bss:
            yield T.Mmap(pid, d, 1 + below(pages), "anon", "rw", c)
            if written is not None:
                written.append(d)
            yield T.Touch(pid, d)

    def image(self, pid: int, img: Image, libs: list[str],
              written: list[str] | None = None) -> Iterator[T.Op]:
        """Every mapping of an image, kinds interleaved as a process would create them; the
        anonymous regions it writes whole (.bss, written anon) are appended to `written`,
        in op order."""
        kinds = (["lib"] * img.libs + ["anon"] * img.anon + ["file"] * img.file_private
                 + ["guard"] * img.guards + ["shared"] * img.shared)
        rng = self.rng
        shuffle(rng, kinds)
        nlib, nlibs, bss = 0, len(libs), img.bss
        Mmap, Touch, random, share = T.Mmap, T.Touch, rng.random, img.anon_written
        getrandbits, pages = rng.getrandbits, self.pages
        bits = pages.bit_length()
        for kind in kinds:
            if kind == "lib":
                yield from self.library(pid, libs[nlib % nlibs], bss, written)
                nlib += 1
                continue
            self.n = n = self.n + 1                     # a unique name
            size = getrandbits(bits)                    # its size: 1 + _randbelow(pages)
            while size >= pages:                        # inline (_randbelow_with_getrandbits)
                size = getrandbits(bits)
            size += 1
            if kind == "anon":
                name = f"A{n}"
                yield Mmap(pid, name, size)
                if random() < share:
                    if written is not None:
                        written.append(name)
                    yield Touch(pid, name)
            elif kind == "file":
                name = f"F{n}"
                yield Mmap(pid, name, size, "file", "rw", None, False,
                           f"boot{rng.randrange(40)}.art", rng.randrange(512))
                yield Touch(pid, name)
            elif kind == "guard":
                yield Mmap(pid, f"G{n}", size, "anon", "none")
            else:
                yield Mmap(pid, f"S{n}", size, "shared_anon")

    def cow(self, pid: int, regions: list[str], fraction: float) -> list[T.Op]:
        """A forked process writes some inherited anon regions again (COW).  A list, made
        at once (only the Android bodies take it: pressured(lists=True))."""
        random, Touch = self.rng.random, T.Touch
        return [Touch(pid, name) for name in regions if random() < fraction]


WALKS = ("reclaim", "migrate", "idle")


@dataclass
class Pressure:
    """Memory pressure: every `pressure_every` ops an rmap walk of a written region."""
    pressure_every: int = field(default=50, metadata={
        "source": "assumed", "range": (10, 500),
        "ref": "an rmap walk (reclaim/migrate/idle) every N ops, 0: none; no source for the rate"})
    pressure_pages: int = field(default=4, metadata={
        "source": "assumed", "range": (1, 16), "ref": "pages walked per phase; no source"})


class _Written:
    """The written (pid, region) keys of a stream in sorted order, as a sequence (what a
    walk's rng.choice picks from): per pid its regions, sorted, and the pids sorted, so a
    new key costs a bisect among its process's regions and an exit drops a whole entry."""
    __slots__ = ("pids", "names", "size")

    def __init__(self) -> None:
        self.pids: list[int] = []                   # sorted
        self.names: dict[int, list[str]] = {}       # pid -> its written regions, sorted
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[int, str]:
        names = self.names
        for pid in self.pids:
            n = len(names[pid])
            if i < n:
                return pid, names[pid][i]
            i -= n
        raise IndexError(i)


def with_pressure(chunks: Iterable[list[T.Op]], cfg: Pressure,
                  rng: random.Random) -> Iterator[list[T.Op]]:
    """Interleave rmap walks (reclaim, compaction/migration, idle sampling) over written pages:
    after every `pressure_every`-th op of the stream (0: never) a walk of a written region,
    picked uniformly among the written (pid, region) keys in sorted order (_Written).
    Takes and gives the stream as lists of ops (a chunk passes whole when no walk falls in it)."""
    every, pages = cfg.pressure_every, cfg.pressure_pages
    if every <= 0:
        yield from chunks
        return
    keys = _Written()
    pids, names = keys.pids, keys.names
    written: dict[int, dict[str, tuple[int, int]]] = {}     # pid -> region -> (first, count)
    Mmap, Touch, Exit, Exec = T.Mmap, T.Touch, T.Exit, T.Exec
    Munmap, MremapMove, Rmap = T.Munmap, T.MremapMove, T.Rmap
    n = 0                                               # ops since the last walk
    for chunk in chunks:
        start, size = 0, len(chunk)
        while start < size:
            end = start + every - n                     # the op after which a walk comes
            seg = chunk if start == 0 and end >= size else chunk[start:end]
            for op in seg:
                t = op.__class__                        # op types are final (no subclasses)
                if t is Mmap:                           # most ops: nothing to note
                    continue
                if t is Touch:
                    if op.write:                        # a whole-region touch: its size is
                        count = min(op.count, pages) if op.count else 1   # not known here
                        pid, region = op.pid, op.region
                        mine = written.get(pid)
                        if mine is None:
                            mine = written[pid] = {}
                            names[pid] = []
                            insort(pids, pid)
                        if region not in mine:
                            insort(names[pid], region)
                            keys.size += 1
                        mine[region] = (op.first, count)
                elif t is Exit or t is Exec:
                    if written.pop(op.pid, None) is not None:
                        keys.size -= len(names.pop(op.pid))
                        del pids[bisect_left(pids, op.pid)]
                elif t is Munmap or t is MremapMove:    # the region is gone or cut
                    mine = written.get(op.pid)
                    if mine and mine.pop(op.region, None) is not None:
                        regions = names[op.pid]
                        del regions[bisect_left(regions, op.region)]
                        keys.size -= 1
            yield seg
            if end > size:
                n += size - start
                break
            n, start = 0, end
            if keys.size:
                pid, region = rng.choice(keys)
                first, count = written[pid][region]
                yield [Rmap(pid, region, rng.choice(WALKS), first, count)]


def pressured(body: Callable[..., Iterator[T.Op]] | None = None, *, own_walk_rng: bool = False,
              lists: bool = False):
    """Decorator: body(cfg, rng, emitter) -> generator(cfg, seed), the body's ops seeded
    with the memory-pressure walks mixed in (RNG discipline: the module docstring).

    lists: the body yields lists of ops (needs own_walk_rng: a list is made before the
    walks that fall in it, so with one generator its draws would come before theirs).
    A body that yields ops is read in runs of pressure_every ops: the body draws nothing
    for the ops after a walk before the walk has drawn."""
    if lists and not own_walk_rng:
        raise ValueError("pressured(lists=True) needs own_walk_rng=True")

    def wrap(body: Callable[..., Iterator]) -> Callable[[Pressure, int], Iterator[T.Op]]:
        @wraps(body)
        def generator(cfg: Pressure, seed: int) -> Iterator[T.Op]:
            rng = random.Random(seed)
            walks = random.Random(seed + 1) if own_walk_rng else rng
            out = body(cfg, rng, Emitter(rng, cfg.pages))
            if not lists:
                ops, run = iter(out), cfg.pressure_every if cfg.pressure_every > 0 else 256
                out = iter(lambda: list(islice(ops, run)), [])
            # the ops one by one, without a Python frame per op
            return chain.from_iterable(with_pressure(out, cfg, walks))
        return generator
    return wrap(body) if body is not None else wrap

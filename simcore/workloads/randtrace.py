"""Random *valid* traces: proposals are checked against a scratch eager machine and only
operations it accepts are kept.  Used by property tests and the kernel differential test."""
from __future__ import annotations

import random
from dataclasses import dataclass

from .. import trace as T
from ..layout import UNMAPPED
from ..machine import Machine
from ..registry import register_workload

PROTS = ("rw", "rw", "rw", "r", "rx", "rwx", "none")
ADVICE = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "hugepage", "nohugepage",
          "mergeable", "unmergeable", "cold", "pageout")


def _range(rng: random.Random, extent: int) -> tuple[int, int]:
    first = rng.randrange(extent)
    return first, rng.randint(1, extent - first)


def _propose(rng: random.Random, m: Machine, next_pid: int, nregion: int,
             kernel_safe: bool, forks: bool = True) -> T.Op | None:
    alive = m.layout.alive()
    pid = rng.choice(alive)
    regions = m.layout.regions[pid]
    names = sorted(regions)
    kind = rng.choices(["mmap", "touch", "mprotect", "munmap", "mremap", "madvise", "mlock",
                        "fork", "exec", "exit", "rmap"],
                       [10, 14, 5, 3, 3, 5, 2, 4, 1, 2, 0 if kernel_safe else 2])[0]
    if kind == "mmap" or not names:
        big = rng.random() < 0.08
        pages = rng.choice((512, 1024)) if big else rng.randint(1, 16)
        fields: dict = {}
        mkind = rng.choices(("anon", "file", "shared_anon", "shared_file"), (8, 3, 1, 1))[0]
        if mkind in ("file", "shared_file"):
            fields.update(file=rng.choice("fg"), offset=rng.randrange(0, 32))
        if names and rng.random() < 0.4:
            fields["after"] = rng.choice(names)
        return T.Mmap(pid, f"r{nregion}", pages, kind=mkind, prot=rng.choice(PROTS),
                      populate=rng.random() < 0.1, **fields)
    name = rng.choice(names)
    region = regions[name]
    first, count = _range(rng, region.extent)
    mapped = region.prot[first:first + count] != UNMAPPED
    if kind == "touch":
        return T.Touch(pid, name, first, count, write=rng.random() < 0.7)
    if kind == "mprotect":
        return T.Mprotect(pid, name, rng.choice(PROTS), first, count)
    if kind == "munmap":
        return T.Munmap(pid, name, first, count)
    if kind == "mremap":
        if rng.random() < 0.3:
            return T.MremapResize(pid, name, max(1, region.extent + rng.randint(-4, 8)))
        after = rng.choice(names) if rng.random() < 0.4 else None
        return T.MremapMove(pid, name, f"r{nregion}", first, count, after=after)
    if kind == "madvise":
        return T.Madvise(pid, name, rng.choice(ADVICE), first, count)
    if kind == "mlock":
        return T.Mlock(pid, name, first, count, lock=rng.random() < 0.6)
    if kind == "fork":
        return T.Fork(pid, next_pid) if forks and len(alive) < 6 else None
    if kind == "exec":
        return T.Exec(pid)
    if kind == "exit":
        return T.Exit(pid) if len(alive) > 1 else None
    return T.Rmap(pid, name, rng.choice(T.WALKS), first, count) if mapped.all() else None


def random_trace(seed: int, n_ops: int = 40, kernel_safe: bool = False,
                 exit_all: bool = False, forks: bool = True) -> list[T.Op]:
    """A valid random trace of n_ops operations (plus exits of every process if exit_all).

    kernel_safe leaves out simulator-only ops (rmap); forks=False makes single-process traces.
    """
    rng = random.Random(seed)
    m = Machine("eager")
    ops: list[T.Op] = []
    next_pid, nregion, tries = 1, 0, 0
    while len(ops) < n_ops and tries < n_ops * 50:
        tries += 1
        op = _propose(rng, m, next_pid, nregion, kernel_safe, forks)
        if op is None:
            continue
        try:
            m.apply(op)
        except T.TraceError:
            continue
        ops.append(op)
        if isinstance(op, T.Fork):
            next_pid += 1
        if isinstance(op, (T.Mmap, T.MremapMove)):
            nregion += 1
    if exit_all:
        ops.extend(T.Exit(pid) for pid in m.layout.alive())
    return ops


@dataclass
class RandomWorkload:
    """A random valid trace (random_trace), seeded by the cell's seed."""
    name: str = "random"
    n_ops: int = 40
    forks: bool = True


@register_workload(RandomWorkload)
def random_workload(cfg: RandomWorkload, seed: int) -> list[T.Op]:
    return random_trace(seed, cfg.n_ops, forks=cfg.forks)

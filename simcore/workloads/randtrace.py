"""Random *valid* traces: proposals are checked against a scratch eager machine and only
operations it accepts are kept.  Used by property tests and the kernel differential test.

Besides uniformly drawn operations, a share of proposals aims at address-space *shapes*
that uniform draws almost never produce (see :func:`_propose_shape`): holes between two
mappings and their exact fills (``mmap``/``mremap`` move placed with ``after``, in-place
growth up to the next mapping, which then merges as ``vma_merge_extend`` does), moves and
shrinks of ranges that span several VMAs after mprotect/madvise splits (``remap_move``
and ``shrink_vma`` of Linux 6.17+).  All of them are expressible in trace format v1."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .. import trace as T
from ..layout import DONTCOPY, PROT, UNMAPPED
from ..machine import Machine
from ..registry import register_workload
from ..vma import VM_HUGEPAGE, VM_SHARED

PROTS = ("rw", "rw", "rw", "r", "rx", "rwx", "none")
PROT_NAME = {bits: name for name, bits in PROT.items()}
THP = 512              # pages of a PMD-sized folio (x86-64); layout slots are PMD-aligned
MAX_HOLE = 64          # holes wider than this (e.g. the gaps between layout slots) are not filled
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
                        "fork", "exec", "exit", "rmap", "shape", "thp"],
                       [10, 14, 5, 3, 3, 5, 2, 4, 1, 2, 0 if kernel_safe else 2, 8, 5])[0]
    if kind == "shape":
        return _propose_shape(rng, m, pid, nregion) if names else None
    if kind == "thp":
        return _propose_thp(rng, m, pid, nregion)
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


def thp_stage(m: Machine, pid: int, name: str) -> str | None:
    """How far region `name` is on the way to a THP split between VMAs: "cut" (its first
    PMD holds a huge folio), "touch" (MADV_HUGEPAGE, nothing resident), "advise" (a private
    anonymous PMD, fully mapped) or None."""
    region = m.layout.regions[pid][name]
    if region.extent < THP or region.start % THP:
        return None
    vmas = m.procs[pid].vmas_in_range(region.start, region.start + THP)
    if not vmas or any(not v.is_anonymous() or v.vm_flags & VM_SHARED for v in vmas):
        return None
    ids = [v.pte[v.pte >= 0] for v in vmas if v.pte is not None]
    if any((m.folios.nr[i] > 1).any() for i in ids):
        return "cut"
    if (region.prot[:THP] == UNMAPPED).any() or len(vmas) > 1:
        return None
    return "touch" if vmas[0].vm_flags & VM_HUGEPAGE else "advise"


def _propose_thp(rng: random.Random, m: Machine, pid: int, nregion: int) -> T.Op | None:
    """The next step of the most advanced THP scenario of pid (a new one if it has none):
    mmap, MADV_HUGEPAGE, a write fault, then an operation on part of the huge folio."""
    stages: dict[str, list[str]] = {}
    for name in sorted(m.layout.regions[pid]):
        if (stage := thp_stage(m, pid, name)) is not None:
            stages.setdefault(stage, []).append(name)
    if "cut" in stages and rng.random() < 0.8:
        name = rng.choice(stages["cut"])
        first = rng.randrange(THP)
        count = rng.randint(1, THP - first)
        how = rng.choice(("move", "move", "madvise", "mprotect", "munmap"))
        if how == "move":
            names = sorted(m.layout.regions[pid])
            after = rng.choice(names) if rng.random() < 0.3 else None
            return T.MremapMove(pid, name, f"r{nregion}", first, count, after=after)
        if how == "madvise":
            advice = rng.choice(("dontfork", "dontfork", "mergeable", "wipeonfork", "nohugepage",
                                 "dontneed", "pageout"))
            return T.Madvise(pid, name, advice, first, count)
        if how == "mprotect":
            return T.Mprotect(pid, name, rng.choice(("r", "rx", "none")), first, count)
        return T.Munmap(pid, name, first, count)
    if "touch" in stages:
        return T.Touch(pid, rng.choice(stages["touch"]), rng.randrange(THP), 1)
    if "advise" in stages:
        return T.Madvise(pid, rng.choice(stages["advise"]), "hugepage", 0, THP)
    return T.Mmap(pid, f"r{nregion}", THP * rng.choice((1, 1, 2)))


def _holes(m: Machine, pid: int) -> list[tuple[str, int]]:
    """(region X, pages): X's last page is mapped and the next mapping of the process starts
    that many pages (at most MAX_HOLE) after X's end, so `after: X` can fill the hole exactly."""
    mm = m.procs[pid]
    out = []
    for name, region in sorted(m.layout.regions[pid].items()):
        if region.prot[-1] == UNMAPPED or mm.vmas_in_range(region.end, region.end + 1):
            continue
        following = mm.vmas_in_range(region.end, region.end + MAX_HOLE)
        if following:
            out.append((name, following[0].vm_start - region.end))
    return out


def _mapped_window(rng: random.Random, prot, pages: int) -> int | None:
    """A random first page of `pages` consecutive mapped pages of a region, or None."""
    firsts = [i for i in range(len(prot) - pages + 1) if (prot[i:i + pages] != UNMAPPED).all()]
    return rng.choice(firsts) if firsts else None


def _propose_shape(rng: random.Random, m: Machine, pid: int, nregion: int) -> T.Op | None:
    """An operation aimed at a hole between mappings or at a region split into several VMAs."""
    regions = m.layout.regions[pid]
    names = sorted(regions)
    mm = m.procs[pid]
    what = rng.choice(("fill", "fill", "fill", "move_split", "shrink_split"))
    if what == "fill":                              # exact hole fills and growth into a neighbour
        holes = _holes(m, pid)
        if holes and rng.random() < 0.8:
            anchor, pages = rng.choice(holes)
            region = regions[anchor]
            how = rng.choice(("mmap", "move", "grow"))
            if how == "mmap":
                prot = PROT_NAME[int(region.prot[-1]) & ~DONTCOPY]
                return T.Mmap(pid, f"r{nregion}", pages, prot=prot, after=anchor)
            if how == "move":
                source = rng.choice(names)
                first = _mapped_window(rng, regions[source].prot, pages)
                if first is None:
                    return None
                return T.MremapMove(pid, source, f"r{nregion}", first, pages, after=anchor)
            grow = pages if rng.random() < 0.7 else rng.randint(1, pages)
            return T.MremapResize(pid, anchor, region.extent + grow)
        # open a hole: shrink or unmap a region that another mapping follows, or place one
        followed = [name for name in names
                    if mm.vmas_in_range(regions[name].end, regions[name].end + 1)]
        if not followed:
            return T.Mmap(pid, f"r{nregion}", rng.randint(1, 16), after=rng.choice(names))
        between = [name for name in followed
                   if mm.vmas_in_range(regions[name].start - 1, regions[name].start)]
        if between and rng.random() < 0.5:
            return T.Munmap(pid, rng.choice(between))
        name = rng.choice(followed)
        return T.MremapResize(pid, name, rng.randint(1, max(1, regions[name].extent - 1)))
    # a region whose pages span several VMAs (mprotect, madvise or mlock split it)
    split = [(name, vmas) for name in names
             if len(vmas := mm.vmas_in_range(regions[name].start, regions[name].end)) > 1]
    if not split:
        name = rng.choice(names)
        region = regions[name]
        if region.extent < 3:
            return None
        first = rng.randint(1, region.extent - 2)
        return T.Mprotect(pid, name, rng.choice(("r", "rx", "none")), first,
                          rng.randint(1, region.extent - 1 - first))
    name, vmas = rng.choice(split)
    region = regions[name]
    if what == "shrink_split":
        return T.MremapResize(pid, name, rng.randint(1, max(1, vmas[-1].vm_start - region.start)))
    # move_split: from inside one VMA to inside a later one
    i = rng.randrange(len(vmas) - 1)
    j = rng.randrange(i + 1, len(vmas))
    lo = rng.randrange(max(vmas[i].vm_start, region.start), vmas[i].vm_end)
    hi = rng.randrange(vmas[j].vm_start, min(vmas[j].vm_end, region.end)) + 1
    after = rng.choice([None, None, *(h for h, _ in _holes(m, pid))])
    return T.MremapMove(pid, name, f"r{nregion}", lo - region.start, hi - lo, after=after)


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
    name: str = field(default="random", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    n_ops: int = field(default=40, metadata={
        "source": "assumed", "range": (1, 10000), "ref": "trace length; a test workload"})
    forks: bool = field(default=True, metadata={
        "source": "n/a", "range": None, "ref": "switch: traces with fork"})


@register_workload(RandomWorkload)
def random_workload(cfg: RandomWorkload, seed: int) -> list[T.Op]:
    return random_trace(seed, cfg.n_ops, forks=cfg.forks)

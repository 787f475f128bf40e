"""Worst cases for the rmap designs (eager anon_vma, ANON_VMA_LAZY, COW context): a deep fork
chain, a wide fork fan-out, and heavy mremap after fork, each with its processes exiting in
one of several orders.  Each one grows the dimension where some design's objects or rmap-walk
work grow fastest (shared/research/cow-context.md §4, §5.4; kernel-rmap-spec.md R7-R9):

* fork_chain: every generation keeps folios of every ancestor mapped, so eager keeps one
  anon_vma per level and (size + 1) AVCs per VMA in the leaf, while a COW-context walk of a
  folio faulted at the top visits every context below it, dead ones included;
* fork_fanout: ``size`` children of one parent; eager clones AVCs and an anon_vma per child
  and VMA, COW context links one context per child but walks every child context for a
  parent folio, also children that unmapped the region (eager's interval tree drops them);
* mremap_fork: children move their inherited regions and reuse the vacated addresses
  (glibc realloc of mmapped chunks: mremap(MREMAP_MAYMOVE), then a new mapping in the
  hole) ``size`` times, so one pgoff range is mapped at size + 1 offsets in each child:
  COW context keeps them in the child's remap tree and a walk looks each of them up.

``exits`` orders the exits (the last process in that order lives on to the end):
parent_first (daemonisation: each parent exits right after its fork in a chain; the parent,
then its children, in a fan-out), children_first (the leaf upwards / children in fork order,
then the parent), random, interleaved (from both ends alternately in a chain; the parent
halfway through its children's exits in a fan-out).  Memory-pressure walks come from
``pressured`` (walks of written regions) and, after every fork or exit, a reclaim scan of a
region inherited from the first process by a random live process (the pages every design
has to find through the hierarchy).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from .. import trace as T
from ..registry import register_workload
from .common import Emitter, Pressure, pressured

EXIT_ORDERS = ("parent_first", "children_first", "random", "interleaved")
_WHY = "worst case for the rmap designs (shared/research/cow-context.md §4, §5.4)"


@dataclass
class _WorstCase(Pressure):
    """What the three worst cases share."""
    size: int = field(default=32, metadata={
        "source": "assumed", "range": (2, 1024),
        "ref": "the grown dimension (chain depth, children, moves per region); " + _WHY})
    regions: int = field(default=8, metadata={
        "source": "assumed", "range": (1, 400),
        "ref": "anon regions the first process writes before it forks (1.5: 40-400 VMAs, "
               "44 % with anon pages, shared/research/workloads-and-style.md)"})
    region_pages: int = field(default=8, metadata={
        "source": "assumed", "range": (1, 4096), "ref": "pages per region; " + _WHY})
    cow: float = field(default=0.25, metadata={
        "source": "assumed", "range": (0.0, 1.0),
        "ref": "share of inherited regions each new process writes again (COW); apache/"
               "postgres children rewrite a few heap regions (servers.py)"})
    exits: str = field(default="parent_first", metadata={
        "source": "n/a", "range": None,
        "ref": "switch: the exit order, one of " + ", ".join(EXIT_ORDERS) + " (module docstring)"})
    scan_pages: int = field(default=2, metadata={
        "source": "assumed", "range": (0, 4096),
        "ref": "pages of an inherited region walked by the reclaim scan after each fork "
               "and exit (0: none)"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (2, 2),
        "ref": "the Emitter's page count, unused: regions have region_pages pages"})


def _order(rng: random.Random, first: int, rest: list[int], how: str, chain: bool) -> list[int]:
    """Exit order of `first` (the parent / top of the chain) and `rest` (children in fork
    order / the chain downwards) under `how` (EXIT_ORDERS)."""
    if how == "parent_first":
        return [first, *rest]
    if how == "children_first":
        return [*reversed(rest), first] if chain else [*rest, first]
    if how == "random":
        out = [first, *rest]
        rng.shuffle(out)
        return out
    if how == "interleaved":
        if chain:                                    # leaf, top, leaf - 1, top + 1, ...
            ends = [first, *rest]
            return [ends.pop(-1 if k % 2 == 0 else 0) for k in range(len(ends))]
        return [*rest[:len(rest) // 2], first, *rest[len(rest) // 2:]]
    raise ValueError(f"exits={how!r} is not one of {', '.join(EXIT_ORDERS)}")


class _Procs:
    """Live processes and the first process's regions each one still maps in place."""

    def __init__(self, rng: random.Random, cfg: _WorstCase) -> None:
        self.rng, self.cfg = rng, cfg
        self.inherited: dict[int, list[str]] = {}

    def root(self, pid: int) -> Iterator[T.Op]:
        """fork + exec of the first process, which maps and writes cfg.regions regions
        (each after a one-page guard, so its address can be mapped again after a move)."""
        yield T.Fork(0, pid)
        yield T.Exec(pid)
        names = []
        for i in range(self.cfg.regions):
            yield T.Mmap(pid, f"guard{i}", 1, prot="none")
            yield T.Mmap(pid, f"r{i}", self.cfg.region_pages, after=f"guard{i}")
            yield T.Touch(pid, f"r{i}")
            names.append(f"r{i}")
        self.inherited[pid] = names

    def fork(self, parent: int, child: int) -> Iterator[T.Op]:
        """fork; the child writes cfg.cow of its inherited regions again."""
        yield T.Fork(parent, child)
        self.inherited[child] = list(self.inherited[parent])
        for name in self.inherited[child]:
            if self.rng.random() < self.cfg.cow:
                yield T.Touch(child, name)
        yield from self.scan()

    def exit(self, pid: int) -> Iterator[T.Op]:
        yield T.Exit(pid)
        del self.inherited[pid]
        yield from self.scan()

    def exit_all_but_last(self, first: int, rest: list[int], chain: bool = False) -> Iterator[T.Op]:
        """Every process but the last of the cfg.exits order exits (it lives on)."""
        for pid in _order(self.rng, first, rest, self.cfg.exits, chain)[:-1]:
            yield from self.exit(pid)

    def scan(self) -> Iterator[T.Op]:
        """Reclaim of a region inherited from the first process, by a random live process."""
        live = [pid for pid in sorted(self.inherited) if self.inherited[pid]]
        if self.cfg.scan_pages and live:
            pid = self.rng.choice(live)
            region = self.rng.choice(self.inherited[pid])
            yield T.Rmap(pid, region, "reclaim", 0, min(self.cfg.scan_pages, self.cfg.region_pages))


@dataclass
class ForkChain(_WorstCase):
    name: str = field(default="fork_chain", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})


@register_workload(ForkChain)
@pressured
def fork_chain(cfg: ForkChain, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    """A chain of cfg.size forks (each child forks the next), every generation writing a new
    region of its own; parent_first exits each parent right after its fork (a daemonising
    chain: only the leaf lives), the other orders exit all but one at the end."""
    procs = _Procs(rng, cfg)
    yield from procs.root(1)
    chain = list(range(2, cfg.size + 2))
    for pid in chain:
        yield from procs.fork(pid - 1, pid)
        yield T.Mmap(pid, f"own{pid}", cfg.region_pages)
        yield T.Touch(pid, f"own{pid}")
        if cfg.exits == "parent_first":
            yield from procs.exit(pid - 1)
    if cfg.exits != "parent_first":
        yield from procs.exit_all_but_last(1, chain, chain=True)


@dataclass
class ForkFanout(_WorstCase):
    name: str = field(default="fork_fanout", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    unmap: float = field(default=0.5, metadata={
        "source": "assumed", "range": (0.0, 1.0),
        "ref": "share of inherited regions each child unmaps (a zygote child or a worker "
               "freeing the parent's heap): eager's interval tree drops those VMAs, a "
               "COW-context walk still visits the child's context"})


@register_workload(ForkFanout)
@pressured
def fork_fanout(cfg: ForkFanout, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    """One parent forks cfg.size children, each writing some inherited regions and
    unmapping others, then all but one exit in cfg.exits order."""
    procs = _Procs(rng, cfg)
    yield from procs.root(1)
    children = list(range(2, cfg.size + 2))
    for pid in children:
        yield from procs.fork(1, pid)
        keep = []
        for name in procs.inherited[pid]:
            if rng.random() < cfg.unmap:
                yield T.Munmap(pid, name)
            else:
                keep.append(name)
        procs.inherited[pid] = keep
    yield from procs.exit_all_but_last(1, children)


@dataclass
class MremapFork(_WorstCase):
    name: str = field(default="mremap_fork", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    size: int = field(default=8, metadata={
        "source": "assumed", "range": (1, 256),
        "ref": "moves per inherited region in each child (glibc realloc of an mmapped "
               "chunk: mremap(MREMAP_MAYMOVE), the hole then mapped again); " + _WHY})
    children: int = field(default=8, metadata={
        "source": "assumed", "range": (1, 1024),
        "ref": "children of the first process (prefork servers: 150-256 workers, "
               "shared/research/workloads-and-style.md 1.6)"})


@register_workload(MremapFork)
@pressured
def mremap_fork(cfg: MremapFork, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    """The first process forks cfg.children children; each child cfg.size times moves every
    region it has at an inherited address (writing it with probability cfg.cow) and maps a
    new region in the hole, written; then all but one exit in cfg.exits order."""
    procs = _Procs(rng, cfg)
    yield from procs.root(1)
    children = list(range(2, cfg.children + 2))
    for pid in children:
        yield from procs.fork(1, pid)
    for pid in children:
        for i in range(cfg.regions):
            here = f"r{i}"
            for k in range(cfg.size):
                moved = f"r{i}m{k}"
                yield T.MremapMove(pid, here, moved)
                if rng.random() < cfg.cow:
                    yield T.Touch(pid, moved)
                here = f"r{i}n{k}"
                yield T.Mmap(pid, here, cfg.region_pages, after=f"guard{i}")
                yield T.Touch(pid, here)
        procs.inherited[pid] = [f"r{i}m0" for i in range(cfg.regions)]
        yield from procs.scan()
    yield from procs.exit_all_but_last(1, children)

"""Hypothesis draws trace OPERATIONS, so a failing property shrinks to a few-line trace.

:class:`TraceOps` is a rule-based state machine: every rule draws one operation of the
trace format (op kind, a live pid, one of that pid's regions, a page range inside the
region's extent -- inside a mapped run where the op needs mapped pages --, prot, advice,
walk kind, fork/exec/exit); two rules make a transparent huge page and cut it (an mremap
move, madvise, mprotect or munmap of part of the folio).  A scratch eager machine validates each op; the few drawn ops
it rejects (``TraceError``: e.g. a write touch of read-only pages) are skipped, so the
trace of accepted ops is always valid.  Subclasses list the machines under test in
``targets`` and add ``@invariant`` checks; the teardown exits every process and checks
for leaks.  On any failure the accepted trace is printed as trace JSON lines
(``simcore.trace.dumps``) and kept in :attr:`TraceOps.failures`.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from hypothesis import event, note, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from simcore import trace as T
from simcore.check import check_no_leaks
from simcore.layout import UNMAPPED, Region
from simcore.machine import Machine
from simcore.workloads.randtrace import THP, thp_stage

MAX_PROCS = 6
# first = what shrinking tends to
PROTS = ("rw", "r", "none", "rx", "rwx")
KINDS = ("anon", "file", "shared_anon", "shared_file")
PAGES = st.one_of(st.integers(1, 16), st.sampled_from((512, 1024)))   # 512: a PMD (THP)


def mapped_runs(region: Region) -> list[tuple[int, int]]:
    """[first, end) page runs of ``region`` that are mapped."""
    mapped = np.concatenate(([0], (region.prot != UNMAPPED).view(np.int8), [0]))
    edges = np.flatnonzero(np.diff(mapped))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class TraceOps(RuleBasedStateMachine):
    """Draws valid trace operations and applies them to ``targets``."""

    failures: list[list[T.Op]] = []        # every failing trace, in order (the last is shrunk)

    def __init__(self) -> None:
        super().__init__()
        self.scratch = Machine("eager")
        self.ops: list[T.Op] = []
        self.next_pid = 1
        self.nregion = 0
        self.targets: list[Machine] = []
        self.failed = False

    # ---- applying ------------------------------------------------------------
    @contextmanager
    def explained(self) -> Iterator[None]:
        """Print (and keep) the trace so far if the body fails."""
        try:
            yield
        except Exception:
            if not self.failed:                  # once, at the innermost level
                self.failed = True
                type(self).failures.append(list(self.ops))
                note("failing trace (trace JSON lines):\n" + T.dumps(self.ops))
            raise

    def apply(self, op: T.Op) -> None:
        op = dataclasses.replace(op, line=len(self.ops) + 1)
        try:
            self.scratch.apply(op)
        except T.TraceError:
            event(f"skipped invalid {type(op).__name__}")
            return
        self.ops.append(op)
        self.next_pid += isinstance(op, T.Fork)
        self.nregion += isinstance(op, (T.Mmap, T.MremapMove))
        with self.explained():
            for m in self.targets:
                m.apply(op)

    def teardown(self) -> None:
        if self.failed:            # the targets are broken; the failure is already reported
            return
        with self.explained():
            for pid in self.scratch.layout.alive():
                self.apply(T.Exit(pid))
            for m in self.targets:
                check_no_leaks(m)

    # ---- drawing -------------------------------------------------------------
    def alive(self) -> list[int]:
        return self.scratch.layout.alive()

    def with_regions(self) -> list[int]:
        return [p for p in self.alive() if self.scratch.layout.regions[p]]

    def has_regions(self) -> bool:
        return bool(self.with_regions())

    def draw_region(self, data: st.DataObject) -> tuple[int, str, Region]:
        pid = data.draw(st.sampled_from(self.with_regions()), label="pid")
        regions = self.scratch.layout.regions[pid]
        name = data.draw(st.sampled_from(sorted(regions)), label="region")
        return pid, name, regions[name]

    def draw_range(self, data: st.DataObject, mapped: bool = True) -> tuple[int, str, int, int]:
        """(pid, region, first, count): a page range inside the region's extent, or inside
        one of its mapped runs if ``mapped``."""
        pid, name, region = self.draw_region(data)
        runs = mapped_runs(region) if mapped else [(0, region.extent)]
        lo, hi = data.draw(st.sampled_from(runs), label="run")
        first = data.draw(st.integers(lo, hi - 1), label="first")
        return pid, name, first, data.draw(st.integers(1, hi - first), label="count")

    # ---- rules: one per operation kind ----------------------------------------
    @rule(data=st.data(), pages=PAGES, kind=st.sampled_from(KINDS), prot=st.sampled_from(PROTS),
          populate=st.booleans())
    def mmap(self, data, pages, kind, prot, populate) -> None:
        pid = data.draw(st.sampled_from(self.alive()), label="pid")
        fields: dict = {}
        if kind.endswith("file"):
            fields.update(file=data.draw(st.sampled_from("fg"), label="file"),
                          offset=data.draw(st.integers(0, 31), label="offset"))
        names = sorted(self.scratch.layout.regions[pid])
        after = data.draw(st.none() | st.sampled_from(names), label="after") if names else None
        self.apply(T.Mmap(pid, f"r{self.nregion}", pages, kind=kind, prot=prot,
                          populate=populate, after=after, **fields))

    @precondition(has_regions)
    @rule(data=st.data(), write=st.booleans())
    def touch(self, data, write) -> None:
        pid, name, first, count = self.draw_range(data)
        self.apply(T.Touch(pid, name, first, count, write=write))

    @precondition(has_regions)
    @rule(data=st.data(), prot=st.sampled_from(PROTS))
    def mprotect(self, data, prot) -> None:
        pid, name, first, count = self.draw_range(data)
        self.apply(T.Mprotect(pid, name, prot, first, count))

    @precondition(has_regions)
    @rule(data=st.data())
    def munmap(self, data) -> None:
        pid, name, first, count = self.draw_range(data, mapped=False)
        self.apply(T.Munmap(pid, name, first, count))

    @precondition(has_regions)
    @rule(data=st.data(), advice=st.sampled_from(T.ADVICES))
    def madvise(self, data, advice) -> None:
        pid, name, first, count = self.draw_range(data)
        self.apply(T.Madvise(pid, name, advice, first, count))

    @precondition(has_regions)
    @rule(data=st.data(), lock=st.booleans())
    def mlock(self, data, lock) -> None:
        pid, name, first, count = self.draw_range(data)
        self.apply(T.Mlock(pid, name, first, count, lock=lock))

    @precondition(has_regions)
    @rule(data=st.data(), walk=st.sampled_from(T.WALKS))
    def rmap(self, data, walk) -> None:
        pid, name, first, count = self.draw_range(data)
        self.apply(T.Rmap(pid, name, walk, first, count))

    @precondition(has_regions)
    @rule(data=st.data())
    def mremap_resize(self, data) -> None:
        pid, name, region = self.draw_region(data)
        pages = data.draw(st.integers(1, region.extent + 8), label="pages")
        self.apply(T.MremapResize(pid, name, pages))

    @precondition(has_regions)
    @rule(data=st.data())
    def mremap_move(self, data) -> None:
        pid, name, first, count = self.draw_range(data)
        after = data.draw(st.none() | st.sampled_from(sorted(self.scratch.layout.regions[pid])),
                          label="after")
        self.apply(T.MremapMove(pid, name, f"r{self.nregion}", first, count, after=after))

    @rule(data=st.data(), page=st.integers(0, THP - 1))
    def thp(self, data, page) -> None:
        """A PMD-aligned private mapping, MADV_HUGEPAGE, a write fault: one huge folio."""
        pid = data.draw(st.sampled_from(self.alive()), label="pid")
        name = f"r{self.nregion}"
        self.apply(T.Mmap(pid, name, THP))
        self.apply(T.Madvise(pid, name, "hugepage", 0, THP))
        self.apply(T.Touch(pid, name, page, 1))

    def huge(self) -> list[tuple[int, str]]:
        """(pid, region) whose first PMD holds a huge folio."""
        return [(pid, name) for pid in self.with_regions()
                for name in sorted(self.scratch.layout.regions[pid])
                if thp_stage(self.scratch, pid, name) == "cut"]

    @precondition(lambda self: bool(self.huge()))
    @rule(data=st.data(), first=st.integers(0, THP - 1),
          how=st.sampled_from(("move", "dontfork", "mprotect", "mergeable", "munmap",
                               "wipeonfork", "dontneed")))
    def cut_thp(self, data, first, how) -> None:
        """An operation on part of a huge folio: it ends up mapped by several VMAs."""
        pid, name = data.draw(st.sampled_from(self.huge()), label="thp")
        count = data.draw(st.integers(1, THP - first), label="count")
        if how == "move":
            self.apply(T.MremapMove(pid, name, f"r{self.nregion}", first, count))
        elif how == "mprotect":
            self.apply(T.Mprotect(pid, name, "r", first, count))
        elif how == "munmap":
            self.apply(T.Munmap(pid, name, first, count))
        else:
            self.apply(T.Madvise(pid, name, how, first, count))

    @precondition(lambda self: len(self.alive()) < MAX_PROCS)
    @rule(data=st.data())
    def fork(self, data) -> None:
        self.apply(T.Fork(data.draw(st.sampled_from(self.alive()), label="pid"), self.next_pid))

    @rule(data=st.data())
    def exec(self, data) -> None:
        self.apply(T.Exec(data.draw(st.sampled_from(self.alive()), label="pid")))

    @precondition(lambda self: len(self.alive()) > 1)
    @rule(data=st.data())
    def exit(self, data) -> None:
        self.apply(T.Exit(data.draw(st.sampled_from(self.alive()), label="pid")))

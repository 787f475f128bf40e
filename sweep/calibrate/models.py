"""The cost models `sweep calibrate` fits: each a C benchmark over designed shapes, and the
features of each shape from the eager simulator running the same shape as a trace.

fork   ns = fork_a_ns + fork_vma_ns*VMAs + fork_avc_ns*AVCs + fork_av_ns*anon_vmas
            + fork_pte_ns*PTEs                          (dup_mmap(), forkbench.c)
fault  ns = fault_new_ns*new + fault_prepare_ns*prepares + fault_cow_ns*COW copies
            + fault_reuse_ns*reuses                     (handle_mm_fault(), faultbench.c)
walk   ns = walk_a_ns*walks + walk_vma_ns*VMAs visited + walk_pte_ns*PTEs unmapped
            + walk_lock_ns*root lock acquisitions       (MADV_PAGEOUT reclaim, walkbench.c)

Shapes are designed so that the features are not collinear: fork shapes vary depth (AVCs
per VMA), written / untouched / emptied VMAs (anon_vma and AVCs with and without PTEs) and
exited ancestors (anon_vma_clone() reuses an ancestor's anon_vma: AVCs without a new
anon_vma); fault shapes separate first faults with and without anon_vma_prepare(); walk
shapes vary the width (children) and depth (fork chain) of the walked anon_vma's tree.
Each model's `floors` gives every coefficient a lower bound from the cheapest hardware
operation it must contain (floorbench.c): the bounds keep coefficients physical (> 0), they
are deliberately low and are not estimates.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from simcore import trace as T
from simcore.machine import Machine
from simcore.rmap import WalkCost, rmap_walk


# ---------------------------------------------------------------------------- fork
@dataclass(frozen=True)
class ForkShape:
    vmas: int
    pages: int
    mode: int = 1          # 0 untouched, 1 written, 2 written then MADV_DONTNEED
    depth: int = 0
    exited: bool = False   # the chain's ancestors but the root exit before the timed forks

    def label(self) -> str:
        what = ("untouched", f"{self.pages}p written", f"{self.pages}p emptied")[self.mode]
        chain = f"depth {self.depth}" + (" exited" if self.exited else "")
        return f"fork {self.vmas:5d} VMAs x {what:12} {chain}"


class ForkModel:
    """fork(): dup_mmap() in the forking task (the child's exit is not timed)."""
    name = "fork"
    source = "forkbench.c"
    coeffs = ("fork_a_ns", "fork_vma_ns", "fork_avc_ns", "fork_av_ns", "fork_pte_ns")
    features_names = ("1", "VMAs", "AVCs", "anon_vmas", "PTEs")
    fixed: tuple[str, ...] = ()
    # Live depth 1 and exited depth 2 (the root alive) clone the same AVCs into interval
    # trees of the same sizes (root's: 2 nodes, the next: 1): such a pair differs only in
    # the anon_vma allocated, which pins the per-anon_vma cost.  Deeper exited chains are
    # not used: their trees are smaller than a live chain's, and their AVCs cheaper (fewer
    # cold tree nodes to pass on insertion).  The shapes span the forks the predictions
    # price: up to MAX_VMAS VMAs (the largest fork of the seed grid's Android workloads),
    # MAX_AVCS AVCs and MAX_PTES PTEs (the fork microbenchmark's largest), with held-out
    # shapes among them at every size, large ones included: no prediction is an
    # extrapolation.  Large shapes are depth 0-1, as Android's forks are (~0.9 AVC per VMA
    # in the largest); deeper chains stay under 2,000 VMAs (a 3,600-VMA exited depth-2 chain,
    # not a shape any prediction uses, measured 27-39 % above the fit).  Each timed
    # fork starts with its objects out of the private caches and runs unpreempted
    # (forkbench.c says why and how); samples of a preempted fork are dropped.
    train = [ForkShape(*a) for a in (
        (8, 1, 0), (150, 1, 0), (1000, 1, 0), (4000, 1, 0),                 # untouched
        (20, 1, 1), (300, 1, 1), (2000, 1, 1), (4000, 1, 1), (100, 8, 1),
        (1200, 16, 1),                                                      # written
        (300, 8, 1, 1), (400, 1, 1, 1), (3800, 1, 1, 1),
        (150, 1, 1, 1), (150, 1, 1, 2, True), (1000, 1, 1, 1), (1000, 1, 1, 2, True),
        (200, 1, 1, 2), (250, 1, 1, 3), (1500, 1, 1, 3),                    # deep
        (200, 4, 2), (250, 4, 2, 3), (3000, 2, 2))]                         # emptied
    held_out = [ForkShape(*a) for a in (
        (40, 2, 1, 0), (60, 12, 1, 3), (150, 2, 2, 1), (200, 2, 1, 2, True), (300, 4, 1, 1),
        (400, 1, 0), (700, 1, 1, 1), (1000, 16, 1), (2000, 1, 0), (1800, 2, 2, 2),
        (3600, 1, 1, 1), (3600, 2, 1, 0))]
    # the largest fork of android_apps / android_boot (seed 0, eager, arm64_android):
    # 3,595 VMAs, 3,227 AVCs, 1,166 anon_vmas, 1,753 PTEs; report_time.MICRO_SHAPES:
    # 1,000 VMAs x 16 written pages = 16,000 PTEs
    MAX_VMAS, MAX_AVCS, MAX_PTES = 3600, 3300, 16000
    per_run = 5                                  # forks timed per invocation

    @staticmethod
    def features(s: ForkShape) -> np.ndarray:
        """[1, VMAs, AVCs allocated, anon_vmas allocated, PTEs copied] of the timed fork."""
        ops: list[T.Op] = []
        for i in range(s.vmas):
            ops.append(T.Mmap(0, f"r{i}", s.pages))
            if s.mode:
                ops.append(T.Touch(0, f"r{i}"))
        for d in range(s.depth):
            ops.append(T.Fork(d, d + 1))
        if s.exited:
            ops += [T.Exit(d) for d in range(1, s.depth)]     # the root stays alive
        if s.mode == 2:
            ops += [T.Madvise(s.depth, f"r{i}", "dontneed") for i in range(s.vmas)]
        ops.append(T.Fork(s.depth, 1000))
        f = Machine("eager").run(ops).forks[-1]
        return np.array([1.0, f.vmas, f.avcs, f.anon_vmas, f.ptes])

    @staticmethod
    def argv(s: ForkShape, n: int) -> list[str]:
        return [str(s.vmas), str(s.pages), str(s.mode), str(s.depth), str(int(s.exited)), str(n)]

    @staticmethod
    def samples(out: str, s: ForkShape) -> list[float]:
        """ns of each fork that was not preempted (forkbench prints "<ns>:<preemptions>")."""
        got = [tuple(map(int, v.split(":"))) for v in out.split()]
        return [float(ns) for ns, preempted in got if preempted == 0]

    @staticmethod
    def floors(fl: dict) -> dict[str, float]:
        # a syscall; vm_area_dup() copies 192 B (3 lines); an AVC is one line, an anon_vma
        # two; copying an anon PTE takes the folio's refcount and mapcount (2 atomics)
        return {"fork_a_ns": fl["syscall"], "fork_vma_ns": 3 * fl["line"],
                "fork_avc_ns": fl["line"], "fork_av_ns": 2 * fl["line"],
                "fork_pte_ns": 2 * fl["atomic"]}


# ---------------------------------------------------------------------------- faults
@dataclass(frozen=True)
class FaultShape:
    mode: str              # new, prepared, cow, reuse (faultbench.c)
    vmas: int
    pages: int

    def label(self) -> str:
        return f"fault {self.mode:8} {self.vmas:4d} VMAs x {self.pages:3d}p"


class FaultModel:
    """Anonymous write faults: do_anonymous_page() (with or without anon_vma_prepare()),
    wp_page_copy() (COW) and wp_page_reuse()."""
    name = "fault"
    source = "faultbench.c"
    coeffs = ("fault_new_ns", "fault_prepare_ns", "fault_cow_ns", "fault_reuse_ns")
    features_names = ("new", "prepares", "COW copies", "reuses")
    fixed: tuple[str, ...] = ()
    # 2048 faults per shape (1024 COW copies: larger COW runs show a heavy tail of slow
    # repetitions on a loaded machine)
    train = [FaultShape(mode, v, p) for mode, sizes in (
        ("new", ((2048, 1), (512, 4), (128, 16), (32, 64))),
        ("prepared", ((256, 9), (64, 33), (16, 129))),
        ("cow", ((512, 2), (64, 16), (8, 128))),
        ("reuse", ((1024, 2), (128, 16), (16, 128)))) for v, p in sizes]
    held_out = [FaultShape("new", 256, 8), FaultShape("new", 1024, 2),
                FaultShape("prepared", 32, 65), FaultShape("cow", 128, 8),
                FaultShape("reuse", 512, 1)]
    per_run = 3                                  # repetitions per invocation

    @staticmethod
    def features(s: FaultShape) -> np.ndarray:
        """[new faults, anon_vmas prepared, COW copies, reuses] of the timed writes: the
        fault counts the simulator keeps for the time model (Machine.faults, fault.py)."""
        m = Machine("eager")
        ops: list[T.Op] = [T.Mmap(0, f"r{i}", s.pages) for i in range(s.vmas)]
        first = 0
        if s.mode == "prepared":
            ops += [T.Touch(0, f"r{i}", 0, 1) for i in range(s.vmas)]
            first = 1
        if s.mode in ("cow", "reuse"):
            ops += [T.Touch(0, f"r{i}") for i in range(s.vmas)]
            ops.append(T.Fork(0, 1))
            if s.mode == "reuse":
                ops.append(T.Exit(1))
        m.run(ops)
        before = dict(m.faults)
        m.run([T.Touch(0, f"r{i}", first, s.pages - first) for i in range(s.vmas)])
        return np.array([m.faults[k] - before[k] for k in ("new", "prepare", "cow", "reuse")],
                        float)

    @staticmethod
    def argv(s: FaultShape, n: int) -> list[str]:
        return [s.mode, str(s.vmas), str(s.pages), str(n)]

    @staticmethod
    def samples(out: str, s: FaultShape) -> list[float]:
        return [float(v) for v in out.split()]

    @staticmethod
    def floors(fl: dict) -> dict[str, float]:
        # an exception entry/exit is at least a syscall round trip; a new page is cleared, a
        # COW page copied; anon_vma_prepare() initialises an anon_vma (2 lines) and an AVC
        # (1 line) and takes the root lock for write (2 atomics)
        return {"fault_new_ns": fl["syscall"] + fl["clear"],
                "fault_prepare_ns": 3 * fl["line"] + 2 * fl["atomic"],
                "fault_cow_ns": fl["syscall"] + fl["copy"],
                "fault_reuse_ns": fl["syscall"]}


# ---------------------------------------------------------------------------- rmap walks
@dataclass(frozen=True)
class WalkShape:
    width: int             # children that COW-wrote their copies
    depth: int             # a fork chain whose every level COW-wrote its copies
    pages: int

    def label(self) -> str:
        return f"walk width {self.width:3d} depth {self.depth:3d} x {self.pages:4d}p"


class WalkModel:
    """try_to_unmap()'s rmap walk in reclaim by MADV_PAGEOUT onto a swap device (zram):
    walkbench.c.  MADV_PAGEOUT reclaims only folios mapped once, each with one walk that
    unmaps one PTE under one root lock: walks, PTEs unmapped and lock acquisitions are the
    same count in every shape, so walk_pte_ns and walk_lock_ns are not identifiable here.
    They are held at their floors (2 atomics each: ptep_get_and_clear() + the mapcount;
    down_read() + up_read() of an uncontended rwsem) and walk_a_ns carries the rest of the
    per-folio reclaim cost (isolation, swap slot, zram store, freeing)."""
    name = "walk"
    source = "walkbench.c"
    coeffs = ("walk_a_ns", "walk_vma_ns", "walk_pte_ns", "walk_lock_ns")
    features_names = ("walks", "VMAs visited", "PTEs unmapped", "root locks")
    fixed = ("walk_pte_ns", "walk_lock_ns")
    per_run = 3
    train = [WalkShape(w, d, p) for w, d, p in ((0, 0, 256), (4, 0, 256), (16, 0, 256),
                                                (64, 0, 128), (0, 4, 256), (0, 16, 128),
                                                (0, 48, 64), (16, 16, 64))]
    held_out = [WalkShape(w, d, p) for w, d, p in ((8, 0, 256), (32, 0, 128), (0, 8, 256),
                                                   (4, 4, 128), (0, 24, 96))]
    needs_swap = True

    @staticmethod
    def features(s: WalkShape) -> np.ndarray:
        """[walks, VMAs visited, PTEs unmapped, root lock acquisitions] of try_to_unmap() on
        every page of the root's region, after it moved (walkbench.c)."""
        ops: list[T.Op] = [T.Mmap(0, "a", s.pages), T.Touch(0, "a")]
        for c in range(1, s.width + 1):
            ops += [T.Fork(0, c), T.Touch(c, "a")]
        parent = 0
        for d in range(s.depth):
            ops += [T.Fork(parent, 1000 + d), T.Touch(1000 + d, "a")]
            parent = 1000 + d
        ops.append(T.MremapMove(0, "a", "b"))
        m = Machine("eager").run(ops)
        vma, = m.procs[0].vmas
        cost = WalkCost()
        ptes = 0
        for fid in np.unique(vma.pte[vma.pte >= 0]).tolist():
            ptes += len(rmap_walk(m, int(fid), cost, early_exit=True))   # try_to_unmap()
        return np.array([cost.walks, cost.vmas_visited, ptes, cost.root_lock_read], float)

    @staticmethod
    def argv(s: WalkShape, n: int) -> list[str]:
        return [str(s.width), str(s.depth), str(s.pages), str(n)]

    @staticmethod
    def samples(out: str, s: WalkShape) -> list[float]:
        """ns of each repetition that reclaimed every page (others would time fewer walks
        than the features count)."""
        got = [tuple(map(int, v.split(":"))) for v in out.split()]
        return [float(ns) for ns, reclaimed in got if reclaimed == s.pages]

    @staticmethod
    def floors(fl: dict) -> dict[str, float]:
        return {"walk_a_ns": 2 * fl["atomic"], "walk_vma_ns": fl["line"],
                "walk_pte_ns": 2 * fl["atomic"], "walk_lock_ns": 2 * fl["atomic"]}


MODELS = {m.name: m for m in (ForkModel, FaultModel, WalkModel)}


def shape_params(shape) -> list:
    return list(astuple(shape))

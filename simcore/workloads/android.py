"""Android workloads: a boot (init, zygote64, ~130 apps, native daemons, sub-zygotes) and
a sequence of app launches, as streams of trace operations.

Parameters and their sources are in shared/research/workloads-and-style.md (1.3, 1.4):
VMAs per app process 2,900-4,100; 26-32 % of VMAs hold anon pages, 55-63 % of those
file-backed private (relro, .data, boot image); libraries 3.6-3.7 VMAs each; PROT_NONE
12-37 %; shared 6-28 %.  Page counts per VMA are kept small (`pages`): object counts do
not depend on them, only the PTE terms of the fork cost do.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from .. import trace as T
from ..registry import register_workload
from .android_life import Life
from .common import Emitter, Image, pressured

REC = "tests/recordings/{}.rec (trace v2, per process; docs/android-workloads.md)"


def _knob(default, source: str, lo, hi, ref: str):
    """A behaviour knob with its provenance (the shape every config field's metadata has)."""
    return field(default=default, metadata={"source": source, "range": (lo, hi), "ref": ref})


# Provenance of every knob (simcore.provenance reads it): source class, plausible range and
# where the value comes from.  W = shared/research/workloads-and-style.md.  "fitted_lazy":
# set where the cover letter's lazy figures land (a calibration, not a prediction).
_BOOT = "the boot numbers: set where the cover letter's after-boot figures land"


@dataclass
class AndroidBoot:
    """Android right after boot (workloads-and-style.md 1.3)."""
    name: str = field(default="android_boot", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    pressure_every: int = field(default=2000, metadata={   # an rmap walk every N ops; 0: none
        "source": "assumed", "range": (500, 8000),
        "ref": "reclaim/migrate/idle walks; no source for their rate (walks change no counts)"})
    pressure_pages: int = field(default=4, metadata={
        "source": "assumed", "range": (1, 16), "ref": "pages walked per phase; no source"})
    boot_apps: int = field(default=130, metadata={          # zygote-forked apps at boot
        "source": "fitted_lazy", "range": (90, 160),
        "ref": "W 1.3 [D]: 125k inherited links (lazy AVC - lazy AV) / 800-1,400 per child"})
    zygote_libs: int = field(default=200, metadata={        # ~1,700 VMAs, ~900 with AV
        "source": "fitted_lazy", "range": (150, 260),
        "ref": "W 1.3 [D]: zygote64 800-1,400 AV-VMAs, from the lazy links; " + _BOOT})
    zygote_anon: int = field(default=450, metadata={        # dalvik/malloc regions
        "source": "fitted_lazy", "range": (300, 600), "ref": "W 1.3 [D]/[K]; " + _BOOT})
    zygote_anon_written: float = field(default=0.5, metadata={
        "source": "fitted_lazy", "range": (0.3, 0.7), "ref": "W 1.3 [D]/[K]; " + _BOOT})
    zygote_file_private: int = field(default=150, metadata={  # boot image, jars, oat (written)
        "source": "fitted_lazy", "range": (100, 200),
        "ref": "W 1.3 [A]: 55-63 % of AV-VMAs file-backed private; count: " + _BOOT})
    zygote_guards: int = field(default=300, metadata={
        "source": "assumed", "range": (150, 600),
        "ref": "W 1.3 [K]: zygote64 1,500-2,500 VMAs; PROT_NONE 12-37 % [A]"})
    zygote_shared: int = field(default=60, metadata={
        "source": "assumed", "range": (30, 120), "ref": "W 1.3 [K]; shared 6-28 % [A]"})
    app_libs: int = field(default=60, metadata={            # libraries loaded after the fork
        "source": "cited", "range": (40, 90),
        "ref": "W 1.3 [A]: 280-440 libraries per app (zygote's 200 + the app's)"})
    app_anon: int = field(default=400, metadata={           # ~3,300 VMAs per app in all
        "source": "assumed", "range": (250, 600),
        "ref": "fills an app to ~3,300 VMAs (W 1.3 [A]: 2,900-4,100); anon split [A] 5-9 % dalvik"})
    app_anon_written: float = field(default=0.25, metadata={  # ~260 AV-VMAs made after fork
        "source": "fitted_lazy", "range": (0.15, 0.4),
        "ref": "W 1.3 [D]: 200-400 AV-VMAs made after the fork, (33.6k + 13.5k) / processes, "
               "from baseline minus lazy figures"})
    app_guards: int = field(default=500, metadata={
        "source": "cited", "range": (350, 1200), "ref": "W 1.3 [A]: PROT_NONE 12-37 % of VMAs"})
    app_shared: int = field(default=500, metadata={
        "source": "cited", "range": (200, 900), "ref": "W 1.3 [A]: shared 6-28 % of VMAs"})
    app_cow: float = field(default=0.3, metadata={          # inherited anon regions rewritten
        "source": "assumed", "range": (0.1, 0.6), "ref": "no source (COW share of an app)"})
    system_server_extra: int = field(default=2, metadata={  # system_server: app images more
        "source": "assumed", "range": (1, 3), "ref": "W 1.3 [K]: system_server 4-6k VMAs"})
    sub_zygotes: int = field(default=2, metadata={          # webview_zygote and app_zygote
        "source": "assumed", "range": (1, 3), "ref": "W 1.3 [K]: fork tree"})
    sub_zygote_children: int = field(default=2, metadata={  # sandboxed/isolated per sub-zygote
        "source": "assumed", "range": (0, 6), "ref": "W 1.3 [K]"})
    boot_app_forks: int = field(default=1, metadata={       # apps that fork a helper at boot
        "source": "fitted_lazy", "range": (0, 10),
        "ref": "lazy AV at boot (4,910 objects = upgraded parents); " + _BOOT})
    init_libs: int = field(default=20, metadata={           # init's image (forks every daemon)
        "source": "assumed", "range": (10, 40), "ref": "no source"})
    natives: int = field(default=220, metadata={            # native daemons: fork + exec
        "source": "assumed", "range": (150, 250), "ref": "W 1.3 [K]: ~150-250 native processes"})
    native_forks: float = field(default=0.1, metadata={     # daemons that fork a helper
        "source": "fitted_lazy", "range": (0.0, 0.3),
        "ref": "vold, netd, installd fork helpers [K]; rate: " + _BOOT})
    native_libs: int = field(default=22, metadata={
        "source": "assumed", "range": (10, 40), "ref": "W 1.3 [K]: 50-300 VMAs, median ~120"})
    native_anon: int = field(default=25, metadata={
        "source": "assumed", "range": (10, 50), "ref": "W 1.3 [K]: 50-300 VMAs, median ~120"})
    native_guards: int = field(default=15, metadata={
        "source": "assumed", "range": (5, 30), "ref": "W 1.3 [K]"})
    pages: int = field(default=2, metadata={                # pages per VMA (1..pages)
        "source": "assumed", "range": (1, 8),
        "ref": "kept small: object counts do not depend on it, only fork PTE terms"})
    # ---- what app processes do after their image (android_life.py); 0: off ----
    arenas: int = _knob(8, "measured", 0, 55, REC.format("java") + ": 12+5 small rw anon "
                        "mmaps per JVM; node.rec: 55 aligned V8 page reservations")
    arena_commits: int = _knob(3, "measured", 0, 8, REC.format("java") + ": mprotect(RW) "
                               "commits of reservations (13x33, 11x8 pages); node.rec: 1 per page")
    arena_frees: float = _knob(0.5, "measured", 0.0, 0.96, REC.format("node") + ": 53 munmaps "
                               "of 55 V8 pages (0.96); java.rec: 6 of 14 heap reservations (0.43)")
    heap_grows: int = _knob(4, "measured", 0, 24, REC.format("node") + ": 24 brk, java.rec: 4 "
                            "brk per process (heap growth in place, modelled as mremap growth)")
    threads: int = _knob(12, "measured", 6, 100, REC.format("java") + ": 13 threads, 11 with a "
                         "MAP_STACK mmap (node.rec: 6); Android apps run 30-100 [K]")
    thread_exits: float = _knob(0.5, "assumed", 0.0, 1.0, "thread pools: half of the threads "
                                "an app starts exit while it lives (java.rec: all 14 at exit)")
    jit_flips: int = _knob(30, "assumed", 0, 252, "0: ART's dual-view JIT code cache (no "
                           "flips); 252: node.rec's one-page mprotect(RW) per V8 process")
    gc_dontneeds: int = _knob(17, "measured", 3, 97, REC.format("java") + ": 3 madvise(DONTNEED)"
                              ", node.rec: 97 per process (default: their geometric mean)")
    heap_trims: int = _knob(2, "assumed", 0, 10, "partial munmaps of an arena's tail chunk "
                            "(node.rec: 62 partial munmaps are reservation trims, modelled apart)")



@dataclass
class AndroidApps(AndroidBoot):
    """The boot, then n_apps apps launched in sequence from zygote64 (1.4)."""
    name: str = field(default="android_apps", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    n_apps: int = field(default=24, metadata={
        "source": "cited", "range": (24, 24), "ref": "the cover letter: after launching 24 apps"})
    procs_min: float = field(default=2.5, metadata={        # processes per app (main + :push...)
        "source": "fitted_lazy", "range": (1.5, 3.5),
        "ref": "W 1.4 [D]: +103k inherited links (lazy AVC growth) and +350k VMAs / 3,300"})
    procs_max: float = field(default=4.5, metadata={
        "source": "fitted_lazy", "range": (3.5, 5.5),
        "ref": "W 1.4 [D]: +103k inherited links (lazy AVC growth) and +350k VMAs / 3,300"})
    app_forks: float = field(default=0.5, metadata={        # launched apps that fork once
        "source": "fitted_lazy", "range": (0.0, 1.0),
        "ref": "W 1.4 [D]: lazy anon_vma +16.3k / 1,300 upgraded VMAs = 12.5 forks of 24 apps; "
               "the author: some apps fork to evade LMKD (no rate)"})
    # ---- the system acting on apps during the launches (android_life.py); 0: off ----
    lmkd_kills: float = _knob(0.25, "assumed", 0.0, 2.0, "LMKD kills of the oldest cached app "
                              "per launch (workloads-and-style.md 1.4: counts are net of kills)")
    app_restarts: float = _knob(0.5, "assumed", 0.0, 1.0, "share of killed apps started again "
                                "from zygote (sticky services, push)")
    compactions: float = _knob(1.0, "cited", 0.0, 1.0, "AOSP CachedAppOptimizer: an app that "
                               "turns cached is compacted (use_compaction, Android 13+)")
    compact_share: float = _knob(1.0, "cited", 0.0, 1.0, "AOSP com_android_server_am_Cached"
                                 "AppOptimizer.cpp compactProcess: process_madvise(MADV_PAGEOUT)"
                                 " over every anonymous VMA; the kernel skips shared folios")
    compact_returns: float = _knob(0.25, "assumed", 0.0, 1.0, "share of launches that bring a "
                                   "compacted app back (its anonymous memory written: swap-in)")


def _zygote(em: Emitter, cfg: AndroidBoot) -> tuple[list[T.Op], list[str]]:
    """init (pid 0) maps its image and starts zygote64 (pid 1) by fork + exec.
    -> the ops, zygote64's written anonymous regions (what its children inherit)."""
    img = Image(cfg.init_libs, 20, 0.5, 0, 10, 2)
    ops = [*em.image(0, img, [f"/system/lib64/i{i}.so" for i in range(cfg.init_libs)])]
    ops += (T.Fork(0, 1), T.Exec(1))
    img = Image(cfg.zygote_libs, cfg.zygote_anon, cfg.zygote_anon_written, cfg.zygote_file_private,
                cfg.zygote_guards, cfg.zygote_shared)
    written: list[str] = []
    ops += em.image(1, img, [f"/system/lib64/z{i}.so" for i in range(cfg.zygote_libs)], written)
    return ops, written


def _app(em: Emitter, cfg: AndroidBoot, parent: int, pid: int, inherited: list[str],
         tag: str, extra: int = 1, life: Life | None = None) -> list[T.Op]:
    """A zygote child specialises: writes inherited pages and maps the app's own image;
    then (life) it runs: android_life.Life.runtime().  -> its ops."""
    ops: list[T.Op] = [T.Fork(parent, pid)]
    ops += em.cow(pid, inherited, cfg.app_cow)
    written = [*inherited]                              # its anonymous regions, written
    for k in range(extra):
        img = Image(cfg.app_libs, cfg.app_anon, cfg.app_anon_written, 0, cfg.app_guards,
                    cfg.app_shared)
        ops += em.image(pid, img, [f"/data/app/{tag}/lib{k}_{i}.so" for i in range(cfg.app_libs)],
                        written)
    if life is not None:
        ops += life.runtime(pid, written)
    return ops


def _boot(em: Emitter, cfg: AndroidBoot, rng: random.Random,
          life: Life) -> Iterator[list[T.Op]]:
    """-> ops, a list at a time (a process's, or a few); em.pid, em.inherited and em.apps
    (each boot app's pids, oldest first) are left for a later phase."""
    zygote, inherited = _zygote(em, cfg)
    em.inherited = inherited
    yield zygote
    pid = 2
    yield _app(em, cfg, 1, pid, inherited, "system_server", 1 + cfg.system_server_extra, life)
    pid += 1
    for z in range(cfg.sub_zygotes):                      # webview_zygote, app_zygote
        sub = pid
        yield _app(em, cfg, 1, sub, inherited, f"subzygote{z}")
        pid += 1
        for _ in range(cfg.sub_zygote_children):
            yield [T.Fork(sub, pid), *em.cow(pid, inherited, cfg.app_cow)]
            pid += 1
    em.apps = []
    for a in range(cfg.boot_apps):
        app = pid
        ops = _app(em, cfg, 1, app, inherited, f"app{a}", life=life)
        em.apps.append([app])
        pid += 1
        if a < cfg.boot_app_forks:
            ops.append(T.Fork(app, pid))
            em.apps[-1].append(pid)
            pid += 1
        yield ops
    for n in range(cfg.natives):                          # init: fork + exec per daemon
        daemon = pid
        img = Image(cfg.native_libs, cfg.native_anon, 0.5, 0, cfg.native_guards, 2)
        ops = [T.Fork(0, daemon), T.Exec(daemon),
               *em.image(daemon, img, [f"/system/lib64/n{i}.so" for i in range(cfg.native_libs)])]
        pid += 1
        if rng.random() < cfg.native_forks:
            ops.append(T.Fork(daemon, pid))
            pid += 1
        yield ops
    em.pid = pid


@register_workload(AndroidBoot)
@pressured(own_walk_rng=True, lists=True)
def android_boot(cfg: AndroidBoot, rng: random.Random, em: Emitter) -> Iterator[list[T.Op]]:
    yield from _boot(em, cfg, rng, Life(cfg, rng))


@register_workload(AndroidApps)
@pressured(own_walk_rng=True, lists=True)
def android_apps(cfg: AndroidApps, rng: random.Random, em: Emitter) -> Iterator[list[T.Op]]:
    """The boot, then the launches (one generator for both phases).  After each launch the
    app before it turns cached and may be compacted; LMKD kills the oldest cached apps and
    some of them start again (android_life.py)."""
    life = Life(cfg, rng)
    yield from _boot(em, cfg, rng, life)
    pid, inherited = em.pid, em.inherited
    cached: list[list[int]] = list(em.apps)              # oldest first
    compacted: list[list[int]] = []
    prev: list[int] | None = None
    kills = 0.0
    for a in range(cfg.n_apps):                           # a launch: its ops in one list
        procs = rng.uniform(cfg.procs_min, cfg.procs_max)
        n = int(procs) + (rng.random() < procs - int(procs))
        main = pid
        mine = []
        ops: list[T.Op] = []
        for p in range(n):                                # main, :push, :remote, ...
            ops += _app(em, cfg, 1, pid, inherited, f"launch{a}", 1 if p == 0 else 0, life)
            mine.append(pid)
            pid += 1
        if int((a + 1) * cfg.app_forks) > int(a * cfg.app_forks):
            ops.append(T.Fork(main, pid))                 # a helper forked by the app (evenly
            mine.append(pid)                              # spread: app_forks x n_apps forks)
            pid += 1
        if prev is not None:                              # the previous app turns cached
            cached.append(prev)
            if cfg.compactions and life.rng.random() < cfg.compactions:
                for p in prev:
                    ops += life.compact(p)
                compacted.append(prev)
        if cfg.compact_returns and compacted and life.rng.random() < cfg.compact_returns:
            back = life.rng.choice(compacted)             # brought back to the foreground
            for p in back:
                ops += life.come_back(p)
        kills += cfg.lmkd_kills
        while kills >= 1 and cached:                      # LMKD: the oldest cached app
            kills -= 1
            dead = cached.pop(0)
            for p in reversed(dead):
                ops.append(T.Exit(p))
                life.died(p)
            if dead in compacted:
                compacted.remove(dead)
            if cfg.app_restarts and life.rng.random() < cfg.app_restarts:
                ops += _app(em, cfg, 1, pid, inherited, f"restart{a}_{pid}", 1, life)
                cached.append([pid])                      # started in the background
                pid += 1
        prev = mine
        yield ops

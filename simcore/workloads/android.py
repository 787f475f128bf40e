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
from dataclasses import dataclass
from typing import Iterator

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


class Emitter:
    """Builds the ops of process images with unique region names."""

    def __init__(self, rng: random.Random, pages: int) -> None:
        self.rng, self.pages, self.n = rng, pages, 0

    def _name(self, tag: str) -> str:
        self.n += 1
        return f"{tag}{self.n}"

    def _p(self) -> int:
        return self.rng.randint(1, self.pages)

    def library(self, pid: int, lib: str, bss: float) -> Iterator[T.Op]:
        """The loader's pattern: text and rodata, then .data written (relocations) with its
        relro head made read-only (one anon_vma, two VMAs), and often a written .bss."""
        a, b, c, d = (self._name("L") for _ in range(4))
        ra, rx, relro, data = self._p(), self._p(), self._p(), self._p()
        yield T.Mmap(pid, a, ra, kind="file", prot="r", file=lib)
        yield T.Mmap(pid, b, rx, kind="file", prot="rx", file=lib, offset=ra, after=a)
        yield T.Mmap(pid, c, relro + data, kind="file", prot="rw", file=lib, offset=ra + rx, after=b)
        yield T.Touch(pid, c)
        yield T.Mprotect(pid, c, "r", 0, relro)
        if self.rng.random() < bss:
            yield T.Mmap(pid, d, self._p(), after=c)
            yield T.Touch(pid, d)

    def image(self, pid: int, img: Image, libs: list[str]) -> Iterator[T.Op]:
        """Every mapping of an image, kinds interleaved as a process would create them."""
        kinds = (["lib"] * img.libs + ["anon"] * img.anon + ["file"] * img.file_private
                 + ["guard"] * img.guards + ["shared"] * img.shared)
        self.rng.shuffle(kinds)
        nlib = 0
        for kind in kinds:
            if kind == "lib":
                yield from self.library(pid, libs[nlib % len(libs)], img.bss)
                nlib += 1
            elif kind == "anon":
                name = self._name("A")
                yield T.Mmap(pid, name, self._p())
                if self.rng.random() < img.anon_written:
                    yield T.Touch(pid, name)
            elif kind == "file":
                name = self._name("F")
                yield T.Mmap(pid, name, self._p(), kind="file", prot="rw",
                             file=f"boot{self.rng.randrange(40)}.art", offset=self.rng.randrange(512))
                yield T.Touch(pid, name)
            elif kind == "guard":
                yield T.Mmap(pid, self._name("G"), self._p(), prot="none")
            else:
                yield T.Mmap(pid, self._name("S"), self._p(), kind="shared_anon")

    def cow(self, pid: int, regions: list[str], fraction: float) -> Iterator[T.Op]:
        """A forked process writes some inherited anon regions again (COW)."""
        for name in regions:
            if self.rng.random() < fraction:
                yield T.Touch(pid, name)


@dataclass
class AndroidBoot:
    """Android right after boot (workloads-and-style.md 1.3)."""
    name: str = "android_boot"
    pressure_every: int = 2000      # an rmap walk (reclaim/migrate/idle) every N ops; 0: none
    pressure_pages: int = 4
    boot_apps: int = 130            # zygote-forked app processes at boot (90-160)
    zygote_libs: int = 200          # libraries zygote64 preloads (~1,700 VMAs, ~900 with AV)
    zygote_anon: int = 450          # dalvik/malloc anonymous regions in zygote64
    zygote_anon_written: float = 0.5
    zygote_file_private: int = 150  # boot image, framework jars and oat files (written)
    zygote_guards: int = 300
    zygote_shared: int = 60
    app_libs: int = 60              # libraries an app loads after it is forked
    app_anon: int = 400             # an app's own anon regions (~3,300 VMAs per app in all)
    app_anon_written: float = 0.25  # (~260 VMAs with an anon_vma made after the fork)
    app_guards: int = 500
    app_shared: int = 500
    app_cow: float = 0.3            # inherited written anon regions an app writes again
    system_server_extra: int = 2    # system_server maps this many app images more
    sub_zygotes: int = 2            # webview_zygote and app_zygote
    sub_zygote_children: int = 2    # sandboxed/isolated processes per sub-zygote
    boot_app_forks: int = 1         # apps that fork a helper during boot
    init_libs: int = 20             # init's own image (it forks every native daemon)
    natives: int = 220              # native daemons (init: fork + exec), ~130 VMAs each
    native_forks: float = 0.1       # daemons that fork a helper (vold, netd, installd, ...)
    native_libs: int = 22
    native_anon: int = 25
    native_guards: int = 15
    pages: int = 2                  # pages per VMA (1..pages)


@dataclass
class AndroidApps(AndroidBoot):
    """The boot, then n_apps apps launched in sequence from zygote64 (1.4)."""
    name: str = "android_apps"
    n_apps: int = 24
    procs_min: float = 2.5          # processes per app (main + :push/:remote/...)
    procs_max: float = 4.5
    app_forks: float = 0.5          # launched apps that fork once (watchdogs, helpers)


def _zygote(em: Emitter, cfg: AndroidBoot) -> Iterator[T.Op]:
    """init (pid 0) maps its image and starts zygote64 (pid 1) by fork + exec."""
    img = Image(cfg.init_libs, 20, 0.5, 0, 10, 2)
    yield from em.image(0, img, [f"/system/lib64/i{i}.so" for i in range(cfg.init_libs)])
    yield T.Fork(0, 1)
    yield T.Exec(1)
    img = Image(cfg.zygote_libs, cfg.zygote_anon, cfg.zygote_anon_written, cfg.zygote_file_private,
                cfg.zygote_guards, cfg.zygote_shared)
    yield from em.image(1, img, [f"/system/lib64/z{i}.so" for i in range(cfg.zygote_libs)])


def _app(em: Emitter, cfg: AndroidBoot, parent: int, pid: int, inherited: list[str],
         tag: str, extra: int = 1) -> Iterator[T.Op]:
    """A zygote child specialises: writes inherited pages and maps the app's own image."""
    yield T.Fork(parent, pid)
    yield from em.cow(pid, inherited, cfg.app_cow)
    for k in range(extra):
        img = Image(cfg.app_libs, cfg.app_anon, cfg.app_anon_written, 0, cfg.app_guards,
                    cfg.app_shared)
        yield from em.image(pid, img, [f"/data/app/{tag}/lib{k}_{i}.so" for i in range(cfg.app_libs)])


def _written_anon(ops: list[T.Op]) -> list[str]:
    written = {op.region for op in ops if isinstance(op, T.Touch)}
    return [op.region for op in ops if isinstance(op, T.Mmap) and op.kind == "anon"
            and op.region in written]


def _boot(em: Emitter, cfg: AndroidBoot, rng: random.Random) -> Iterator[T.Op]:
    """-> ops; em.pid and em.inherited are left for a later phase."""
    zygote = list(_zygote(em, cfg))
    yield from zygote
    inherited = em.inherited = _written_anon([op for op in zygote if op.pid == 1])
    pid = 2
    yield from _app(em, cfg, 1, pid, inherited, "system_server", 1 + cfg.system_server_extra)
    pid += 1
    for z in range(cfg.sub_zygotes):                      # webview_zygote, app_zygote
        sub = pid
        yield from _app(em, cfg, 1, sub, inherited, f"subzygote{z}")
        pid += 1
        for _ in range(cfg.sub_zygote_children):
            yield T.Fork(sub, pid)
            yield from em.cow(pid, inherited, cfg.app_cow)
            pid += 1
    for a in range(cfg.boot_apps):
        app = pid
        yield from _app(em, cfg, 1, app, inherited, f"app{a}")
        pid += 1
        if a < cfg.boot_app_forks:
            yield T.Fork(app, pid)
            pid += 1
    for n in range(cfg.natives):                          # init: fork + exec per daemon
        daemon = pid
        yield T.Fork(0, daemon)
        yield T.Exec(daemon)
        img = Image(cfg.native_libs, cfg.native_anon, 0.5, 0, cfg.native_guards, 2)
        yield from em.image(daemon, img, [f"/system/lib64/n{i}.so" for i in range(cfg.native_libs)])
        pid += 1
        if rng.random() < cfg.native_forks:
            yield T.Fork(daemon, pid)
            pid += 1
    em.pid = pid


def android_boot(cfg: AndroidBoot, seed: int) -> Iterator[T.Op]:
    from .servers import with_pressure
    rng = random.Random(seed)
    yield from with_pressure(_boot(Emitter(rng, cfg.pages), cfg, rng), cfg, random.Random(seed + 1))


def android_apps(cfg: AndroidApps, seed: int) -> Iterator[T.Op]:
    from .servers import with_pressure
    yield from with_pressure(_apps(cfg, seed), cfg, random.Random(seed + 1))


def _apps(cfg: AndroidApps, seed: int) -> Iterator[T.Op]:
    rng = random.Random(seed)
    em = Emitter(rng, cfg.pages)
    yield from _boot(em, cfg, rng)
    pid, inherited = em.pid, em.inherited
    for a in range(cfg.n_apps):
        procs = rng.uniform(cfg.procs_min, cfg.procs_max)
        n = int(procs) + (rng.random() < procs - int(procs))
        main = pid
        for p in range(n):                                # main, :push, :remote, ...
            yield from _app(em, cfg, 1, pid, inherited, f"launch{a}", 1 if p == 0 else 0)
            pid += 1
        if int((a + 1) * cfg.app_forks) > int(a * cfg.app_forks):
            yield T.Fork(main, pid)                       # a helper forked by the app (evenly
            pid += 1                                      # spread: app_forks x n_apps forks)

"""Linux workloads beyond Android, as streams of trace operations, with memory-pressure
phases (rmap walks) mixed in.  Parameters and sources: shared/research/workloads-and-style.md
1.5-1.9 (process counts, VMAs per process, share with anon pages, fork trees and rates).

vfork/posix_spawn (make, the JDK, subprocess) share the parent's mm and do no anon_vma
work, so they are modelled as a process started by the trace root (pid 0, which maps
nothing): fork from pid 0, then exec.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from .. import trace as T
from ..registry import register_workload
from .common import Emitter, Image, Pressure, pressured

def _lib_names(tag: str, n: int) -> list[str]:
    return [f"/usr/lib/{tag}{i}.so" for i in range(n)]


def _spawn(em: Emitter, pid: int, img: Image, tag: str, parent: int = 0) -> Iterator[T.Op]:
    """fork + exec of a new program from `parent` (0: posix_spawn/vfork, no anon work)."""
    yield T.Fork(parent, pid)
    yield T.Exec(pid)
    yield from em.image(pid, img, _lib_names(tag, img.libs))


def _image(vmas: int, anon_share: float, rng: random.Random) -> Image:
    """An ELF process of about `vmas` VMAs, `anon_share` of them written (1.5: 44 %)."""
    libs = max(1, vmas // 10)
    anon = max(1, vmas - 5 * libs)
    return Image(libs, anon, min(1.0, max(0.0, (anon_share * vmas - 2.6 * libs) / anon)),
                 0, max(0, vmas // 20), 1)


@dataclass
class ServerBoot(Pressure):
    name: str = field(default="server_boot", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    services: int = field(default=40, metadata={
        "source": "assumed", "range": (25, 60),
        "ref": "workloads-and-style.md 1.5 [K]: 25-60 systemd services"})
    vmas_min: int = field(default=40, metadata={
        "source": "measured", "range": (37, 60),
        "ref": "workloads-and-style.md 1.5 [M]: coreutils ~37, bash 44 VMAs"})
    vmas_max: int = field(default=400, metadata={
        "source": "measured", "range": (300, 900),
        "ref": "workloads-and-style.md 1.5 [M]: big python 370-890 VMAs"})
    anon_share: float = field(default=0.44, metadata={
        "source": "measured", "range": (0.3, 0.5),
        "ref": "workloads-and-style.md 1.5 [M]: 44 % of VMAs hold anon pages"})
    ssh_sessions: int = field(default=2, metadata={
        "source": "assumed", "range": (0, 10),
        "ref": "workloads-and-style.md 1.5 [K]: sshd -> session -> bash (depth 3-5)"})
    commands: int = field(default=20, metadata={
        "source": "assumed", "range": (0, 200),
        "ref": "commands per shell (fork + exec + exit); no source"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(ServerBoot)
@pressured
def server_boot(cfg: ServerBoot, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    yield from _spawn(em, 1, _image(280, cfg.anon_share, rng), "systemd")
    pid = 2
    for s in range(cfg.services):
        vmas = int(min(cfg.vmas_max, max(cfg.vmas_min, rng.lognormvariate(4.6, 0.6))))
        yield from _spawn(em, pid, _image(vmas, cfg.anon_share, rng), f"svc{s}", parent=1)
        pid += 1
    sshd = pid - 1                                     # the last service plays sshd
    for _ in range(cfg.ssh_sessions):
        session, bash = pid, pid + 1
        yield T.Fork(sshd, session)                    # privilege-separated session
        yield from _spawn(em, bash, _image(44, 0.34, rng), "bash", parent=session)
        pid += 2
        for c in range(cfg.commands):
            yield from _spawn(em, pid, _image(37, 0.34, rng), f"cmd{c}", parent=bash)
            yield T.Exit(pid)
            pid += 1


@dataclass
class ApachePrefork(Pressure):
    name: str = field(default="apache_prefork", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    parent_vmas: int = field(default=400, metadata={
        "source": "assumed", "range": (200, 800),
        "ref": "workloads-and-style.md 1.6 [K]: httpd + mod_php, a few hundred VMAs"})
    workers: int = field(default=150, metadata={
        "source": "cited", "range": (5, 256),
        "ref": "workloads-and-style.md 1.6 [S]: MaxRequestWorkers 150-256 (Debian mpm_prefork.conf)"})
    requests: int = field(default=3, metadata={
        "source": "assumed", "range": (1, 10),
        "ref": "request batches per worker (each writes heap pages); no source"})
    recycle: float = field(default=0.2, metadata={
        "source": "assumed", "range": (0.0, 0.5),
        "ref": "workloads-and-style.md 1.6: MaxConnectionsPerChild 0 or 4,000 [S]; rate assumed"})
    anon_share: float = field(default=0.4, metadata={
        "source": "assumed", "range": (0.3, 0.5),
        "ref": "workloads-and-style.md 1.9: 40 % (server 44 % [M])"})
    pages: int = field(default=4, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(ApachePrefork)
@pressured
def apache_prefork(cfg: ApachePrefork, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    parent_ops = list(_spawn(em, 1, _image(cfg.parent_vmas, cfg.anon_share, rng), "httpd"))
    yield from parent_ops
    heap = [op.region for op in parent_ops                 # written anonymous regions
            if isinstance(op, T.Touch) and op.region.startswith("A")]
    pid = 2
    live = []
    for _ in range(cfg.workers):
        yield T.Fork(1, pid)
        live.append(pid)
        pid += 1
    for _ in range(cfg.requests):
        for w in list(live):
            for region in rng.sample(heap, min(len(heap), 8)):
                yield T.Touch(w, region)               # COW on the child's anon_vma
            if rng.random() < cfg.recycle:
                yield T.Exit(w)
                live.remove(w)
                yield T.Fork(1, pid)
                live.append(pid)
                pid += 1


@dataclass
class Postgres(Pressure):
    name: str = field(default="postgres", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    postmaster_vmas: int = field(default=200, metadata={
        "source": "assumed", "range": (100, 400),
        "ref": "workloads-and-style.md 1.9 [K]: ~200 VMAs"})
    auxiliary: int = field(default=6, metadata={
        "source": "cited", "range": (4, 10),
        "ref": "workloads-and-style.md 1.6 [S]: postmaster + ~6 auxiliary processes"})
    connections: int = field(default=100, metadata={
        "source": "cited", "range": (10, 500),
        "ref": "workloads-and-style.md 1.6 [S]: max_connections default 100"})
    churn: int = field(default=100, metadata={
        "source": "assumed", "range": (0, 1000),
        "ref": "workloads-and-style.md 1.6 [K]: 10-1,000 connections/s without a pooler"})
    shared_buffers_pages: int = field(default=512, metadata={
        "source": "assumed", "range": (64, 4096),
        "ref": "shared anonymous: no anon_vma, scaled down"})
    anon_share: float = field(default=0.35, metadata={
        "source": "assumed", "range": (0.25, 0.45),
        "ref": "workloads-and-style.md 1.9: 35 % (shmem excluded)"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(Postgres)
@pressured
def postgres(cfg: Postgres, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    yield from _spawn(em, 1, _image(cfg.postmaster_vmas, cfg.anon_share, rng), "postgres")
    yield T.Mmap(1, "shared_buffers", cfg.shared_buffers_pages, kind="shared_anon")
    yield T.Touch(1, "shared_buffers")
    pid = 2
    backends = []

    def backend(pid: int) -> Iterator[T.Op]:
        yield T.Fork(1, pid)
        yield T.Mmap(pid, f"work{pid}", 8)             # work_mem, catalog caches
        yield T.Touch(pid, f"work{pid}")

    for i in range(cfg.auxiliary + cfg.connections):
        yield from backend(pid)
        if i >= cfg.auxiliary:
            backends.append(pid)
        pid += 1
    for _ in range(cfg.churn):
        yield T.Exit(backends.pop(rng.randrange(len(backends))))
        yield from backend(pid)
        backends.append(pid)
        pid += 1


@dataclass
class RedisBgsave(Pressure):
    name: str = field(default="redis_bgsave", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    vmas: int = field(default=200, metadata={
        "source": "assumed", "range": (50, 500),
        "ref": "workloads-and-style.md 1.6 [K]: jemalloc, ~50-500 VMAs"})
    heap_regions: int = field(default=64, metadata={
        "source": "assumed", "range": (16, 256),
        "ref": "large written regions (the data set), scaled; no source"})
    heap_pages: int = field(default=256, metadata={
        "source": "assumed", "range": (64, 1024),
        "ref": "pages per heap region, scaled; no source"})
    saves: int = field(default=3, metadata={
        "source": "assumed", "range": (1, 10),
        "ref": "workloads-and-style.md 1.6 [S]: one BGSAVE fork every >= 60 s"})
    parent_writes: float = field(default=0.3, metadata={
        "source": "assumed", "range": (0.0, 1.0),
        "ref": "share of the heap the parent rewrites during a save; no source"})
    anon_share: float = field(default=0.6, metadata={
        "source": "assumed", "range": (0.4, 0.8), "ref": "no source"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(RedisBgsave)
@pressured
def redis_bgsave(cfg: RedisBgsave, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    yield from _spawn(em, 1, _image(cfg.vmas, cfg.anon_share, rng), "redis")
    heap = [f"heap{i}" for i in range(cfg.heap_regions)]
    for region in heap:
        yield T.Mmap(1, region, cfg.heap_pages)
        yield T.Touch(1, region)
    pid = 2
    for _ in range(cfg.saves):
        yield T.Fork(1, pid)                           # the child only reads
        for region in heap:
            yield T.Touch(pid, region, write=False)
            if rng.random() < cfg.parent_writes:
                yield T.Touch(1, region)               # COW on the parent's anon_vma
        yield T.Exit(pid)
        pid += 1


@dataclass
class ShellStorm(Pressure):
    name: str = field(default="shell_storm", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    commands: int = field(default=500, metadata={
        "source": "assumed", "range": (50, 5000),
        "ref": "workloads-and-style.md 1.6 [K]: 1-5k forks/s per core"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(ShellStorm)
@pressured
def shell_storm(cfg: ShellStorm, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    yield from _spawn(em, 1, _image(44, 15 / 44, rng), "bash")
    for c in range(cfg.commands):
        pid = 2 + c
        yield T.Fork(1, pid)                           # bash does not vfork
        yield T.Exec(pid)
        yield from em.image(pid, _image(37, 0.34, rng), _lib_names("coreutils", 4))
        yield T.Exit(pid)


@dataclass
class MakeJ(Pressure):
    name: str = field(default="make_j", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    jobs: int = field(default=200, metadata={
        "source": "assumed", "range": (10, 2000), "ref": "compile jobs; no source"})
    pipeline_forks: float = field(default=0.3, metadata={
        "source": "assumed", "range": (0.0, 1.0),
        "ref": "workloads-and-style.md 1.6: recipe shells fork for pipelines/subshells; rate assumed"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(MakeJ)
@pressured
def make_j(cfg: MakeJ, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    yield from _spawn(em, 1, _image(120, 0.35, rng), "make")
    pid = 2
    for j in range(cfg.jobs):
        sh = pid                                       # make: vfork/posix_spawn of sh
        yield from _spawn(em, sh, _image(44, 0.34, rng), "sh")
        pid += 1
        if rng.random() < cfg.pipeline_forks:
            yield T.Fork(sh, pid)                      # the shell forks a subshell
            yield T.Exit(pid)
            pid += 1
        yield from _spawn(em, pid, _image(200, 0.35, rng), "cc1")   # gcc: vfork + exec
        yield T.Exit(pid)
        yield T.Exit(sh)
        pid += 1


@dataclass
class Chrome(Pressure):
    name: str = field(default="chrome", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    renderers: int = field(default=25, metadata={
        "source": "assumed", "range": (15, 40),
        "ref": "workloads-and-style.md 1.7 [K]: 10-20 tabs, ~15-40 processes"})
    renderer_vmas: int = field(default=1200, metadata={
        "source": "assumed", "range": (500, 2000),
        "ref": "workloads-and-style.md 1.7 [K]: 500-2,000 VMAs per renderer"})
    anon_share: float = field(default=0.25, metadata={
        "source": "assumed", "range": (0.15, 0.35),
        "ref": "workloads-and-style.md 1.7 [K]: pools mostly PROT_NONE"})
    navigations: int = field(default=20, metadata={
        "source": "assumed", "range": (0, 100),
        "ref": "workloads-and-style.md 1.7 [K]: renderers replaced on navigation"})
    pages: int = field(default=2, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(Chrome)
@pressured
def chrome(cfg: Chrome, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    def renderer(pid: int) -> Iterator[T.Op]:
        yield T.Fork(2, pid)
        img = _image(cfg.renderer_vmas, cfg.anon_share, rng)
        img.guards = cfg.renderer_vmas // 3               # V8 / PartitionAlloc reservations
        yield from em.image(pid, img, _lib_names("blink", img.libs))

    yield from _spawn(em, 1, _image(1500, 0.3, rng), "chrome")   # the browser
    yield from _spawn(em, 2, _image(300, 0.1, rng), "zygote", parent=1)
    live = list(range(3, 3 + cfg.renderers))
    for pid in live:
        yield from renderer(pid)
    pid = 3 + cfg.renderers
    for _ in range(cfg.navigations):
        yield T.Exit(live.pop(rng.randrange(len(live))))
        yield from renderer(pid)
        live.append(pid)
        pid += 1


@dataclass
class JvmGlibc(Pressure):
    name: str = field(default="jvm_glibc", metadata={
        "source": "n/a", "range": None, "ref": "the workload's registered name"})
    threads: int = field(default=400, metadata={
        "source": "assumed", "range": (50, 2000),
        "ref": "workloads-and-style.md 1.8 [K]: ~2-3 VMAs per Java thread"})
    arenas: int = field(default=16, metadata={
        "source": "cited", "range": (8, 64),
        "ref": "workloads-and-style.md 1.8 [S]: up to 8 x cores arenas (NARENAS_FROM_NCORES)"})
    large_mallocs: int = field(default=600, metadata={
        "source": "assumed", "range": (0, 2000),
        "ref": "workloads-and-style.md 1.8 [K]: mallocs above the mmap threshold"})
    libs: int = field(default=120, metadata={
        "source": "assumed", "range": (60, 250),
        "ref": "workloads-and-style.md 1.8 [K]: JVM 1,000-5,000 VMAs"})
    metaspace: int = field(default=300, metadata={
        "source": "assumed", "range": (100, 1000),
        "ref": "workloads-and-style.md 1.8 [K]: Metaspace, CodeCache, G1 regions"})
    pages: int = field(default=4, metadata={
        "source": "assumed", "range": (1, 8),
        "ref": "pages per VMA: object counts do not depend on it"})


@register_workload(JvmGlibc)
@pressured
def jvm_glibc(cfg: JvmGlibc, rng: random.Random, em: Emitter) -> Iterator[T.Op]:
    yield from _spawn(em, 1, Image(cfg.libs, cfg.metaspace, 0.9, 20, 40, 4), "jvm")
    for t in range(cfg.threads):
        yield T.Mmap(1, f"stack{t}", 16)
        yield T.Mprotect(1, f"stack{t}", "none", 0, 1)  # the guard page
        yield T.Touch(1, f"stack{t}", 12, 4)
    for a in range(cfg.arenas):
        yield T.Mmap(1, f"arena{a}", 64, prot="none")   # the 64 MB reservation (scaled)
        yield T.Mprotect(1, f"arena{a}", "rw", 0, 8)    # grown by mprotect
        yield T.Touch(1, f"arena{a}", 0, 8)
    for i in range(cfg.large_mallocs):
        yield T.Mmap(1, f"big{i}", rng.randint(32, 64))
        yield T.Touch(1, f"big{i}")


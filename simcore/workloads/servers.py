"""Linux workloads beyond Android, as streams of trace operations, with memory-pressure
phases (rmap walks) mixed in.  Parameters and sources: shared/research/workloads-and-style.md
1.5-1.9 (process counts, VMAs per process, share with anon pages, fork trees and rates).

vfork/posix_spawn (make, the JDK, subprocess) share the parent's mm and do no anon_vma
work, so they are modelled as a process started by the trace root (pid 0, which maps
nothing): fork from pid 0, then exec.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
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
    name: str = "server_boot"
    services: int = 40              # systemd services (25-60)
    vmas_min: int = 40              # VMAs per process (40-400, median ~100)
    vmas_max: int = 400
    anon_share: float = 0.44        # VMAs with anon pages (44 %)
    ssh_sessions: int = 2           # sshd -> session -> bash -> commands (depth 3-5)
    commands: int = 20              # commands per shell (fork + exec + exit)
    pages: int = 2


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
    name: str = "apache_prefork"
    parent_vmas: int = 400          # httpd with preloaded modules (mod_php)
    workers: int = 150              # MaxRequestWorkers (150-256)
    requests: int = 3               # request batches per worker (each writes heap pages)
    recycle: float = 0.2            # workers replaced after MaxConnectionsPerChild
    anon_share: float = 0.4
    pages: int = 4


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
    name: str = "postgres"
    postmaster_vmas: int = 200
    auxiliary: int = 6              # checkpointer, walwriter, autovacuum, ...
    connections: int = 100          # max_connections
    churn: int = 100                # connections closed and reopened
    shared_buffers_pages: int = 512 # shared anonymous memory: no anon_vma
    anon_share: float = 0.35
    pages: int = 2


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
    name: str = "redis_bgsave"
    vmas: int = 200                 # jemalloc extents and libraries
    heap_regions: int = 64          # large written regions (the data set)
    heap_pages: int = 256
    saves: int = 3                  # BGSAVE forks
    parent_writes: float = 0.3      # share of the heap the parent rewrites during a save
    anon_share: float = 0.6
    pages: int = 2


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
    name: str = "shell_storm"
    commands: int = 500             # external commands run by one bash (fork + exec + exit)
    pages: int = 2


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
    name: str = "make_j"
    jobs: int = 200                 # compile jobs
    pipeline_forks: float = 0.3     # recipe shells that fork for a pipeline or subshell
    pages: int = 2


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
    name: str = "chrome"
    renderers: int = 25             # 10-20 tabs with site isolation: ~15-40 processes
    renderer_vmas: int = 1200       # 500-2,000, mostly PROT_NONE pools
    anon_share: float = 0.25
    navigations: int = 20           # renderers replaced on navigation / tab close
    pages: int = 2


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
    name: str = "jvm_glibc"
    threads: int = 400              # Java threads: a stack and its guard each
    arenas: int = 16                # glibc arenas (8 x cores at most): rw part + reservation
    large_mallocs: int = 600        # allocations above the mmap threshold: one VMA each
    libs: int = 120
    metaspace: int = 300            # Metaspace chunks, CodeCache, G1 regions (written)
    pages: int = 4


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


"""Workloads (and a policy) that exist only for the tests, registered the way a user's own module would:
a schema, a generator, one registration each.  Sweeps load this module through
``sweep.plugins: [tests.plugin_workloads]`` (driver and every Ray worker)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from simcore import trace as T
from simcore.policy.eager import Eager
from simcore.registry import PolicyConf, register, register_workload
from simcore.slab import PolicyCache


@dataclass
class Ladder:
    """A process maps and writes `steps` regions, forking a child after each one."""
    name: str = "ladder"
    steps: int = 3
    pages: int = 2


@register_workload(Ladder)
def ladder(cfg: Ladder, seed: int) -> Iterator[T.Op]:
    for i in range(cfg.steps):
        yield T.Mmap(0, f"r{i}", cfg.pages)
        yield T.Touch(0, f"r{i}")
        yield T.Fork(0, i + 1)


@dataclass
class DieOnce:
    """The worker process running the first cell dies (os._exit); later cells run."""
    name: str = "die_once"
    marker: str = ""                 # a path: created just before the worker dies


@register_workload(DieOnce)
def die_once(cfg: DieOnce, seed: int) -> list[T.Op]:
    if cfg.marker:
        try:            # created atomically: of two workers here at once, only one dies
            os.close(os.open(cfg.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return []
        os._exit(17)
    return []


@dataclass
class DieOnSeed:
    """The worker process running the cell of seed `seed` dies (os._exit) every time; each
    attempt first appends a line to `attempts` (a path).  Other seeds run."""
    name: str = "die_on_seed"
    seed: int = 0
    attempts: str = ""


@register_workload(DieOnSeed)
def die_on_seed(cfg: DieOnSeed, seed: int) -> list[T.Op]:
    if seed == cfg.seed:
        with open(cfg.attempts, "a") as f:
            f.write(f"{os.getpid()}\n")
        os._exit(17)
    return []


class CountingEager(Eager):
    """A plugin policy: mainline, plus a counter of its own (stats()) and an object cache
    of its own that it declares (a design's objects; this one allocates none)."""
    name = "counting_eager"
    caches = (PolicyCache("plugin_token", {"default": 64}, "a plugin design's object"),)

    def __init__(self) -> None:
        super().__init__()
        self.anon_faults = 0

    def anon_fault(self, m, vma, fault: str) -> tuple[int, int]:
        self.anon_faults += 1
        return super().anon_fault(m, vma, fault)

    def stats(self) -> dict[str, int]:
        return {"plugin_anon_faults": self.anon_faults}


register("policy", "counting_eager", PolicyConf, CountingEager)

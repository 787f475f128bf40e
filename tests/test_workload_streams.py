"""The generated op streams are pinned: a digest of every op (class, fields, line) of
android_apps / android_boot (default knobs, the benchmark cell's knobs, a non-default
setting) and of the Linux workloads that share the Emitter and with_pressure().

The digests were computed on main at 6e71e32, before the generators were restructured
for speed (lists of ops per image, chunked pressure walks): any change to an op, to the
order of the ops or to the order of the RNG draws changes them.  A change meant to alter
a stream (new behaviour, new seed figures) updates them on purpose."""
from __future__ import annotations

import hashlib
from operator import attrgetter

import pytest

from simcore import registry
from simcore import trace as T
from simcore.workloads.android import AndroidApps, AndroidBoot, android_apps, android_boot

# the knobs benchmarks/android_cell.py sets to 0
LIFE_OFF = dict.fromkeys(
    "arenas arena_commits arena_frees heap_grows threads thread_exits jit_flips gc_dontneeds "
    "heap_trims lmkd_kills app_restarts compactions compact_share compact_returns".split(), 0)
ODD = dict(pages=3, pressure_every=97, pressure_pages=2, boot_apps=40, natives=30,
           native_forks=0.5, boot_app_forks=3, n_apps=12, procs_min=1.5, procs_max=5.0,
           app_forks=1.0, lmkd_kills=1.5, app_restarts=1.0, compact_share=0.5,
           compact_returns=1.0, arenas=3, heap_trims=4, app_cow=0.6)

_FIELDS: dict[type, attrgetter] = {}


def digest(ops) -> tuple[int, str]:
    """(number of ops, sha256 prefix of every op's class name and field values in order)."""
    h, n, chunk = hashlib.sha256(), 0, []
    for op in ops:
        cls = type(op)
        get = _FIELDS.get(cls)
        if get is None:
            get = _FIELDS[cls] = attrgetter(*cls.__match_args__)
        chunk.append((cls.__name__, get(op)))
        if len(chunk) == 4096:
            h.update(repr(chunk).encode())
            n, chunk = n + len(chunk), []
    h.update(repr(chunk).encode())
    return n + len(chunk), h.hexdigest()[:16]


@pytest.mark.parametrize("gen, cls, knobs, seed, expected", [
    (android_apps, AndroidApps, {}, 0, (466539, '4088abc77f1f757f')),
    (android_apps, AndroidApps, LIFE_OFF, 0, (365313, '99eb74ee743dff93')),
    (android_apps, AndroidApps, ODD, 7, (211956, '90cffc905fd73e93')),
    (android_boot, AndroidBoot, dict(pressure_every=0, pages=5, natives=60), 2,
     (312967, '05d3627be0097fed')),
])
def test_android_streams_are_pinned(gen, cls, knobs, seed, expected) -> None:
    assert digest(gen(cls(**knobs), seed)) == expected


LINUX = {
    'server_boot': (9965, '8b7939594695a456'),
    'apache_prefork': (4512, 'e6e73ed1277e4865'),
    'postgres': (993, 'bd1dcd929e8c6452'),
    'redis_bgsave': (704, 'f82021cd1f0a9302'),
    'shell_storm': (25842, '23fb9f0da7113554'),
    'make_j': (64534, '8c7d1f996dcbabd1'),
    'chrome': (82362, 'b269d90bf12c0e75'),
    'jvm_glibc': (3933, '28b391b28e7699a4'),
    'fork_chain': (286, '5c186bf30d6ec633'),
    'fork_fanout': (353, '272b731600aad157'),
    'mremap_fork': (1783, '5b5edd73bdf8c8b1'),
}


def test_linux_streams_are_pinned() -> None:
    got = {}
    for name in LINUX:
        entry = registry.lookup("workload", name)
        got[name] = digest(entry.make(entry.schema(), 3))
    assert got == LINUX

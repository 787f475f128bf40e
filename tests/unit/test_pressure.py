"""simcore.workloads.common.with_pressure against the plain rule it implements: after every
`pressure_every`-th op of the stream, a walk of a written (pid, region) picked with
rng.choice from the sorted written keys.  with_pressure cuts lists of ops where the walks
fall and keeps the keys per process (_Written); the reference below re-sorts at each walk."""
from __future__ import annotations

import random

from simcore import trace as T
from simcore.workloads.android import AndroidApps, android_apps
from simcore.workloads.common import WALKS, Pressure, pressured, with_pressure

SMALL = dict(boot_apps=4, zygote_libs=8, zygote_anon=20, zygote_file_private=6,
             zygote_guards=6, zygote_shared=3, app_libs=4, app_anon=12, app_guards=6,
             app_shared=4, sub_zygotes=1, sub_zygote_children=1, init_libs=3, natives=3,
             native_libs=3, native_anon=4, native_guards=2, native_forks=0.5, n_apps=6,
             lmkd_kills=1.0, app_restarts=1.0, compact_share=0.5, arena_frees=0.9,
             heap_trims=3)


def reference(ops: list[T.Op], cfg: Pressure, rng: random.Random) -> list[T.Op]:
    written: dict[tuple[int, str], tuple[int, int]] = {}
    out, n = [], 0
    for op in ops:
        out.append(op)
        if isinstance(op, T.Touch) and op.write:
            count = min(op.count, cfg.pressure_pages) if op.count else 1
            written[(op.pid, op.region)] = (op.first, count)
        elif isinstance(op, (T.Exit, T.Exec)):
            written = {k: v for k, v in written.items() if k[0] != op.pid}
        elif isinstance(op, (T.Munmap, T.MremapMove)):
            written.pop((op.pid, op.region), None)
        n += 1
        if n == cfg.pressure_every:
            n = 0
            if written:
                pid, region = rng.choice(sorted(written))
                out.append(T.Rmap(pid, region, rng.choice(WALKS), *written[(pid, region)]))
    return out


def test_walks_fall_as_the_plain_rule_says() -> None:
    """A stream with exits, execs, munmaps and partial touches, cut into lists of random
    sizes (empty ones too), for walks every 1, 2, 7, 50 ops."""
    ops = list(android_apps(AndroidApps(**SMALL, pressure_every=0), 3))
    assert {T.Exit, T.Exec, T.Munmap} <= {type(op) for op in ops}
    cut = random.Random(0)
    for every in (1, 2, 7, 50):
        cfg = Pressure(pressure_every=every, pressure_pages=3)
        chunks, i = [], 0
        while i < len(ops):
            size = cut.choice((0, 1, every - 1, every, every + 1, 3 * every + 2, 200))
            chunks.append(ops[i:i + size])
            i += size
        got = [op for chunk in with_pressure(iter(chunks), cfg, random.Random(every))
               for op in chunk]
        assert got == reference(ops, cfg, random.Random(every))
        assert sum(isinstance(op, T.Rmap) for op in got) > len(ops) // (2 * every)


def test_a_body_of_lists_gives_the_stream_of_its_ops() -> None:
    """pressured(lists=True) on a body that yields lists, and pressured on the same body
    yielding the ops one by one (own walk generator both): the same stream."""
    ops = list(android_apps(AndroidApps(**SMALL, pressure_every=0), 5))

    def lists(cfg, rng, em):
        for i in range(0, len(ops), 37):
            yield ops[i:i + 37]

    def one_by_one(cfg, rng, em):
        yield from ops

    a = pressured(own_walk_rng=True, lists=True)(lists)
    b = pressured(own_walk_rng=True)(one_by_one)
    for every in (0, 1, 10, 2000):
        cfg = Pressure(pressure_every=every)
        cfg.pages = 2                      # the Emitter's page count (unused here)
        assert list(a(cfg, 9)) == list(b(cfg, 9))

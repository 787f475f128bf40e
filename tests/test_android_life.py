"""Android processes' runtime behaviour (simcore/workloads/android_life.py): with every
new knob at 0 the op stream is the one the generators made before the behaviours existed;
with them on, a small device merges, unmaps, exits and compacts, checked under each policy."""
from __future__ import annotations

import dataclasses
import hashlib

from simcore import activity
from simcore import trace as T
from simcore.check import check_machine, check_no_leaks
from simcore.machine import Machine
from simcore.policy import make_policy
from simcore.workloads.android import AndroidApps, AndroidBoot, android_apps, android_boot
from test_android import SMALL

BOOT_KNOBS = ("arenas", "arena_commits", "arena_frees", "heap_grows", "threads",
              "thread_exits", "jit_flips", "gc_dontneeds", "heap_trims")
APPS_KNOBS = ("lmkd_kills", "app_restarts", "compactions", "compact_share", "compact_returns")
OFF = {k: 0 for k in BOOT_KNOBS + APPS_KNOBS}
# sha256 of T.dumps(stream) for SMALL (+ n_apps=5), made by the generators of commit 7d99dec,
# before the behaviours existed (the script is in the docstring of test_knobs_off_...)
BEFORE = {("android_boot", 0): "33b26ab144f57e2f2cfeb94f0bd997374185595a4b1cf6d57734384f0780bdfb",
          ("android_apps", 0): "c2ff5477c13e1d70af89f82b9137bd52bb5f20149679cc89b715e7d3eee523db",
          ("android_boot", 1): "80d320db41068b0b02a286d98468f465345ef6c2213f0625dd862dd723bf618c",
          ("android_apps", 1): "39289998f5b5781f5acaabf3d208e661ff9f2365c5c5b694c3cac51d2fb937cb"}


def _cfg(cls, **kw):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**SMALL, **{k: v for k, v in kw.items() if k in names})


def test_knobs_off_give_the_old_stream_bit_for_bit():
    """Old results stay reproducible: `git checkout 7d99dec` and hash
    T.dumps(gen(cls(**SMALL[, n_apps=5]), seed)) to remake BEFORE."""
    for (name, seed), digest in BEFORE.items():
        gen, cls = (android_boot, AndroidBoot) if name == "android_boot" else (android_apps, AndroidApps)
        extra = {"n_apps": 5} if cls is AndroidApps else {}
        ops = gen(_cfg(cls, **OFF, **extra), seed)
        assert hashlib.sha256(T.dumps(ops).encode()).hexdigest() == digest, (name, seed)


def test_every_new_knob_has_its_provenance():
    fields = {f.name: f for f in dataclasses.fields(AndroidApps)}
    for name in BOOT_KNOBS + APPS_KNOBS:
        meta = fields[name].metadata
        assert meta["source"] in ("measured", "cited", "fitted_eager", "fitted_lazy", "assumed")
        lo, hi = meta["range"]
        assert lo <= fields[name].default <= hi and meta["ref"], name
        assert fields[name].default, f"{name}: the default is the behaviour on"


SMALL_LIFE = dict(n_apps=3, arenas=3, arena_commits=2, heap_grows=2, threads=3, jit_flips=3,
                  gc_dontneeds=3, heap_trims=1, lmkd_kills=1.0, app_restarts=0.5,
                  compact_returns=1.0)
CHECK_EVERY = 100


def test_small_device_merges_unmaps_exits_and_compacts_checked_under_each_policy():
    ops = list(android_apps(_cfg(AndroidApps, **SMALL_LIFE), 0))
    rows = {}
    for policy in ("eager", "lazy", "cow_context"):
        m = Machine(make_policy(policy), swap=True)
        m.observers.append(lambda m, op: m.ops_done % CHECK_EVERY or check_machine(m))
        tally = activity.OpTally()
        m.run(tally.wrap(ops))
        check_machine(m)
        rows[policy] = activity.counts(m, tally)
        m.run([T.Exit(pid) for pid in m.layout.alive()])
        check_no_leaks(m)
    e = rows["eager"]
    for key in ("vma_merges", "ops_munmap", "ops_munmap_partial", "ops_exit", "ops_mremap",
                "ops_madvise_dontneed", "compactions", "pageout_pages", "pageout_skipped",
                "swapin_pages"):
        assert e[key] > 0, key
    assert e["pageout_walks"] == e["pageout_pages"] and e["pageout_incomplete"] == 0
    assert e["pageout_root_lock_read"] == e["pageout_walks"]
    assert rows["lazy"]["pageout_lockless_walks"] > 0            # lazy folios: no lock
    assert rows["cow_context"]["pageout_root_lock_read"] == 0
    assert len({r["pageout_pages"] for r in rows.values()}) == 1     # same pages, own walks


def test_without_swap_compaction_walks_nothing():
    ops = android_apps(_cfg(AndroidApps, **SMALL_LIFE), 0)
    tally = activity.OpTally()
    m = Machine("eager", swap=False).run(tally.wrap(ops))
    c = activity.counts(m, tally)
    assert c["compactions"] > 0 and c["pageout_pages"] == c["pageout_walks"] == 0

"""Android workload generators: valid, deterministic, checked under both policies; the report."""
from __future__ import annotations

import dataclasses

import polars as pl

from simcore import trace as T
from simcore.check import check_machine, check_no_leaks
from simcore.machine import Machine
from simcore.workloads.android import AndroidApps, AndroidBoot, android_apps, android_boot
from sweep.report import PUBLISHED, cover_letter_table

SMALL = dict(boot_apps=4, zygote_libs=8, zygote_anon=20, zygote_file_private=6,
             zygote_guards=6, zygote_shared=3, app_libs=4, app_anon=12, app_guards=6,
             app_shared=4, sub_zygotes=1, sub_zygote_children=1, init_libs=3, natives=3,
             native_libs=3, native_anon=4, native_guards=2, native_forks=0.5)


def test_generators_are_deterministic_per_seed():
    cfg = AndroidApps(**SMALL, n_apps=3)
    a, b, c = (T.dumps(android_apps(cfg, s)) for s in (1, 1, 2))
    assert a == b and a != c


CHECK_EVERY = 20                  # check_machine is O(state): after every op this took minutes


def test_small_android_runs_checked_under_both_policies():
    for gen, cfg in ((android_boot, AndroidBoot(**SMALL)), (android_apps, AndroidApps(**SMALL, n_apps=3))):
        ops = list(gen(cfg, 0))
        eager, lazy = Machine("eager"), Machine("lazy")
        for m in (eager, lazy):            # every invariant every CHECK_EVERY ops and at the end
            m.observers.append(lambda m, op: m.ops_done % CHECK_EVERY or check_machine(m))
            m.run(ops)
            check_machine(m)
        e, l = eager.counts(), lazy.counts()
        assert l["anon_vma"] < e["anon_vma"] and l["anon_vma_chain"] < e["anon_vma_chain"]
        # lazy saves a larger share of anon_vmas than of AVCs
        assert l["anon_vma"] / e["anon_vma"] < l["anon_vma_chain"] / e["anon_vma_chain"]
        exits = [T.Exit(pid) for pid in eager.layout.alive()]
        for m in (eager, lazy):
            m.run(exits)
            check_no_leaks(m)


def test_default_image_matches_the_measured_shape():
    """An app process has ~3,300 VMAs, about 30 % of them with anon pages (1.3)."""
    cfg = dataclasses.replace(AndroidBoot(), boot_apps=1, natives=0, sub_zygotes=0,
                              system_server_extra=0)
    m = Machine("eager").run(android_boot(cfg, 0))
    app = m.procs[3]
    with_av = sum(v.anon_vma is not None for v in app.vmas)
    assert 2900 <= len(app.vmas) <= 4100
    assert 0.26 <= with_av / len(app.vmas) <= 0.36


def test_report_puts_ours_beside_the_published_numbers():
    rows = [{"workload": w, "arch": "arm64_android", "policy": p, "seed": 0, "status": "ok",
             **{f"{c}_kb": float(v) for c, v in zip(("vm_area_struct", "anon_vma", "anon_vma_chain"), vals)}}
            for w in ("android_boot", "android_apps")
            for p, vals in (("eager", (100.0, 50.0, 40.0)), ("lazy", (101.0, 2.5, 20.0)))]
    text = cover_letter_table(pl.DataFrame(rows))
    assert "after boot:" in text and "after launching 24 apps:" in text
    assert "-95.0%" in text and "-50.0%" in text and "+1.0%" in text
    assert f"{PUBLISHED['android_boot']['anon_vma'][0]:.1f}" in text

"""`sweep report` on a sensitivity sweep: a held-out prediction of the cover letter's
"after launching 24 apps" lazy figures.

The knobs that were fitted to those lazy figures (the android_apps knobs marked
fitted_lazy that the boot does not have: processes per app, apps that fork) are re-fitted
to the published EAGER figures after 24 apps only; the boot knobs stay as they are (fitted to
the after-boot figures).  The lazy figures after 24 apps are then a prediction:

1. from a linear model of each cache's eager and lazy KB in those knobs, built from the
   sweep's one-at-a-time cells (the knob's low, baseline and high cells);
2. by simulation, once the sweep has cells at the re-fitted values: the section writes the
   grid file ``heldout.yaml`` (next to report.md) that adds them to the same sweep.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl

from simcore import provenance, registry

from .published import PUBLISHED, ROW_CACHES, STATE, change_pct
from .report_sensitivity import _baseline, _default_value, design_frame

TARGET = "android_apps"            # held out: its lazy figures
BOOT = "android_boot"
STEPS = 21                         # grid search: values per knob over its range
HELDOUT_SEED = 0


def refit_knobs() -> list[provenance.Knob]:
    """The knobs fitted to the held-out lazy figures: the target workload's fitted_lazy knobs
    that the boot workload has not (derived from the metadata)."""
    boot = {k.name for k in provenance.knobs(registry.schema("workload", BOOT))}
    return [k for k in provenance.knobs(registry.schema("workload", TARGET), TARGET,
                                        sources=("fitted_lazy",)) if k.name not in boot]


def linear_model(frame: pl.DataFrame, knobs: list[provenance.Knob]) -> dict | None:
    """{(cache, policy): (baseline KB, {knob: slope KB per unit})} from the target's
    baseline and one-at-a-time cells; None if a knob has no one-at-a-time cell."""
    base = _baseline(frame, TARGET)
    oat = frame.filter((pl.col("workload") == TARGET) & (pl.col("kind") == "oat"))
    if base is None:
        return None
    model = {}
    for cache, policy in itertools.product(ROW_CACHES, ("eager", "lazy")):
        col = f"{cache}_{policy}_kb"
        slopes = {}
        for k in knobs:
            part = oat.filter(pl.col("knob") == f"workload.{k.name}")
            if not part.height:
                return None
            x0 = _default_value(f"workload.{k.name}", TARGET, part["arch"][0])
            xs = [0.0] + [v - x0 for v in part["value"].to_list()]
            ys = [0.0] + [y - base[col] for y in part[col].to_list()]
            slopes[k.name] = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
        model[(cache, policy)] = (base[col], slopes)
    return model


def _kb(model: dict, cache: str, policy: str, delta: dict) -> float:
    base, slopes = model[(cache, policy)]
    return base + sum(slopes[k] * d for k, d in delta.items())


def refit(model: dict, knobs: list[provenance.Knob], arch: str) -> dict:
    """The knob values in their ranges whose modelled eager KB after 24 apps is closest to
    the published eager KB (sum of squared relative errors; ties: nearest the baseline)."""
    x0 = {k.name: _default_value(f"workload.{k.name}", TARGET, arch) for k in knobs}
    grids = [[k.low + i * (k.high - k.low) / (STEPS - 1) for i in range(STEPS)] for k in knobs]
    best, best_key = None, None
    for values in itertools.product(*grids):
        delta = {k.name: v - x0[k.name] for k, v in zip(knobs, values)}
        err = sum(((_kb(model, c, "eager", delta) - PUBLISHED[TARGET][c][0]) / PUBLISHED[TARGET][c][0]) ** 2
                  for c in ROW_CACHES)
        dist = sum((d / (k.high - k.low)) ** 2 for k, d in zip(knobs, delta.values()))
        key = (round(err, 9), dist)
        if best_key is None or key < best_key:
            best, best_key = dict(zip((k.name for k in knobs), values)), key
    return {n: (round(v) if k.integer else round(v, 4)) for (n, v), k in zip(best.items(), knobs)}


def _simulated(frame: pl.DataFrame, fitted: dict) -> dict | None:
    """Mean KB per cache and policy of the cells at the re-fitted values, if the sweep has them."""
    cond = (pl.col("workload") == TARGET) & (pl.col("kind") == "point")
    for name, v in fitted.items():
        col = f"workload.{name}"
        if col not in frame.columns:
            return None
        cond &= (pl.col(col) - v).abs() < 1e-6
    part = frame.filter(cond)
    if not part.height:
        return None
    return {f"{c}_{p}_kb": part[f"{c}_{p}_kb"].mean() for c in ROW_CACHES for p in ("eager", "lazy")}


def heldout_grid(fitted: dict, arch: str) -> str:
    """A grid file adding the re-fitted cells (both policies) to a conf/sensitivity.yaml sweep."""
    point = ", ".join([f"workload: {TARGET}", f"seed: {HELDOUT_SEED}"]
                      + [f"workload.{k}: {v}" for k, v in fitted.items()])
    return "\n".join([
        "# Held-out prediction: the knobs fitted to the published lazy figures after 24 apps,",
        "# re-fitted to the published eager figures only (written by `sweep report`).",
        "defaults:", f"  - workload: {TARGET}", f"  - arch: {arch}", "  - policy: eager",
        "  - _self_", "sweep:", "  name: sensitivity", "  batch_size: 1", "  sample_every: 0",
        "grid:", "  axes:", "    policy: [eager, lazy]", f"  points: [{{{point}}}]", ""])


def section(df: pl.DataFrame, dest: Path, out: str | None = None) -> list[str]:
    """report.md lines of the held-out prediction from a sensitivity sweep's rows ([] without
    one-at-a-time cells of the re-fitted knobs)."""
    frame = design_frame(df)
    knobs = refit_knobs()
    if not frame.height or not knobs:
        return []
    model = linear_model(frame, knobs)
    if model is None:
        return []
    arch = frame.filter(pl.col("workload") == TARGET)["arch"][0]
    fitted = refit(model, knobs, arch)
    x0 = {k.name: _default_value(f"workload.{k.name}", TARGET, arch) for k in knobs}
    delta = {k: v - x0[k] for k, v in fitted.items()}
    (Path(dest) / "heldout.yaml").write_text(heldout_grid(fitted, arch))
    sim = _simulated(frame, fitted)
    base = _baseline(frame, TARGET)
    text = ["## Held-out prediction: \"after launching 24 apps\"", "",
            f"The knobs fitted to the published lazy figures after 24 apps "
            f"({', '.join(k.name for k in knobs)}) are re-fitted to the published eager figures "
            f"after 24 apps alone; the boot knobs stay fitted to the after-boot figures. "
            f"Re-fitted: " + ", ".join(f"{k} = {v:g} (calibrated: {x0[k]:g})" for k, v in fitted.items())
            + ". The lazy figures after 24 apps are then predicted, not fitted.", "",
            "| cache | published eager KB | re-fitted eager KB (model) | published lazy KB | "
            "published change | calibrated model change | held-out change (linear model) | "
            "error (pp) |" + (" held-out change (simulated) | error (pp) | lazy KB (simulated) |"
                              if sim else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|---|---|" if sim else "")]
    for c in ROW_CACHES:
        before, after = PUBLISHED[TARGET][c]
        want = change_pct(before, after)
        cal = change_pct(base[f"{c}_eager_kb"], base[f"{c}_lazy_kb"])
        lin = change_pct(_kb(model, c, "eager", delta), _kb(model, c, "lazy", delta))
        eager = _kb(model, c, "eager", delta)
        row = (f"| {c} | {before:g} | {eager:.0f} ({change_pct(before, eager):+.1f} %) | {after:g} | "
               f"{want:+.1f} % | {cal:+.1f} % | {lin:+.1f} % | {lin - want:+.1f} |")
        if sim:
            s = change_pct(sim[f"{c}_eager_kb"], sim[f"{c}_lazy_kb"])
            lazy = sim[f"{c}_lazy_kb"]
            row += f" {s:+.1f} % | {s - want:+.1f} | {lazy:.0f} ({change_pct(after, lazy):+.1f} %) |"
        text.append(row)
    where = out or "<the sweep>"
    text += ["", f"{STATE[TARGET].capitalize()}: the change of the calibrated model is a fit; "
             "the held-out columns are predictions. " + (
                 "Simulated cells at the re-fitted values are in the sweep." if sim else
                 f"Simulate the re-fitted cells: `sweep launch {Path(dest) / 'heldout.yaml'} "
                 f"--out {where}` and report again."), ""]
    return text

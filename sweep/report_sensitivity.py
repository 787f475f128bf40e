"""`sweep report` on a sensitivity sweep (conf/sensitivity.yaml, sweep.sensitivity): how much
each lazy-vs-eager figure of the cover letter's table moves when one fitted or assumed knob
goes from the low to the high end of its plausible range (a tornado), the band of outcomes
over plausible workloads (the Latin-hypercube samples), and what a device's workload must
be for the published figures to hold.

A row's design is read from its knob columns (``workload.*``/``arch.*`` parameters): none
set is the baseline, one set is a one-at-a-time cell, more is a Latin-hypercube sample
(seed >= sensitivity.LHS_SEED_BASE) or another explicit point (the held-out cells).
Figures are ``published.change_pct`` of the eager and lazy KB of one design point.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from .published import PUBLISHED, ROW_CACHES, STATE, change_pct
from .sensitivity import LHS_SEED_BASE

KNOB_PREFIXES = ("workload.", "arch.")
FIGURES = [(w, c) for w in PUBLISHED for c in ROW_CACHES]


def knob_columns(df: pl.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(KNOB_PREFIXES) and c != "workload.path"]


def baseline_only(df: pl.DataFrame) -> pl.DataFrame:
    """A sensitivity sweep's baseline cells (no knob set) when it also has design cells: the
    other tables of the report show the baseline, not a mean over the design."""
    knobs = knob_columns(df)
    if not knobs:
        return df
    unset = pl.all_horizontal(pl.col(k).is_null() for k in knobs)
    n = df.select(unset.sum()).item()
    return df.filter(unset) if 0 < n < df.height else df


def design_frame(df: pl.DataFrame) -> pl.DataFrame:
    """One row per design point (workload, arch, seed, knob values) that has both an eager
    and a lazy cell: its kind (baseline, oat, lhs), the knob an oat point varies and its
    value, the knob values, and the change % of each cache."""
    knobs = knob_columns(df)
    d = df.filter(pl.col("workload").is_in(list(PUBLISHED)) & pl.col("policy").is_in(["eager", "lazy"])
                  & (pl.col("variant") == ""))
    if not knobs or not d.height:
        return pl.DataFrame()
    keys = ["workload", "arch", "seed", *knobs]
    kb = [f"{c}_kb" for c in ROW_CACHES]
    pair = (d.filter(pl.col("policy") == "eager").select(keys + kb)
            .join(d.filter(pl.col("policy") == "lazy").select(keys + kb), on=keys,
                  nulls_equal=True, suffix="_lazy").unique(keys, keep="first", maintain_order=True))
    rows = []
    for r in pair.iter_rows(named=True):
        set_ = [k for k in knobs if r[k] is not None]
        kind = ("baseline" if not set_ else "oat" if len(set_) == 1
                else "lhs" if r["seed"] >= LHS_SEED_BASE else "point")
        row = {"workload": r["workload"], "arch": r["arch"], "seed": r["seed"], "kind": kind,
               "knob": set_[0] if kind == "oat" else "", "value": float(r[set_[0]]) if kind == "oat" else None}
        row.update({k: r[k] for k in knobs})
        for c in ROW_CACHES:
            row[c] = change_pct(r[f"{c}_kb"], r[f"{c}_kb_lazy"]) if r[f"{c}_kb"] else None
            row[f"{c}_eager_kb"], row[f"{c}_lazy_kb"] = r[f"{c}_kb"], r[f"{c}_kb_lazy"]
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def _baseline(frame: pl.DataFrame, workload: str) -> dict | None:
    base = frame.filter((pl.col("workload") == workload) & (pl.col("kind") == "baseline"))
    if not base.height:
        return None
    return {c: base[c].mean() for c in ROW_CACHES} | {
        f"{c}_{p}_kb": base[f"{c}_{p}_kb"].mean() for c in ROW_CACHES for p in ("eager", "lazy")}


def _default_value(knob: str, workload: str, arch: str) -> float | None:
    """The composed (baseline) value of a knob key: its option's value in conf/."""
    from simcore import registry
    from .report_provenance import option_values
    group, name = knob.split(".", 1)
    option = workload if group == "workload" else arch
    from dataclasses import fields
    schema = registry.schema(group, option)
    defaults = {f.name: f.default for f in fields(schema)}
    value = option_values(group, option).get(name, defaults.get(name))
    return float(value) if isinstance(value, (int, float)) else None


def tornado(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (figure, knob): the knob's low and high values and the figure's change % there
    (a side without a cell is the baseline: the range ends at the baseline value), and the
    swing |high - low| in percentage points."""
    rows = []
    for workload, cache in FIGURES:
        base = _baseline(frame, workload)
        oat = frame.filter((pl.col("workload") == workload) & (pl.col("kind") == "oat"))
        if base is None or not oat.height:
            continue
        arch = oat["arch"][0]
        for knob in oat["knob"].unique(maintain_order=True).to_list():
            part = oat.filter(pl.col("knob") == knob).group_by("value").agg(pl.col(cache).mean()).sort("value")
            points = dict(zip(part["value"].to_list(), part[cache].to_list()))
            default = _default_value(knob, workload, arch)
            if default is not None and default not in points:
                points[default] = base[cache]
            lo, hi = min(points), max(points)
            rows.append({"workload": workload, "cache": cache, "knob": knob, "low": lo, "high": hi,
                         "at_low": points[lo], "at_high": points[hi], "baseline": base[cache],
                         "swing": abs(points[hi] - points[lo])})
    schema = {"workload": pl.String, "cache": pl.String, "knob": pl.String, "low": pl.Float64,
              "high": pl.Float64, "at_low": pl.Float64, "at_high": pl.Float64,
              "baseline": pl.Float64, "swing": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort(["workload", "cache", "swing"],
                                                  descending=[False, False, True])


def band(frame: pl.DataFrame) -> pl.DataFrame:
    """Per figure: the Latin-hypercube samples' change % (n, min, median, max) beside the
    baseline and the published value."""
    rows = []
    for workload, cache in FIGURES:
        lhs = frame.filter((pl.col("workload") == workload) & (pl.col("kind") == "lhs"))[cache]
        if not lhs.len():
            continue
        before, after = PUBLISHED[workload][cache]
        base = _baseline(frame, workload)
        rows.append({"workload": workload, "cache": cache, "n": lhs.len(), "min": lhs.min(),
                     "median": lhs.median(), "max": lhs.max(),
                     "baseline": base[cache] if base else None,
                     "published": change_pct(before, after)})
    return pl.DataFrame(rows)


def needed(t: pl.DataFrame, top: int = 3) -> list[str]:
    """What the workload must be for each published figure: for the knobs that move it most,
    the value at which the figure (linear between the knob's low, baseline and high cells)
    equals the published change, alone, all else at the baseline."""
    out = []
    for workload, cache in FIGURES:
        part = t.filter((pl.col("workload") == workload) & (pl.col("cache") == cache)).head(top)
        if not part.height:
            continue
        want = change_pct(*PUBLISHED[workload][cache])
        said = []
        for r in part.iter_rows(named=True):
            default = _default_value(r["knob"], workload, "arm64_android")
            pts = sorted({r["low"]: r["at_low"], r["high"]: r["at_high"],
                          **({default: r["baseline"]} if default is not None else {})}.items())
            hit = _crossing(pts, want)
            name = r["knob"].split(".", 1)[1]
            said.append(f"{name} {r['low']:g}..{r['high']:g} gives {r['at_low']:+.1f}..{r['at_high']:+.1f} %"
                        + (f", the published value at {name} = {hit:.3g}" if hit is not None
                           else ", never the published value"))
        out.append(f"- {STATE[workload]}, {cache} (published {want:+.1f} %): " + "; ".join(said) + ".")
    return out


def _crossing(points: list[tuple[float, float]], want: float) -> float | None:
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y0 == want:
            return x0
        if (y0 - want) * (y1 - want) < 0:
            return x0 + (want - y0) * (x1 - x0) / (y1 - y0)
    return points[-1][0] if points and points[-1][1] == want else None


def plot_tornado(t: pl.DataFrame, path: Path, top: int = 12) -> Path | None:
    """One panel per figure: each knob's bar spans its change % at low (blue) and high
    (orange); the line is the baseline, the dashed line the published value."""
    from .plots import plt
    figs = [(w, c) for w, c in FIGURES if t.filter((pl.col("workload") == w) & (pl.col("cache") == c)).height]
    if not figs:
        return None
    fig, axes = plt.subplots(len(figs), 1, figsize=(8, 2.2 + 0.32 * top * len(figs)), squeeze=False)
    for ax, (workload, cache) in zip(axes[:, 0], figs):
        part = t.filter((pl.col("workload") == workload) & (pl.col("cache") == cache)).head(top)
        ys = list(range(part.height))[::-1]
        base = part["baseline"][0]
        for y, r in zip(ys, part.iter_rows(named=True)):
            ax.barh(y, r["at_low"] - base, left=base, color="#4c72b0", height=0.4, align="edge")
            ax.barh(y - 0.4, r["at_high"] - base, left=base, color="#dd8452", height=0.4, align="edge")
        ax.axvline(base, color="black", lw=1)
        ax.axvline(change_pct(*PUBLISHED[workload][cache]), color="black", ls="--", lw=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([f"{k.split('.', 1)[1]} {lo:g}|{hi:g}" for k, lo, hi in
                            zip(part["knob"], part["low"], part["high"])], fontsize=7)
        ax.set_title(f"{STATE[workload]}: {cache}, lazy vs eager change % "
                     f"(blue: knob low, orange: high)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _md_tornado(t: pl.DataFrame) -> list[str]:
    lines = ["| figure | knob | low..high | change % at low | at high | swing (pp) |",
             "|---|---|---|---|---|---|"]
    for r in t.iter_rows(named=True):
        lines.append(f"| {STATE[r['workload']]}: {r['cache']} (baseline {r['baseline']:+.1f} %) | "
                     f"{r['knob']} | {r['low']:g}..{r['high']:g} | {r['at_low']:+.2f} | "
                     f"{r['at_high']:+.2f} | {r['swing']:.2f} |")
    return lines


def section(df: pl.DataFrame, dest: Path) -> tuple[list[str], list[Path]]:
    """report.md lines and figures of a sensitivity sweep ([] if the rows have no design)."""
    frame = design_frame(df)
    if not frame.height:
        return [], []
    t = tornado(frame)
    made = [p for p in (plot_tornado(t, Path(dest) / "tornado.png"),) if p is not None]
    counts = frame.group_by("workload", "kind").len().sort("workload", "kind")
    text = ["## Sensitivity: how the lazy-vs-eager figures move with each fitted or assumed knob",
            "", "Design points with both policies: " + ", ".join(
                f"{r['workload']} {r['kind']} {r['len']}" for r in counts.iter_rows(named=True))
            + ". Change % = 100 (lazy - eager) / eager of one design point's KB.", ""]
    if t.height:
        text += ["### Tornado (one knob at a time, all else at the baseline)", "",
                 *_md_tornado(t), ""]
        text += ["### What must be true of a device's workload for the published figures", "",
                 "Each knob alone, all else at the baseline (linear between its cells):", "",
                 *needed(t), ""]
    b = band(frame)
    if b.height:
        text += ["### Band of outcomes over plausible workloads (joint Latin hypercube, each "
                 "sample its own seed)", "",
                 "| figure | samples | min | median | max | baseline | published |",
                 "|---|---|---|---|---|---|---|"]
        for r in b.iter_rows(named=True):
            base = "" if r["baseline"] is None else f"{r['baseline']:+.1f}"
            text.append(f"| {STATE[r['workload']]}: {r['cache']} | {r['n']} | {r['min']:+.1f} | "
                        f"{r['median']:+.1f} | {r['max']:+.1f} | {base} | {r['published']:+.1f} |")
        text.append("")
    return text, made

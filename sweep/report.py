"""`sweep report`: the ANON_VMA_LAZY cover letter's table beside a sweep's results."""
from __future__ import annotations

import polars as pl

from simcore.slab import CACHES

from .published import ARCH, PUBLISHED, ROW_CACHES, STATE, change_pct


def load_rows(out: str) -> pl.DataFrame:
    """Every ok row of a sweep (local path or pyarrow.fs URI), with a ``sweep.sample_every``
    column (from the Parquet footers when it was not swept) so plots can count operations."""
    from .results import load
    df = load(out).filter(pl.col("status") == "ok").collect()
    if "sweep.sample_every" not in df.columns:
        every = sample_every(out)
        if every is not None:
            df = df.with_columns(pl.lit(every, dtype=pl.Int64).alias("sweep.sample_every"))
    return df


def sample_every(out: str) -> int | None:
    """The sweep's ``sweep.sample_every``, read from the resolved config in its footers;
    None if the files disagree or do not say."""
    import json
    from .store import Store, read_meta
    store = Store(out)
    seen = set()
    for path in store.parquet_files():
        config = json.loads(read_meta(store, path).get("sweep.resolved_config", "{}"))
        seen.add(config.get("base", {}).get("sweep", {}).get("sample_every"))
    return seen.pop() if len(seen) == 1 and None not in seen else None


def lazy_vs_eager(df: pl.DataFrame) -> pl.DataFrame:
    """Mean active KB per (workload, arch, cache) for eager and lazy over the seeds, and the
    change in % of those means (``published.change_pct``: the ratio of means, the same number
    as ``results.spread(results.deltas(df))``)."""
    rows = []
    for (workload, arch), part in df.group_by(["workload", "arch"], maintain_order=True):
        for cache in CACHES:
            means = {p: part.filter(pl.col("policy") == p)[f"{cache}_kb"].mean()
                     for p in ("eager", "lazy")}
            if means["eager"] is None or means["lazy"] is None:
                continue
            change = change_pct(means["eager"], means["lazy"]) if means["eager"] else None
            rows.append({"workload": workload, "arch": arch, "cache": cache,
                         "eager_kb": means["eager"], "lazy_kb": means["lazy"], "change_pct": change})
    schema = {"workload": pl.String, "arch": pl.String, "cache": pl.String,
              "eager_kb": pl.Float64, "lazy_kb": pl.Float64, "change_pct": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _three(before: float, after: float, change: float | None) -> str:
    pct = f"{'n/a':>12}" if change is None else f"{change:+11.1f}%"
    return f"{before:12.1f}{after:12.1f}{pct}"


def cover_letter_table(df: pl.DataFrame) -> str:
    """Plain text, as the cover letter prints it: the published numbers beside ours for the
    architecture they were measured on (arm64_android); the Android workloads on any other
    architecture get a block of our numbers alone.  "" if the sweep has no Android workload
    under both policies."""
    ours = lazy_vs_eager(df).filter(pl.col("workload").is_in(list(PUBLISHED)))
    cols = f"{'before':>12}{'after':>12}{'change':>12}"
    lines = []
    for arch in sorted(set(ours["arch"].to_list()), key=lambda a: (a != ARCH, a)):
        beside = arch == ARCH
        if beside:
            lines.append(f"arch={arch}: the cover letter's numbers (measured on arm64 Android) "
                         f"beside anonsim, active KB")
            lines.append(f"{'':26}{'published (KB)':>36}   {'anonsim (KB)':>36}")
            lines.append(f"{'':26}{cols}   {cols}")
        else:
            lines.append(f"arch={arch}: anonsim only, active KB (the cover letter measured "
                         f"{ARCH}, not {arch})")
            lines.append(f"{'':26}{'anonsim (KB)':>36}")
            lines.append(f"{'':26}{cols}")
        for workload in PUBLISHED:
            part = ours.filter((pl.col("arch") == arch) & (pl.col("workload") == workload))
            if not part.height:
                continue
            lines.append(STATE[workload] + ":")
            for cache in ROW_CACHES:
                row = part.filter(pl.col("cache") == cache).row(0, named=True)
                mine = _three(row["eager_kb"], row["lazy_kb"], row["change_pct"])
                if beside:
                    before, after = PUBLISHED[workload][cache]
                    mine = f"{_three(before, after, change_pct(before, after))}   {mine}"
                lines.append(f"  {cache:24}{mine}")
        lines.append("")
    return "\n".join(lines)


def kb_table(df: pl.DataFrame) -> str:
    """Mean active KB and counts per workload x arch x policy, as a Markdown table."""
    g = (df.group_by(["workload", "arch", "policy"], maintain_order=True)
         .agg(*(pl.col(f"{c}_kb").mean() for c in CACHES), *(pl.col(c).mean() for c in CACHES),
              pl.len().alias("cells")).sort(["workload", "arch", "policy"]))
    head = "| workload | arch | policy | cells | " + " | ".join(f"{c} KB" for c in CACHES) + " |"
    lines = [head, "|" + "---|" * (4 + len(CACHES))]
    for r in g.iter_rows(named=True):
        kb = " | ".join(f"{r[f'{c}_kb']:.1f} ({r[c]:.0f})" for c in CACHES)
        lines.append(f"| {r['workload']} | {r['arch']} | {r['policy']} | {r['cells']} | {kb} |")
    return "\n".join(lines)


def write_report(df: pl.DataFrame, dest: "Path",
                 sensitivity: pl.DataFrame | None = None) -> list["Path"]:
    """report.md (mailing-list table and KB table) and PNG plots into dest; the sensitivity
    sections from the rows of a sensitivity sweep (default: df's own design rows)."""
    from pathlib import Path
    from . import plots
    from .report_sensitivity import baseline_only
    design, df = df if sensitivity is None else sensitivity, baseline_only(df)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    made = [plots.kb_by_policy(df, dest / "kb_by_policy.png")]
    made += [p for p in (plots.change_with_ci(df, dest / "change_pct.png"),
                         plots.fork_cost(df, dest / "fork_cost.png"),
                         plots.rmap_cost(df, dest / "rmap_cost.png"),
                         plots.series(df, dest / "objects_over_time.png")) if p is not None]
    text = ["# anonsim report", ""]
    table = cover_letter_table(df)
    if table:
        text += ["## ANON_VMA_LAZY: lazy vs eager, active KB (the cover letter's numbers "
                 f"beside {ARCH})", "", "```", table, "```", ""]
    from .report_provenance import section as provenance_section
    text += provenance_section(df)
    text += ["## Active KB (mean count) per workload, architecture and policy", "", kb_table(df), ""]
    from .realreport import real_programs_table
    real = real_programs_table(df)
    if real:
        text += ["## What each policy does to real programs", "",
                 "Recordings of real programs (`workload=recording`), every policy against "
                 "eager on the same recording, at the peak (every process exits, so final "
                 "counts are 0): objects and KB saved, VMA count change, lazy's upgrade work "
                 "and the rmap walks' cost.", "", real, ""]
    from .report_designs import designs_table
    three = designs_table(df)
    if three:
        text += ["## Three designs side by side: eager, ANON_VMA_LAZY, COW context", "",
                 "(sweep/report_designs.py: columns and what they count)", "", three, ""]
    from .report_time import time_section
    text += time_section(df)
    from .report_android import android_section
    text += android_section(df)
    from .report_sensitivity import section as sensitivity_section
    from .report_heldout import section as heldout_section
    lines, figures = sensitivity_section(design, dest)
    text += lines + heldout_section(design, dest)
    made += figures
    text += [f"![{p.stem}]({p.name})" for p in made]
    (dest / "report.md").write_text("\n".join(text) + "\n")
    return [dest / "report.md", *made]

"""`sweep report`: the ANON_VMA_LAZY cover letter's table beside a sweep's results."""
from __future__ import annotations

import polars as pl

from simcore.slab import CACHES

# active KB before (mainline) and after (ANON_VMA_LAZY), from the cover letter
PUBLISHED = {
    "android_boot": {"vm_area_struct": (117035, 118176), "anon_vma_chain": (18865.8, 8112.06),
                     "anon_vma": (20426.4, 613.75)},
    "android_apps": {"vm_area_struct": (196873, 197345), "anon_vma_chain": (31477.1, 15576.8),
                     "anon_vma": (33280, 2648.12)},
}
STATE = {"android_boot": "after boot", "android_apps": "after launching 24 apps"}


def load_rows(out: str) -> pl.DataFrame:
    """Every ok row of a sweep (local path or pyarrow.fs URI)."""
    from .results import load
    return load(out).filter(pl.col("status") == "ok").collect()


def lazy_vs_eager(df: pl.DataFrame) -> pl.DataFrame:
    """Mean active KB per (workload, arch, cache) for eager and lazy, and the change in %."""
    rows = []
    for (workload, arch), part in df.group_by(["workload", "arch"], maintain_order=True):
        for cache in CACHES:
            means = {p: part.filter(pl.col("policy") == p)[f"{cache}_kb"].mean()
                     for p in ("eager", "lazy")}
            if means["eager"] is None or means["lazy"] is None:
                continue
            change = 100 * (means["lazy"] - means["eager"]) / means["eager"] if means["eager"] else 0.0
            rows.append({"workload": workload, "arch": arch, "cache": cache,
                         "eager_kb": means["eager"], "lazy_kb": means["lazy"], "change_pct": change})
    return pl.DataFrame(rows)


def cover_letter_table(df: pl.DataFrame) -> str:
    """Plain text, as the cover letter prints it, with our numbers beside the published ones."""
    ours = lazy_vs_eager(df)
    lines = []
    for arch in sorted(set(ours["arch"].to_list()) if ours.height else []):
        lines.append(f"arch={arch}")
        lines.append(f"{'':26}{'published (KB)':>36}   {'anonsim (KB)':>36}")
        lines.append(f"{'':26}{'before':>12}{'after':>12}{'change':>12}   "
                     f"{'before':>12}{'after':>12}{'change':>12}")
        for workload in ("android_boot", "android_apps"):
            part = ours.filter((pl.col("arch") == arch) & (pl.col("workload") == workload))
            if not part.height:
                continue
            lines.append(STATE[workload] + ":")
            for cache in ("vm_area_struct", "anon_vma_chain", "anon_vma"):
                row = part.filter(pl.col("cache") == cache).row(0, named=True)
                before, after = PUBLISHED[workload][cache]
                pub = 100 * (after - before) / before
                lines.append(f"  {cache:24}{before:12.1f}{after:12.1f}{pub:+11.1f}%   "
                             f"{row['eager_kb']:12.1f}{row['lazy_kb']:12.1f}{row['change_pct']:+11.1f}%")
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


def write_report(df: pl.DataFrame, dest: "Path") -> list["Path"]:
    """report.md (mailing-list table and KB table) and PNG plots into dest."""
    from pathlib import Path
    from . import plots
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
        text += ["## ANON_VMA_LAZY cover letter vs anonsim (active KB)", "", "```", table, "```", ""]
    text += ["## Active KB (mean count) per workload, architecture and policy", "", kb_table(df), ""]
    text += [f"![{p.stem}]({p.name})" for p in made]
    (dest / "report.md").write_text("\n".join(text) + "\n")
    return [dest / "report.md", *made]

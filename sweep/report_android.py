"""`sweep report` section: what Android processes did in each cell (merges, munmaps, exits,
compactions and their rmap walks) and the VMA count change of every lazy variant against
eager, beside the cover letter's (sweep/published.py).  Rows of each (policy, variant) are
kept apart: the merge variants are all policy ``lazy``."""
from __future__ import annotations

import polars as pl

from .published import PUBLISHED, change_pct

ACTIVITY = ("vma_merges", "ops_munmap", "ops_munmap_partial", "ops_exit", "compactions",
            "pageout_pages", "swapin_pages")


def vma_change_table(df: pl.DataFrame) -> pl.DataFrame:
    """Per (workload, arch, policy, variant): mean counts over seeds, and the change in % of
    the mean VMA count and VMA KB against eager's mean (published.change_pct)."""
    need = {"workload", "arch", "policy", "variant", "vm_area_struct", "vma_merges"}
    if not need <= set(df.columns):
        return pl.DataFrame()
    df = df.filter(pl.col("status") == "ok") if "status" in df.columns else df
    cols = ["vm_area_struct", "vm_area_struct_kb", "anon_vma", "anon_vma_chain",
            "lazy_pinned_vmas", *ACTIVITY, "pageout_walks", "pageout_vmas_visited",
            "pageout_root_lock_read", "pageout_lockless_walks"]
    cols = [c for c in cols if c in df.columns]
    means = (df.group_by(["workload", "arch", "policy", "variant"], maintain_order=True)
             .agg(pl.len().alias("seeds"), *[pl.col(c).mean() for c in cols]))
    eager = (means.filter(pl.col("policy") == "eager")
             .select("workload", "arch", pl.col("vm_area_struct").alias("eager_vmas"),
                     pl.col("vm_area_struct_kb").alias("eager_vma_kb")))
    out = means.join(eager, on=["workload", "arch"], how="left")
    rows = []
    for r in out.iter_rows(named=True):
        pub = PUBLISHED.get(r["workload"], {}).get("vm_area_struct")
        r["vma_change_pct"] = (change_pct(r["eager_vmas"], r["vm_area_struct"])
                               if r["eager_vmas"] else None)
        r["vma_kb_change_pct"] = (change_pct(r["eager_vma_kb"], r["vm_area_struct_kb"])
                                  if r["eager_vma_kb"] else None)
        r["published_vma_kb_change_pct"] = change_pct(*pub) if pub else None
        per = r["compactions"] or None
        r["walk_vmas_per_compaction"] = r["pageout_vmas_visited"] / per if per else None
        r["root_locks_per_compaction"] = r["pageout_root_lock_read"] / per if per else None
        rows.append(r)
    return pl.DataFrame(rows)


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def android_section(df: pl.DataFrame) -> list[str]:
    """Markdown lines for report.md (none when the rows carry no activity columns)."""
    t = vma_change_table(df)
    if t.is_empty() or not t["vma_merges"].sum():
        return []
    head = ("| workload | arch | policy | variant | seeds | VMAs | VMA change % | VMA KB change % "
            "| published % | pinned | merges | munmaps (partial) | exits | compactions "
            "| pages out | swap-ins | walk VMAs / compaction | root locks / compaction |")
    lines = ["## Android activity and the VMA change per lazy variant", "",
             "Means over seeds; change % = ratio of means against eager (published.change_pct)"
             "; published: the cover letter's vm_area_struct KB change.", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for r in t.sort("workload", "arch", "policy", "variant", nulls_last=False).iter_rows(named=True):
        lines.append(
            f"| {r['workload']} | {r['arch']} | {r['policy']} | {r['variant'] or '-'} | {r['seeds']} "
            f"| {r['vm_area_struct']:,.0f} | {_f(r['vma_change_pct'], '+.3f')} "
            f"| {_f(r['vma_kb_change_pct'], '+.3f')} | {_f(r['published_vma_kb_change_pct'], '+.1f')} "
            f"| {r.get('lazy_pinned_vmas') or 0:,.0f} | {r['vma_merges']:,.0f} "
            f"| {r['ops_munmap']:,.0f} ({r['ops_munmap_partial']:,.0f}) | {r['ops_exit']:,.0f} "
            f"| {r['compactions']:,.0f} | {r['pageout_pages']:,.0f} | {r['swapin_pages']:,.0f} "
            f"| {_f(r['walk_vmas_per_compaction'], '.1f')} | {_f(r['root_locks_per_compaction'], '.1f')} |")
    return lines + [""]

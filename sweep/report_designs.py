"""`sweep report` section "three designs side by side": eager (mainline anon_vma),
ANON_VMA_LAZY and the COW-context PoC on the same cells (issue 14).

Per (workload, arch, swept workload parameters) and design, means over seeds: objects per
kind at the end of the run (VMAs, anon_vmas, AVCs, COW contexts and how many are zombies,
remap-tree nodes) and their KB (remap: maple nodes + dynarray bytes), rmap KB at the end and at the peak (anon_vma + AVC + the design's own
caches; the peak is the sum of each cache's own peak), the per-folio context pointer apart
(its size is an open question: variant folio_ptr_bytes), fork work per fork, and rmap-walk
work per walk (VMAs visited, contexts visited and how many dead, maple lookups, locks).
A summary line per cell says whether cow_context reaches lazy's saving against eager."""
from __future__ import annotations

import polars as pl

from simcore.slab import CACHES

DESIGNS = ("eager", "lazy", "cow_context")
OWN = ("cow_context", "cow_remap_node", "cow_remap_array_bytes")    # the design's own caches
PTR = "cow_folio_ptr"


def _sizes(arch: str) -> dict[str, int]:
    """Object bytes per cache under an arch profile: the kernel caches and cow_context's."""
    from simcore.policy import make_policy
    from .realreport import object_sizes
    sizes = object_sizes(arch)
    profile = {"name": arch}
    for cache in make_policy("cow_context").caches:
        sizes[cache.name] = cache.size(profile)
    return sizes


def _col(df: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in df.columns else pl.lit(0)


def designs(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (workload, arch, workload parameters, design) with every design present
    in the sweep: the section's figures (module docstring), means over seeds."""
    df = df.filter(pl.col("policy").is_in(list(DESIGNS)) & (pl.col("variant") == ""))
    if not df.height or df["policy"].n_unique() < 2:
        return pl.DataFrame()
    params = sorted(c for c in df.columns if c.startswith("workload.")
                    and df[c].null_count() < df.height and df[c].n_unique() > 1)
    keys = ["workload", "arch", *params]
    kinds = [*CACHES, *OWN, PTR]
    metrics = [*kinds, *(f"{k}_peak" for k in kinds), *(f"{k}_kb" for k in kinds),
               "cow_ctx_zombie", "forks", "fork_ns_predicted", "fork_anon_vmas", "fork_avcs",
               "fork_upgrade_ptes", "fork_cow_ctx_allocs", "fork_cow_remap_stores",
               "fork_cow_remap_nodes", "lazy_upgrade_ptes", "rmap_walks", "rmap_vmas_visited",
               "rmap_avcs_visited", "rmap_root_lock_read", "rmap_cow_ctx_visited",
               "rmap_cow_ctx_dead", "rmap_cow_mm_lookups", "rmap_cow_walk_locks"]
    g = (df.group_by([*keys, "policy"], maintain_order=True)
         .agg(*(_col(df, m).cast(pl.Float64).mean().alias(m) for m in metrics),
              pl.len().alias("cells")))
    rows = []
    for r in g.iter_rows(named=True):
        sizes = _sizes(r["arch"])
        own = (*CACHES[1:], *OWN)
        out = {k: r[k] for k in keys}
        out.update(policy=r["policy"], cells=r["cells"],
                   vmas=r["vm_area_struct"], anon_vmas=r["anon_vma"], avcs=r["anon_vma_chain"],
                   contexts=r["cow_context"], zombies=r["cow_ctx_zombie"],
                   remap_nodes=r["cow_remap_node"],
                   rmap_kb=sum(r[f"{k}_kb"] for k in own),
                   rmap_kb_peak=sum(r[f"{k}_peak"] * sizes[k] for k in own) / 1024,
                   av_kb=r["anon_vma_kb"], avc_kb=r["anon_vma_chain_kb"], ctx_kb=r["cow_context_kb"],
                   remap_kb=r["cow_remap_node_kb"] + r["cow_remap_array_bytes_kb"],
                   folio_ptr_kb=r[f"{PTR}_kb"], folio_ptr_kb_peak=r[f"{PTR}_peak"] * sizes[PTR] / 1024,
                   vma_kb=r["vm_area_struct_kb"])
        forks = r["forks"] or 0.0
        per = (lambda x: x / forks) if forks else (lambda x: 0.0)
        out.update(forks=forks, fork_ns=per(r["fork_ns_predicted"]),
                   fork_objects=per(r["fork_anon_vmas"] + r["fork_avcs"]
                                    + r["fork_cow_ctx_allocs"] + r["fork_cow_remap_nodes"]),
                   fork_remap_stores=per(r["fork_cow_remap_stores"]),
                   fork_upgrade_ptes=per(r["fork_upgrade_ptes"]))
        walks = r["rmap_walks"] or 0.0
        pw = (lambda x: x / walks) if walks else (lambda x: 0.0)
        cow = r["policy"] == "cow_context"
        out.update(walks=walks, vmas_per_walk=pw(r["rmap_vmas_visited"]),
                   ctx_per_walk=pw(r["rmap_cow_ctx_visited"]), dead_per_walk=pw(r["rmap_cow_ctx_dead"]),
                   lookups_per_walk=pw(r["rmap_cow_mm_lookups"] if cow else r["rmap_avcs_visited"]),
                   locks_per_walk=pw(r["rmap_cow_walk_locks"] if cow else r["rmap_root_lock_read"]))
        rows.append(out)
    order = {p: i for i, p in enumerate(DESIGNS)}
    return (pl.DataFrame(rows).with_columns(pl.col("policy").replace_strict(order).alias("_o"))
            .sort([*keys, "_o"]).drop("_o"))


def _pct(base: float, value: float) -> str:
    return f"{(value - base) / base * 100:+.0f}%" if base else ("0" if not value else "new")


def designs_table(df: pl.DataFrame) -> str:
    """The section's Markdown: one table, then a verdict line per cell ("" without at least
    two of the designs on the same cells)."""
    t = designs(df)
    if not t.height:
        return ""
    keys = [c for c in t.columns if c == "workload" or c == "arch" or c.startswith("workload.")]
    head = ("| cell | design | VMAs | AV | AVC | ctx (zombie) | remap nodes | "
            "KB end: AV / AVC / ctx / remap | rmap KB end (vs eager) | "
            "rmap KB peak (vs eager) | folio ptr KB | fork ns/fork | fork objects/fork | "
            "remap stores/fork | "
            "walks | VMAs/walk | ctx/walk (dead) | lookups/walk | locks/walk |")
    lines = [head, "|" + "---|" * 19]
    verdicts = []
    for _, part in t.group_by(keys, maintain_order=True):
        rows = {r["policy"]: r for r in part.iter_rows(named=True)}
        base = rows.get("eager")
        for r in part.iter_rows(named=True):
            cell = " ".join(str(r[k]) if k in ("workload", "arch") else f"{k[9:]}={r[k]}"
                            for k in keys)
            end = f"{r['rmap_kb']:.1f}" + (f" ({_pct(base['rmap_kb'], r['rmap_kb'])})" if base else "")
            peak = f"{r['rmap_kb_peak']:.1f}" + (
                f" ({_pct(base['rmap_kb_peak'], r['rmap_kb_peak'])})" if base else "")
            lines.append(
                f"| {cell} | {r['policy']} | {r['vmas']:.0f} | {r['anon_vmas']:.0f} | {r['avcs']:.0f} | "
                f"{r['contexts']:.0f} ({r['zombies']:.0f}) | {r['remap_nodes']:.0f} | "
                f"{r['av_kb']:.1f} / {r['avc_kb']:.1f} / {r['ctx_kb']:.1f} / {r['remap_kb']:.1f} | "
                f"{end} | {peak} | "
                f"{r['folio_ptr_kb']:.1f} | {r['fork_ns']:.0f} | {r['fork_objects']:.1f} | "
                f"{r['fork_remap_stores']:.1f} | "
                f"{r['walks']:.0f} | {r['vmas_per_walk']:.2f} | {r['ctx_per_walk']:.2f} "
                f"({r['dead_per_walk']:.2f}) | {r['lookups_per_walk']:.2f} | {r['locks_per_walk']:.2f} |")
        if base and "lazy" in rows and "cow_context" in rows:
            verdicts.append(f"- {cell}: " + verdict(base, rows["lazy"], rows["cow_context"]))
    reached = sum("cow_context reaches lazy's saving;" in v for v in verdicts)
    head = [f"cow_context saves at least as much rmap KB as lazy (at the end and at the peak) "
            f"in {reached} of {len(verdicts)} cells:", ""] if verdicts else []
    return "\n".join(lines + [""] + head + verdicts)


def verdict(eager: dict, lazy: dict, cow: dict) -> str:
    """One line: rmap KB saved against eager by lazy and by cow_context at the end of the run
    (cow_context also counting an 8 B folio pointer) and at the peak, whether cow_context
    saves at least as much as lazy at both, and the walk cost per walk of each."""
    def saved(r: dict, col: str, ptr: bool = False) -> float:
        kb = r[col] + (r["folio_ptr_kb"] if ptr else 0.0)
        return (eager[col] - kb) / eager[col] * 100 if eager[col] else 0.0
    end, peak = saved(cow, "rmap_kb") >= saved(lazy, "rmap_kb"), \
        saved(cow, "rmap_kb_peak") >= saved(lazy, "rmap_kb_peak")
    reach = {(True, True): "reaches lazy's saving", (False, False): "falls short of lazy's saving",
             (True, False): "reaches lazy's saving at the end, not at the peak",
             (False, True): "reaches lazy's saving at the peak, not at the end"}[end, peak]
    return (f"rmap KB saved vs eager at the end: lazy {saved(lazy, 'rmap_kb'):.0f}%, cow_context "
            f"{saved(cow, 'rmap_kb'):.0f}% ({saved(cow, 'rmap_kb', True):.0f}% with an 8 B "
            f"folio pointer); at the peak: lazy {saved(lazy, 'rmap_kb_peak'):.0f}%, cow_context "
            f"{saved(cow, 'rmap_kb_peak'):.0f}%; cow_context {reach}; VMAs visited per walk "
            f"eager {eager['vmas_per_walk']:.2f}, lazy {lazy['vmas_per_walk']:.2f}, cow_context "
            f"{cow['vmas_per_walk']:.2f} (contexts {cow['ctx_per_walk']:.2f}, lookups "
            f"{cow['lookups_per_walk']:.2f})")

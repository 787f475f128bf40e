"""Report figures (matplotlib, Agg): one function per PNG, each returns its path or None."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from simcore.slab import CACHES  # noqa: E402

POLICY_COLOURS = {"eager": "#4c72b0", "lazy": "#dd8452"}


def _groups(df: pl.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(df["workload"].to_list(), df["arch"].to_list())))


def kb_by_policy(df: pl.DataFrame, path: Path) -> Path:
    """Mean active KB per cache for each workload x arch, one bar per policy."""
    groups = _groups(df)
    policies = sorted(set(df["policy"].to_list()))
    fig, axes = plt.subplots(1, len(CACHES), figsize=(5 * len(CACHES), 0.6 * len(groups) + 2.5))
    for ax, cache in zip(axes, CACHES):
        width = 0.8 / len(policies)
        for i, policy in enumerate(policies):
            values = [df.filter((pl.col("workload") == w) & (pl.col("arch") == a)
                                & (pl.col("policy") == policy))[f"{cache}_kb"].mean() or 0
                      for w, a in groups]
            ax.barh([k + i * width for k in range(len(groups))], values, height=width,
                    label=policy, color=POLICY_COLOURS.get(policy))
        ax.set_yticks([k + 0.4 - width / 2 for k in range(len(groups))])
        ax.set_yticklabels([f"{w}\n{a}" for w, a in groups], fontsize=8)
        ax.set_title(f"{cache} (active KB)")
        ax.set_xlabel("KB")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def change_with_ci(df: pl.DataFrame, path: Path) -> Path | None:
    """Lazy vs eager change in % per cache, mean over seeds with 95 % CI; published marks."""
    from .results import deltas, spread, with_published
    if set(df["policy"].to_list()) < {"eager", "lazy"}:
        return None
    s = with_published(spread(deltas(df)))
    if not s.height:
        return None
    labels = [f"{w} / {a} / {c}" for w, a, c in zip(s["workload"], s["arch"], s["cache"])]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) + 1.5))
    y = list(range(len(labels)))
    ax.errorbar(s["change_pct"].to_list(), y, xerr=s["change_pct_ci95"].to_list(), fmt="o",
                color=POLICY_COLOURS["lazy"], label="anonsim (mean, 95 % CI over seeds)")
    pub = s["published_change_pct"].to_list()
    ax.scatter([p for p in pub if p is not None], [k for k, p in zip(y, pub) if p is not None],
               marker="x", color="black", label="cover letter")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("lazy vs eager, change of active KB (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fork_cost(df: pl.DataFrame, path: Path) -> Path | None:
    """Distribution of predicted fork latency per policy (all forks of all cells)."""
    if "fork_ns" not in df.columns:
        return None
    data = {p: [ns / 1e3 for lst in part["fork_ns"].to_list() for ns in (lst or [])]
            for p, part in df.group_by("policy")}
    data = {p[0] if isinstance(p, tuple) else p: v for p, v in data.items() if v}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = sorted(data)
    ax.boxplot([data[n] for n in names], orientation="horizontal", showfliers=False)
    ax.set_yticks(range(1, len(names) + 1))
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted fork latency (µs), fork cost model of the arch profile")
    ax.set_title("fork cost per fork")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rmap_cost(df: pl.DataFrame, path: Path) -> Path | None:
    """rmap walk cost per walk: VMAs visited, VMAs not mapping, root read locks."""
    if not df["rmap_walks"].sum():
        return None
    metrics = ("rmap_vmas_visited", "rmap_vmas_not_mapping", "rmap_root_lock_read",
               "rmap_lockless_walks")
    g = (df.group_by("policy").agg(*(pl.col(m).sum() for m in metrics), pl.col("rmap_walks").sum())
         .sort("policy"))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / g.height
    for i, row in enumerate(g.iter_rows(named=True)):
        values = [row[m] / max(row["rmap_walks"], 1) for m in metrics]
        ax.bar([k + i * width for k in range(len(metrics))], values, width=width,
               label=row["policy"], color=POLICY_COLOURS.get(row["policy"]))
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(metrics))])
    ax.set_xticklabels([m.replace("rmap_", "") for m in metrics], fontsize=8)
    ax.set_ylabel("per walk")
    ax.set_title("rmap walk cost (memory-pressure phases)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def series(df: pl.DataFrame, path: Path) -> Path | None:
    """Object counts over the operations of one cell per workload x policy (first seed)."""
    col = "anon_vma_series"
    if col not in df.columns or not any(df[col].list.len() > 1):
        return None
    fig, axes = plt.subplots(1, len(CACHES), figsize=(5 * len(CACHES), 3.5))
    first = df.sort("seed").unique(subset=["workload", "arch", "policy"], keep="first")
    first = first.filter(pl.col("arch") == first["arch"][0])
    for ax, cache in zip(axes, CACHES):
        for row in first.iter_rows(named=True):
            values = row[f"{cache}_series"] or []
            if len(values) > 1:
                ax.plot(values, label=f"{row['workload']} {row['policy']}",
                        linestyle="-" if row["policy"] == "eager" else "--")
        ax.set_title(f"{cache} over time")
        ax.set_xlabel(f"operations / sweep.sample_every")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

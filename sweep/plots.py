"""Report figures (matplotlib, Agg): one function per PNG, each returns its path or None."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.lines
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
    s = with_published(spread(deltas(df))).sort(["cache", "workload", "arch"], descending=True)
    s = s.filter(pl.col("change_pct").is_not_null())    # nothing alive under eager: no %
    if not s.height:
        return None
    labels = [f"{w} / {a} / {c}" for w, a, c in zip(s["workload"], s["arch"], s["cache"])]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) + 1.8))
    y = list(range(len(labels)))
    ax.errorbar(s["change_pct"].to_list(), y, xerr=s["change_pct_ci95"].to_list(), fmt="o",
                color=POLICY_COLOURS["lazy"], label="anonsim (mean, 95 % CI over seeds)")
    pub = s["published_change_pct"].to_list()
    if any(p is not None for p in pub):        # only beside the arch it was measured on
        ax.scatter([p for p in pub if p is not None], [k for k, p in zip(y, pub) if p is not None],
                   marker="x", color="black", label="cover letter (arm64 Android)")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("lazy vs eager, change of active KB (%)")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
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


# one style per line of the objects-over-time panels: colour, dash and marker all differ,
# so equal series (e.g. vm_area_struct under eager and lazy) stay visible on top of each other
LINE_STYLES = [dict(color="#4c72b0", linestyle="-", marker="o", linewidth=2.4),
               dict(color="#dd8452", linestyle="--", marker="s", linewidth=1.6),
               dict(color="#55a868", linestyle=":", marker="^", linewidth=1.6),
               dict(color="#c44e52", linestyle="-.", marker="D", linewidth=1.2),
               dict(color="#8172b3", linestyle=(0, (5, 1, 1, 1)), marker="v", linewidth=1.2),
               dict(color="#937860", linestyle=(0, (1, 1)), marker="P", linewidth=1.2)]
SERIES_ROWS = 6          # workload x arch rows drawn at most


def series_figure(df: pl.DataFrame):
    """Object counts over the operations of a cell (the first seed of each workload x arch x
    policy/variant): a row of panels per workload x arch, a panel per cache, a line per
    policy (variant).  -> a matplotlib Figure, or None when the sweep sampled no series."""
    col = "anon_vma_series"
    if col not in df.columns or not any(df[col].list.len() > 1):
        return None
    df = df.filter(pl.col(col).list.len() > 1)
    first = df.sort("seed").unique(subset=["workload", "arch", "policy", "variant"], keep="first")
    groups = _groups(first)
    shown = groups[:SERIES_ROWS]
    labels = sorted({_line_label(r) for r in first.iter_rows(named=True)})
    style = {label: LINE_STYLES[i % len(LINE_STYLES)] for i, label in enumerate(labels)}
    fig, axes = plt.subplots(len(shown), len(CACHES), squeeze=False,
                             figsize=(5 * len(CACHES), 2.8 * len(shown) + 0.8))
    for r, (workload, arch) in enumerate(shown):
        rows = first.filter((pl.col("workload") == workload) & (pl.col("arch") == arch))
        rows = sorted(rows.iter_rows(named=True), key=_line_label)
        for ax, cache in zip(axes[r], CACHES):
            for i, row in enumerate(rows):
                values = row[f"{cache}_series"]
                every = row.get("sweep.sample_every")
                x = [(k + 1) * (every or 1) for k in range(len(values))]
                step = max(1, len(values) // 8)
                ax.plot(x, values, label=_line_label(row), markersize=5,
                        markevery=(i * step // max(len(rows), 1), step), **style[_line_label(row)])
            ax.set_title(f"{cache}: {workload} / {arch}", fontsize=9)
            ax.set_xlabel("operations" if rows and rows[0].get("sweep.sample_every")
                          else "samples (one every sweep.sample_every operations)", fontsize=8)
            ax.set_ylabel("live objects", fontsize=8)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    handles = [matplotlib.lines.Line2D([], [], **style[label]) for label in labels]
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    if len(groups) > len(shown):
        fig.text(0.5, 0.005, f"{len(shown)} of {len(groups)} workload x arch groups shown",
                 ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1 - 0.5 / fig.get_figheight()))
    return fig


def _line_label(row: dict) -> str:
    return row["policy"] + (f" ({row['variant']})" if row.get("variant") else "")


def series(df: pl.DataFrame, path: Path) -> Path | None:
    """The objects-over-time figure (series_figure) as a PNG."""
    fig = series_figure(df)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""The results API: a sweep's Parquet as a Polars LazyFrame, and the usual comparisons.

    from sweep import results
    lf = results.load("results/anon_vma_lazy")               # or several, or s3://...
    d = results.deltas(lf)                                     # eager -> lazy per cell pair
    results.spread(d)                                          # change of the means, sd, 95 % CI
    results.with_published(results.spread(d))                  # beside the cover letter
"""
from __future__ import annotations

import math

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from simcore.slab import CACHES

from . import published as _published
from .store import LIST_METRICS, Store, metric_columns


def load(*sources: str) -> pl.LazyFrame:
    """Every row of one or more sweeps (local paths or pyarrow.fs URIs), lazily, with one
    explicit schema: the union of the sweeps' schemas (a parameter swept in only one sweep
    is null in the others); `workload` and `policy` are typed string columns."""
    if not sources:
        raise ValueError("load() needs at least one sweep directory or URI")
    import warnings
    datasets = []
    for source in sources:
        store = Store(source)
        files = store.sound_files([])              # footers; damaged files are moved aside
        for line in store.quarantine_notes():
            warnings.warn(f"{source}: {line}", stacklevel=2)
        if not files:
            raise FileNotFoundError(f"no results under {source}")
        # every file's schema: launches of one sweep may sweep different parameters
        # (a dataset alone would take the first file's columns and drop the others')
        file_schema = pa.unify_schemas([pq.read_schema(f, filesystem=store.fs).remove_metadata()
                                        for f in files])
        datasets.append(ds.dataset(files, filesystem=store.fs, format="parquet",
                                   schema=file_schema))
    schema = pa.unify_schemas([d.schema.remove_metadata() for d in datasets])
    frames = [pl.scan_pyarrow_dataset(ds.dataset(d.files, filesystem=d.filesystem,
                                                 format="parquet", schema=schema))
              for d in datasets]
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def _pair_keys(df: pl.DataFrame) -> list[str]:
    """Columns that identify a cell apart from its policy: ids, arch, seed, swept parameters."""
    metric_like = {c for c in df.columns if c.startswith(("rmap_", "lazy_", "fork", "folios",
                                                          "processes", "anon_vma_root"))}
    metric_like |= {c for cache in CACHES for c in df.columns if c.startswith(cache)}
    metric_like |= {c for cols in metric_columns(None) for c in cols} | set(LIST_METRICS)
    return [c for c in df.columns if c not in metric_like and c not in
            ("cell_id", "code_fingerprint", "policy", "variant", "status", "error",
             "traceback", "wall_s", "worker_peak_rss_kb", "worker_rss_kb")]


def deltas(lf: pl.LazyFrame | pl.DataFrame, base: str = "eager", other: str = "lazy") -> pl.DataFrame:
    """One row per (cell pair, cache): base and other counts and KB, the change, in %, of
    that one pair (over seeds, :func:`spread` takes the change of the means)."""
    df = (lf.collect() if isinstance(lf, pl.LazyFrame) else lf).filter(pl.col("status") == "ok")
    keys = _pair_keys(df)
    left = df.filter(pl.col("policy") == base)
    right = df.filter(pl.col("policy") == other)
    joined = left.join(right, on=keys, suffix="_other")
    parts = []
    for cache in CACHES:
        parts.append(joined.select(
            *keys, pl.lit(cache).alias("cache"), pl.col("variant_other").alias("variant"),
            pl.col(cache).alias("base"), pl.col(f"{cache}_other").alias("other"),
            pl.col(f"{cache}_kb").alias("base_kb"), pl.col(f"{cache}_kb_other").alias("other_kb"),
        ))
    out = pl.concat(parts)
    return out.with_columns(
        (pl.col("other") - pl.col("base")).alias("change"),
        pl.when(pl.col("base_kb") > 0)
        .then(100 * (pl.col("other_kb") - pl.col("base_kb")) / pl.col("base_kb"))
        .otherwise(None).alias("change_pct"))


def _t95(n: int) -> float:
    """Two-sided 95 % Student t quantile for n-1 degrees of freedom (a small table)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
             9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}
    dof = max(n - 1, 1)
    return next((v for k, v in sorted(table.items()) if dof <= k), 1.96)


def spread(d: pl.DataFrame, by: tuple[str, ...] = ("workload", "arch", "cache")) -> pl.DataFrame:
    """Mean KB, the change in % and its standard deviation and 95 % confidence interval over
    seeds.

    ``change_pct`` is the change of the means, ``published.change_pct(mean(base_kb),
    mean(other_kb))`` (the ratio of means, the number `sweep report`'s table prints; not the
    mean of the per-seed ``change_pct`` of :func:`deltas`).  Its spread comes from the
    per-seed differences scaled by the mean base, ``100 * (other_kb - base_kb) / mean(base_kb)``,
    whose mean is exactly ``change_pct`` (the denominator is taken as fixed).  Null where the
    mean base is 0."""
    mean_base = pl.col("base_kb").mean().over(list(by))
    scaled = (pl.when(mean_base > 0)
              .then(100 * (pl.col("other_kb") - pl.col("base_kb")) / mean_base)
              .otherwise(None))
    g = d.with_columns(scaled.alias("_scaled")).group_by(list(by), maintain_order=True).agg(
        pl.col("base_kb").mean(), pl.col("other_kb").mean(),
        pl.col("_scaled").mean().alias("change_pct"),
        pl.col("_scaled").std().fill_null(0.0).alias("change_pct_sd"),
        pl.len().alias("seeds"))
    half = [(_t95(n) * sd / math.sqrt(n)) if n > 1 else 0.0
            for n, sd in zip(g["seeds"].to_list(), g["change_pct_sd"].to_list())]
    return g.with_columns(pl.Series("change_pct_ci95", half))


def with_published(s: pl.DataFrame) -> pl.DataFrame:
    """spread() joined with the published numbers: null except for the architecture they
    were measured on (arm64_android) and the Android workloads."""
    if "arch" not in s.columns:
        raise ValueError(f"with_published() needs an 'arch' column: the cover letter's numbers "
                         f"were measured on {_published.ARCH} only")
    return s.join(_published.frame(), on=["workload", "arch", "cache"], how="left")

"""`sweep report`'s time section (sweep/report_time.py) on rows the runner makes, and the
fork microbenchmark of the fork claim."""
from __future__ import annotations

import polars as pl
import pytest

from conftest import DEMO
from simcore.arch import ArchConf
from sweep.config import load_grid
from sweep.report_time import fork_claim, fork_microbench, time_section, walk_table
from sweep.runner import simulate_cell


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    """Random traces with forks and rmap walks, eager and lazy, two seeds, no Ray."""
    grid = load_grid(DEMO, ["policy=eager,lazy", "seed=0,1", "arch=x86_64",
                            "workload.n_ops=120"])
    out = []
    for cell in grid.cells:
        cfg = grid.resolve(cell["point"])
        row = simulate_cell(cfg)
        row.update(workload=cfg["workload"]["name"], arch=cfg["arch"]["name"],
                   policy=cfg["policy"]["name"], seed=int(cfg["seed"]))
        out.append(row)
    return pl.DataFrame(out)


def test_time_section_has_every_policy_and_the_fork_pairs(rows):
    assert rows["forks"].sum() > 0 and rows["rmap_walks"].sum() > 0
    text = "\n".join(time_section(rows))
    assert "| random | x86_64 | eager |" in text and "| random | x86_64 | lazy |" in text
    claim = fork_claim(rows)
    assert claim.height == 1 and claim["forks"][0] == rows.filter(
        pl.col("policy") == "eager")["forks"].sum()
    # mean of the per-fork pairs = the rows' predicted fork time over their forks
    eager = rows.filter(pl.col("policy") == "eager")
    assert claim["eager_us"][0] == pytest.approx(
        eager["fork_ns_predicted"].sum() / eager["forks"].sum() / 1e3)
    assert "walk kind" in walk_table(rows)
    assert "cow_context_us" not in claim.columns               # no cow_context rows here


def test_fork_claim_adds_cow_context_over_its_own_pairs(rows):
    """cow_context rows (here: eager's renamed, forks scaled x0.5): their mean and change
    against eager over matched per-fork pairs."""
    ctx = rows.filter(pl.col("policy") == "eager").with_columns(
        pl.lit("cow_context").alias("policy"),
        pl.col("fork_ns").list.eval(pl.element() * 0.5))
    claim = fork_claim(pl.concat([rows, ctx], how="diagonal_relaxed"))
    assert claim["cow_context_change_pct"][0] == pytest.approx(-50.0)
    assert claim["cow_context_us"][0] == pytest.approx(claim["eager_us"][0] / 2)


def test_walk_time_per_compaction_when_rows_count_compactions(rows):
    df = rows.with_columns(pl.lit(4, dtype=pl.Int64).alias("android_compactions"))
    table = walk_table(df)
    assert "ns per android_compactions" in table
    r = df.filter(pl.col("policy") == "eager")
    walked = [k for k in ("reclaim", "migrate", "idle", "ksm") if r[f"rmap_{k}_walks"].sum()]
    per = r[f"time_rmap_{walked[0]}_ns"].mean() / 4
    assert f"{per:,.0f}" in table


def test_fork_microbenchmark_lazy_pays_the_upgrade_at_the_first_fork_only():
    arch = ArchConf().__dict__
    df = fork_microbench(arch, shapes=((20, 1, 1), (20, 8, 8)))
    first = df.filter(pl.col("fork") == "first")
    second = df.filter(pl.col("fork") == "second")
    assert (first["lazy_us"] > first["eager_us"]).all()      # + the PTE scan
    assert (second["lazy_us"] < second["eager_us"]).all()    # no child anon_vma + AVC
    # second fork: lazy saves exactly the child's anon_vma and its AVC per VMA
    saved = (second["eager_us"] - second["lazy_us"]) * 1e3
    assert saved.to_list() == pytest.approx([20 * (arch["fork_av_ns"] + arch["fork_avc_ns"])] * 2)
    # first fork: lazy - eager = the PTE scan of the upgrade (20 VMAs x pages)
    extra = ((first["lazy_us"] - first["eager_us"]) * 1e3).to_list()
    assert extra == pytest.approx([20 * p * arch["fork_pte_ns"] for p in (1, 8)])
    even = first["later_forks_to_even"].to_list()
    assert even == pytest.approx([e / s for e, s in zip(extra, saved.to_list())])
    # a sparse VMA: the upgrade scans all its pages, eager copies the written ones only
    sparse = fork_microbench(arch, shapes=((20, 64, 1),)).filter(pl.col("fork") == "first")
    assert (sparse["lazy_us"] - sparse["eager_us"])[0] * 1e3 == pytest.approx(
        20 * 64 * arch["fork_pte_ns"])
    assert sparse["lazy_us_present_only"][0] * 1e3 == pytest.approx(
        sparse["eager_us"][0] * 1e3 + 20 * 1 * arch["fork_pte_ns"])

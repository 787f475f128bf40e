"""The analysis layer: results API, report files, and both notebooks run headlessly."""
from __future__ import annotations

import shutil

import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from sweep import results
from sweep.config import load_grid
from sweep.report import load_rows, write_report
from sweep.runner import launch


@pytest.fixture(scope="module")
def small_sweep(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "small"
    grid = load_grid(ROOT / "conf/demo.yaml", ["seed=0,1,2", "workload.n_ops=30", "arch=x86_64"])
    launch(grid, str(out))
    return str(out)


def test_load_has_the_explicit_schema_and_several_sweeps(small_sweep, tmp_path):
    lf = results.load(small_sweep)
    schema = lf.collect_schema()
    assert schema["seed"] == pl.Int64 and schema["workload.n_ops"] == pl.Int64
    assert schema["policy"] == pl.String and schema["anon_vma_kb"] == pl.Float64
    other = tmp_path / "other"
    shutil.copytree(small_sweep, other)
    assert results.load(small_sweep, str(other)).select(pl.len()).collect().item() == 12


def test_deltas_spread_and_published(small_sweep):
    d = results.deltas(results.load(small_sweep))
    assert d.height == 3 * 3                               # 3 seeds x 3 caches
    assert (d.filter(pl.col("cache") == "anon_vma")["other"] <=
            d.filter(pl.col("cache") == "anon_vma")["base"]).all()
    s = results.spread(d)
    assert set(s["seeds"].to_list()) == {3} and (s["change_pct_ci95"] >= 0).all()
    assert "published_change_pct" in results.with_published(s).columns


def test_report_writes_markdown_and_plots(small_sweep, tmp_path):
    paths = write_report(load_rows(small_sweep), tmp_path / "report")
    names = {p.name for p in paths}
    assert {"report.md", "kb_by_policy.png", "change_pct.png", "fork_cost.png"} <= names
    assert all(p.stat().st_size > 5000 for p in paths if p.suffix == ".png")
    assert "| random | x86_64 | eager | 3 |" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize("name", ["analysis", "time_models"])
def test_notebooks_execute(name, small_sweep, monkeypatch):
    monkeypatch.setenv("ANONSIM_SWEEP", small_sweep)
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") in ("display_data", "execute_result", "stream") for o in outputs)


def test_report_table_and_spread_give_the_same_change():
    """One definition of "change %": the change of the means over seeds (not the mean of the
    per-seed changes), in `sweep report`'s table and in results.spread alike."""
    from simcore.slab import CACHES
    from sweep.report import lazy_vs_eager
    rows = []
    for seed, (eager, lazy) in enumerate([(100.0, 10.0), (300.0, 240.0), (200.0, 20.0)]):
        for policy, kb in (("eager", eager), ("lazy", lazy)):
            row = {"cell_id": f"{policy}{seed}", "status": "ok", "policy": policy,
                   "variant": "", "workload": "w", "arch": "x86_64", "seed": seed}
            for i, cache in enumerate(CACHES):
                row[cache], row[f"{cache}_kb"] = int(kb) + i, kb + i
            rows.append(row)
    df = pl.DataFrame(rows)
    table = lazy_vs_eager(df).sort("cache")
    s = results.spread(results.deltas(df)).sort("cache")
    assert table["change_pct"].to_list() == pytest.approx(s["change_pct"].to_list())
    first = s.filter(pl.col("cache") == CACHES[0])          # its KB are the ones listed above
    ratio_of_means = 100 * ((10 + 240 + 20) / 3 - 200) / 200            # -55 %
    assert first["change_pct"].item() == pytest.approx(ratio_of_means)
    per_seed = (-90 - 20 - 90) / 3                                     # -66.7 %: not used
    assert first["change_pct"].item() != pytest.approx(per_seed)
    assert first["change_pct_ci95"].item() > 0

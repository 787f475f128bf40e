"""The sweep engine on a real local Ray: results, resume, failures, retries, determinism."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import polars as pl

from conftest import ROOT
from sweep.config import load_grid
from sweep.runner import launch
from sweep.store import Store, read_meta

CONF = ROOT / "conf"
RAY_ERROR = re.compile(r"^\[[\d-]+ [\d:,.]+ E \d+ \d+\]", re.M)   # glog: [date time E pid tid]


def rows(out: str) -> pl.DataFrame:
    return pl.read_parquet(f"{out}/**/*.parquet", hive_partitioning=False)


def test_launch_writes_one_row_per_cell_and_resumes(ray_local, tmp_path):
    grid = load_grid(CONF / "demo.yaml", ["seed=0,1", "workload.n_ops=20"])
    out = str(tmp_path / "r")
    first = launch(grid, out)
    assert first.done == len(grid.cells) == 8 and first.failed == 0
    df = rows(out)
    assert df.height == 8 and df["cell_id"].n_unique() == 8
    assert set(df["status"]) == {"ok"}
    assert (df["anon_vma_kb"] == df["anon_vma"] * 104 / 1024).all()
    lazy = df.filter(pl.col("policy") == "lazy")["anon_vma"].sum()
    assert lazy <= df.filter(pl.col("policy") == "eager")["anon_vma"].sum()
    again = launch(grid, out)
    assert again.done == 0 and again.cached == 8
    meta = read_meta(Store(out), Store(out).parquet_files()[0])
    for key in ("sweep.resolved_config", "sweep.git_commit", "sweep.packages", "sweep.host",
                "sweep.ray_version", "sweep.code_fingerprint"):
        assert key in meta
    lf = pl.scan_parquet(f"{out}/**/*.parquet", hive_partitioning=True)
    assert lf.select(pl.len()).collect().item() == 8


def trace_grid(path: Path):
    """One cell: the trace at path, eager, x86_64."""
    return load_grid(CONF / "demo.yaml", ["workload=trace", f"workload.path={path}",
                                          "policy=eager", "arch=x86_64", "seed=0",
                                          "~workload.n_ops"])


def test_simulator_exception_is_a_failed_row_then_retry_failed(ray_local, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "touch", "pid": 0, "region": "nope"}\n')
    grid = trace_grid(bad)
    out = str(tmp_path / "r")
    prog = launch(grid, out)
    assert prog.failed == 1
    df = rows(out)
    assert df["status"].to_list() == ["failed"]
    assert "TraceError" in df["error"][0] and df["traceback"][0]
    assert launch(grid, out).done == 0                     # failures are not retried by default
    prog = launch(grid, out, retry_failed=True)            # rerun: fails again, replaces the row
    df = rows(out)
    assert prog.done == 0 and prog.failed == 1 and df.height == 1
    assert df["status"].to_list() == ["failed"]


def test_an_edited_input_file_is_a_new_cell(ray_local, tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"op": "mmap", "pid": 0, "region": "a", "pages": 2}\n')
    grid = trace_grid(trace)
    out = str(tmp_path / "r")
    assert launch(grid, out).done == 1
    assert launch(grid, out).done == 0                     # same content: cached
    trace.write_text('{"op": "mmap", "pid": 0, "region": "a", "pages": 2}\n'
                     '{"op": "touch", "pid": 0, "region": "a"}\n')
    again = launch(grid, out)
    assert again.done == 1 and again.cached == 0           # same path, new content: computed
    df = rows(out)
    assert df.height == 2 and sorted(df["folios"].to_list()) == [0, 2]   # touch faults both pages


def test_results_do_not_depend_on_the_number_of_workers(ray_local, tmp_path):
    grid = load_grid(CONF / "demo.yaml", ["seed=range(0,6)"])
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    launch(grid, a, workers=1)
    launch(grid, b, workers=2)
    drop = ["wall_s", "worker_peak_rss_kb", "worker_rss_kb"]      # measurements of the run
    da = rows(a).drop(drop).sort("cell_id")
    db = rows(b).drop(drop).sort("cell_id")
    assert da.equals(db)


def test_a_dead_worker_is_replaced_and_its_batch_rerun(ray_local, tmp_path):
    marker = tmp_path / "died"
    grid = load_grid(CONF / "demo.yaml", ["+sweep.plugins=[tests.plugin_workloads]",
                                          "workload=die_once", f"workload.marker={marker}",
                                          "seed=range(0,20)", "~workload.n_ops", "arch=x86_64",
                                          "policy=eager", "sweep.batch_size=4"])
    out = str(tmp_path / "r")
    prog = launch(grid, out)
    assert marker.exists(), "a worker process really died"
    assert prog.retried == 1 and prog.failed == 0      # rerun once, on a worker that is up
    df = rows(out)
    assert df.height == 20 and df["cell_id"].n_unique() == 20
    assert set(df["status"].to_list()) == {"ok"}


def test_a_cell_that_always_kills_its_worker_ends_as_failed_rows(ray_local, tmp_path):
    attempts = tmp_path / "attempts"
    grid = load_grid(CONF / "demo.yaml", ["+sweep.plugins=[tests.plugin_workloads]",
                                          "workload=die_on_seed", "workload.seed=3",
                                          f"workload.attempts={attempts}", "seed=range(0,8)",
                                          "~workload.n_ops", "arch=x86_64", "policy=eager",
                                          "sweep.batch_size=1", "sweep.max_retries=2"])
    out = str(tmp_path / "r")
    prog = launch(grid, out)
    pids = attempts.read_text().split()
    assert len(pids) == 3 and len(set(pids)) == 3, "ran 1 + max_retries times, each time dying"
    assert prog.retried == 3 and prog.failed == 1 and prog.done == 7
    df = rows(out).sort("seed")
    assert df.height == 8 and df["cell_id"].n_unique() == 8
    assert df["status"].to_list() == ["ok"] * 3 + ["failed"] + ["ok"] * 4
    assert df.filter(pl.col("status") == "failed")["error"].to_list() == ["worker died: ActorDiedError"]


def test_a_normal_launch_prints_no_ray_error_lines(tmp_path):
    sample = ("[2026-11-30 15:03:33,402 E 17679 17679] core_worker.cc:2465: Actor with class "
              "name: 'SimWorker' has constructor arguments in the object store and max_restarts > 0.")
    assert RAY_ERROR.search(sample), "the pattern catches the line launches used to print"
    res = subprocess.run([sys.executable, "-m", "sweep.cli", "launch", "conf/demo.yaml", "--out",
                          str(tmp_path / "r"), "--num-cpus", "2", "seed=0,1", "workload.n_ops=10",
                          "arch=x86_64"], cwd=ROOT, env={**os.environ, "RAY_ADDRESS": ""},
                         capture_output=True, text=True, timeout=900, start_new_session=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "4 computed" in res.stdout
    assert not RAY_ERROR.findall(res.stderr), res.stderr


def test_output_paths_cannot_escape_the_result_directory(tmp_path):
    from sweep.store import safe_name
    assert safe_name("../../etc") == "_.._.._etc" and "/" not in safe_name("a/b")


def test_a_worn_worker_is_replaced_between_batches_and_no_cell_is_lost(ray_local, tmp_path):
    """One worker slot, one cell per batch, sweep.worker_max_cells=2: cells 1-2 in one
    process, 3-4 in a fresh one (not replaced after the last batch: no work left).  Each
    row carries its worker's peak RSS during the cell and its RSS after it."""
    grid = load_grid(CONF / "demo.yaml", ["workload=noop", "~workload.n_ops", "policy=eager",
                                          "arch=x86_64", "seed=range(0,4)",
                                          "sweep.batch_size=1", "sweep.worker_max_cells=2"])
    out = str(tmp_path / "r")
    lines: list[str] = []
    prog = launch(grid, out, workers=1, log=lines.append)
    assert (prog.done, prog.failed, prog.recycled) == (4, 0, 1)
    assert sum("replaced by a fresh process: ran 2 cells" in ln for ln in lines) == 1
    df = rows(out)
    assert df.height == 4 and df["cell_id"].n_unique() == 4
    assert (df["worker_peak_rss_kb"] >= df["worker_rss_kb"]).all()
    assert (df["worker_rss_kb"] > 10_000).all()

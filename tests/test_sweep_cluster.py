"""The sweep engine against real infrastructure: an S3 server over HTTP, a driver killed
with SIGKILL and relaunched, and a multi-node Ray cluster that loses a node."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from sweep.config import load_grid
from sweep.runner import launch

ROOT = Path(__file__).resolve().parent.parent


def test_results_to_s3(ray_local, s3_uri):
    grid = load_grid("conf/demo.yaml", ["seed=0,1", "workload.n_ops=20"])
    prog = launch(grid, s3_uri)
    assert prog.done == 8
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    table = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 8 and len(set(table["cell_id"].to_pylist())) == 8
    assert launch(grid, s3_uri).done == 0


def _sweep_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", "launch", "conf/demo.yaml", "--out", str(out),
            "--num-cpus", "2", "workload=noop", "workload.sleep_ms=60", "~workload.n_ops",
            "policy=eager,lazy", "arch=x86_64", "seed=range(0,40)", "sweep.batch_size=2"]


def test_driver_killed_with_sigkill_then_relaunched(tmp_path):
    out = tmp_path / "r"
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(_sweep_cmd(out), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if len(list(out.rglob("part-*.parquet"))) >= 6:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the sweep wrote nothing in 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)          # the driver and its local Ray
        proc.wait()
    written = len(list(out.rglob("part-*.parquet")))
    res = subprocess.run(_sweep_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, start_new_session=True)
    assert res.returncode == 0, res.stderr[-2000:]
    grid = load_grid(ROOT / "conf/demo.yaml", _sweep_cmd(out)[9:])
    table = ds.dataset(str(out), format="parquet", partitioning="hive").to_table()
    ids = table["cell_id"].to_pylist()
    assert sorted(ids) == sorted(c["id"] for c in grid.cells), "exactly one row per cell"
    assert set(table["status"].to_pylist()) == {"ok"}
    assert written < len(grid.cells) // 2, "the kill happened mid-sweep"


def test_multinode_cluster_survives_losing_a_node(tmp_path):
    res = subprocess.run([sys.executable, "tests/cluster_job.py", str(tmp_path / "r")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "RAY_ADDRESS": ""}, start_new_session=True)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["nodes"] == 3 and summary["removed"]
    assert summary["done"] == summary["cells"] == 40 and summary["failed"] == 0
    table = ds.dataset(str(tmp_path / "r"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 40 and len(set(table["cell_id"].to_pylist())) == 40

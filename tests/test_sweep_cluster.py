"""The sweep engine against real infrastructure: an S3 server over HTTP, a driver killed
with SIGKILL and relaunched, and a multi-node Ray cluster that loses a node."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from conftest import ROOT
from sweep.config import load_grid
from sweep.runner import launch


def test_results_to_s3(ray_local, s3_uri):
    grid = load_grid(ROOT / "conf/demo.yaml", ["seed=0,1", "workload.n_ops=20"])
    prog = launch(grid, s3_uri)
    assert prog.done == 8
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    table = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 8 and len(set(table["cell_id"].to_pylist())) == 8
    assert launch(grid, s3_uri).done == 0


def _sweep_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", "launch", str(ROOT / "conf/demo.yaml"), "--out", str(out),
            "--num-cpus", "2", "workload=noop", "workload.sleep_ms=60", "~workload.n_ops",
            "policy=eager,lazy", "arch=x86_64", "seed=range(0,40)", "sweep.batch_size=2"]


def test_driver_killed_with_sigkill_then_relaunched(tmp_path):
    out = tmp_path / "r"
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(_sweep_cmd(out), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # event: 6 result files exist (no deadline; the driver exiting first is a failure)
        while len(list(out.rglob("part-*.parquet"))) < 6:
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"the sweep exited ({proc.returncode}) before writing 6 result files")
        os.killpg(proc.pid, signal.SIGSTOP)          # freeze the driver and its local Ray
        written = len(list(out.rglob("part-*.parquet")))
        mid_sweep = proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)          # the driver and its local Ray
        proc.wait()
    grid = load_grid(ROOT / "conf/demo.yaml", _sweep_cmd(out)[9:])
    assert mid_sweep and written < len(grid.cells), "killed mid-sweep"
    res = subprocess.run(_sweep_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, start_new_session=True)
    assert res.returncode == 0, res.stderr[-2000:]
    table = ds.dataset(str(out), format="parquet", partitioning="hive").to_table()
    ids = table["cell_id"].to_pylist()
    assert sorted(ids) == sorted(c["id"] for c in grid.cells), "exactly one row per cell"
    assert set(table["status"].to_pylist()) == {"ok"}


HANG_GUARD_S = 3600    # only ends a run that hangs (the job takes ~30 s, minutes when busy)


def test_multinode_cluster_survives_losing_a_node(tmp_path):
    events = tmp_path / "events.log"             # the runner's log lines (job's stderr)
    with open(events, "w") as err:
        proc = subprocess.Popen([sys.executable, "tests/cluster_job.py", str(tmp_path / "r")],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "RAY_ADDRESS": ""}, start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"hung: no end after {HANG_GUARD_S} s; its events:\n"
                        f"{events.read_text()[-3000:]}")
    assert proc.returncode == 0, events.read_text()[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["nodes"] == 3 and summary["removed"]
    assert summary["done"] == summary["cells"] == 40 and summary["failed"] == 0, \
        (summary, events.read_text()[-3000:])
    table = ds.dataset(str(tmp_path / "r"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 40 and len(set(table["cell_id"].to_pylist())) == 40

"""Cell identity and grid size: stale rows after a code change, input files by content,
an all-cached relaunch without Ray, --max-cells, streamed expansion, SIGINT."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from sweep.config import SweepConfigError, load_grid
from sweep.fingerprint import code_digest, fingerprint
from sweep.runner import launch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
GRID = ["arch=x86_64", "seed=0,1", "workload.n_ops=20"]          # 2 policies x 2 seeds
NO_RAY = ("import ray\n"
          "def _no_ray(*a, **k):\n"
          "    raise SystemExit('ray.init was called')\n"
          "ray.init = _no_ray\n")
LIMITED = ("import resource\n"                 # a regression fails instead of eating the VM
           "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n")
REPORT_RSS = ("import atexit, resource, sys\n"
              "atexit.register(lambda: print('maxrss_kb', resource.getrusage("
              "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n")


def checkout(tmp_path: Path) -> Path:
    """A private copy of the code and configs, to edit."""
    repo = tmp_path / "repo"
    for part in ("simcore", "sweep", "conf"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def sweep_cli(args: list[str], repo: Path = ROOT, prelude: str = "",
              **kw) -> subprocess.CompletedProcess:
    """`sweep ...` in a fresh interpreter that imports the code under `repo`."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(repo)
    code = prelude + "from sweep.cli import app\napp()\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(f"{out}/**/*.parquet", hive_partitioning=False)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


# ---- the fingerprint ------------------------------------------------------------------
def test_fingerprint_ignores_comments_and_docstrings_not_code(tmp_path):
    repo = checkout(tmp_path)
    lazy = repo / "simcore" / "policy" / "lazy.py"

    def digest() -> str:
        return code_digest(repo / "simcore", repo / "sweep")

    same = digest()
    assert same == code_digest()                                  # content, not location
    append(lazy, "\n# a comment\n")
    lazy.write_text(lazy.read_text().replace('"""', '"""Edited docstring. ', 1))
    assert digest() == same
    append(lazy, "_PROBE = 1\n")                                  # a harmless statement
    assert digest() != same
    append(repo / "sweep" / "runner.py", "_PROBE = 1\n")          # metric code is covered too
    edited = digest()
    (repo / "sweep" / "runner.py").write_text((ROOT / "sweep" / "runner.py").read_text())
    assert digest() != edited
    assert fingerprint({"sample_every": 10}) != fingerprint({"sample_every": 20})


# ---- stale rows after a code change ------------------------------------------------------
def test_a_code_edit_recomputes_the_stale_cells_once(ray_local, tmp_path):
    out = tmp_path / "out"
    first = launch(load_grid(CONF / "demo.yaml", GRID), str(out))
    assert first.done == 4
    old_fp = set(rows(out)["code_fingerprint"])
    assert len(old_fp) == 1 and "" not in old_fp

    repo = checkout(tmp_path)
    args = ["launch", "conf/demo.yaml", *GRID, "--out", str(out)]
    res = sweep_cli(args, repo, NO_RAY)                            # same code: all cached
    assert res.returncode == 0, res.stderr
    assert "4 cells: 0 computed, 4 cached" in res.stdout and "stale" not in res.stdout

    append(repo / "simcore" / "policy" / "lazy.py", "_PROBE = 1\n")
    res = sweep_cli([*args, "--num-cpus", "1"], repo)
    assert res.returncode == 0, res.stderr
    assert "4 stale cells (code or metric set changed) recomputed" in res.stdout
    assert "4 cells: 4 computed, 0 cached" in res.stdout
    df = rows(out)
    assert df.height == 4 and df["cell_id"].n_unique() == 4        # old rows superseded
    new_fp = set(df["code_fingerprint"])
    assert len(new_fp) == 1 and new_fp != old_fp

    res = sweep_cli(args, repo, NO_RAY)                            # touch nothing: computes 0
    assert res.returncode == 0, res.stderr
    assert "4 cells: 0 computed, 4 cached" in res.stdout and "stale" not in res.stdout

    append(repo / "simcore" / "policy" / "lazy.py", "_PROBE = 2\n")
    res = sweep_cli([*args, "--keep-stale"], repo, NO_RAY)         # kept on purpose, no Ray
    assert res.returncode == 0, res.stderr
    assert "4 stale cells (code or metric set changed) kept (--keep-stale)" in res.stdout
    assert "0 computed, 4 cached" in res.stdout
    assert set(rows(out)["code_fingerprint"]) == new_fp

    res = sweep_cli(["status", str(out)], repo)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if next(iter(new_fp)) in ln)
    assert "4 rows" in line and "stale" in line


def test_status_marks_the_current_fingerprint(ray_local, tmp_path):
    out = tmp_path / "out"
    launch(load_grid(CONF / "demo.yaml", ["arch=x86_64", "seed=0", "workload.n_ops=20",
                                          "policy=eager"]), str(out))
    res = sweep_cli(["status", str(out)])
    fp = rows(out)["code_fingerprint"][0]
    assert res.returncode == 0, res.stderr
    assert any(fp in ln and "1 rows" in ln and "current" in ln for ln in res.stdout.splitlines())


# ---- grid size -----------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [["seed=range(0,100000000)"],
                                       ["seed=range(0,1000)", "workload.n_ops=range(1,1000)"]],
                         ids=["1e8 seeds", "1000 seeds x 999 n_ops"])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "launch"])
def test_a_huge_grid_is_refused_before_it_is_expanded(tmp_path, overrides, dry):
    args = ["launch", "conf/demo.yaml", *overrides, "--out", str(tmp_path / "out")]
    res = sweep_cli(args + ["--dry-run"] * dry, prelude=LIMITED + NO_RAY)
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and res.stderr.count("\n") == 1
    assert "more than --max-cells 1,000,000" in res.stderr
    assert not (tmp_path / "out").exists()


def test_max_cells_counts_zips_once_and_subtracts_exclusions(tmp_path):
    shutil.copytree(CONF, tmp_path / "conf")
    demo = tmp_path / "conf" / "demo.yaml"
    demo.write_text(demo.read_text().replace("zip: []", "zip: [[seed, workload.n_ops]]")
                    .replace("seed: [0, 1, 2]", "seed: [0, 1]")
                    .replace("exclude: []", "exclude: [{policy: lazy, arch: arm64}, "
                                            "{policy: lazy}, {seed: 1, arch: arm64}]"))
    g = load_grid(demo)                       # 2 policies x 2 archs x 2 (seed, n_ops) pairs
    assert len(g.cells) == len(list(g.cells)) == 8 - 4 - 1
    with pytest.raises(SweepConfigError, match="the grid has 3 cells, more than --max-cells 2"):
        load_grid(demo, max_cells=2)
    big = load_grid(demo, ["seed=range(0,2000000)", "workload.n_ops=range(1,2000001)"],
                    max_cells=10**7)          # zipped ranges: counted, not enumerated
    assert len(big.cells) == 8 * 10**6 - 4 * 10**6 - 1       # lazy: 4e6; seed 1 on arm64: 1 more
    assert big.axes["seed"] == range(0, 2000000)


def test_a_streamed_dry_run_does_not_grow_with_the_grid():
    def dry(n: int) -> tuple[int, int]:
        res = sweep_cli(["launch", "conf/demo.yaml", "workload=noop", "~workload.n_ops",
                         "policy=eager", "arch=x86_64", f"seed=range(0,{n})", "--dry-run"],
                        prelude=LIMITED + REPORT_RSS)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[-1] == f"{n} cells" and len(lines) == n + 1
        assert len({ln.split()[0] for ln in lines[:-1]}) == n
        return int(res.stderr.split("maxrss_kb")[1]), len(lines)

    small, _ = dry(2_000)
    large, _ = dry(200_000)
    assert large - small < 20_000, f"peak RSS grew by {large - small} KB for 198,000 more cells"


def test_sigint_stops_expansion_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "sweep.cli", "launch", "conf/demo.yaml",
                             "seed=range(0,100000000)", "--max-cells", str(10**9), "--dry-run"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline()                  # expansion is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130
    assert err == "interrupted\n"


def test_a_plan_against_a_store_streams_the_grid(tmp_path):
    """30,000 cells (100,000 with ANONSIM_LONG=1), 1,000 of them in the store: planning
    (the store's index, then the grid looked up in chunks) and streaming the cells to
    compute hold no list of cells (one would take ~20 MiB at 30,000 cells)."""
    import itertools
    import tracemalloc

    import pyarrow as pa

    from conftest import size
    from sweep.runner import plan
    from sweep.store import Store
    n = size(30_000, 100_000)
    grid = load_grid(CONF / "demo.yaml", ["workload=noop", "~workload.n_ops", "policy=eager",
                                          "arch=x86_64", f"seed=range(0,{n})"])
    done = [c["id"] for c in itertools.islice(grid.cells, 1000)]
    Store(str(tmp_path / "r")).write(pa.table({
        "cell_id": done, "code_fingerprint": [fingerprint(grid.base["sweep"])] * len(done),
        "workload": ["noop"] * len(done), "policy": ["eager"] * len(done),
        "status": ["ok"] * len(done)}), "b0", {})
    tracemalloc.start()
    try:
        todo = plan(grid, str(tmp_path / "r"))
        streamed = sum(1 for _ in todo.cells())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (todo.todo, streamed, todo.stale, todo.rerun) == (n - 1000, n - 1000, 0, 0)
    assert peak < 4 * 2**20, f"planning {n:,} cells peaked at {peak / 2**20:.1f} MiB"

"""Benchmark: the sweep framework's own cost per cell, beside Hydra's joblib launcher and
Ray Tune (when the optional `bench` extra is installed), all in one run.

    python benchmarks/overhead.py [--cells 2000] [--big 100000]

Prints: per-cell framework overhead for `noop` cells; parallel efficiency on 2 CPUs for
100 ms cells; for a 100,000-cell grid the driver's peak memory and the Parquet files written.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ours(cells: int, sleep_ms: float, out: Path) -> tuple[float, int]:
    from sweep.config import load_grid
    from sweep.runner import launch
    from sweep.store import Store
    grid = load_grid(ROOT / "conf/demo.yaml", ["workload=noop", f"workload.sleep_ms={sleep_ms}",
                                               "~workload.n_ops", "policy=eager", "arch=x86_64",
                                               f"seed=range(0,{cells})"])
    t0 = time.perf_counter()
    prog = launch(grid, str(out))
    wall = time.perf_counter() - t0
    assert prog.done == cells, prog
    return wall, len(Store(str(out)).parquet_files())


def hydra_joblib(jobs: int, tmp: Path) -> float | None:
    try:
        import hydra_plugins.hydra_joblib_launcher  # noqa: F401
    except ImportError:
        return None
    app = tmp / "app.py"
    app.write_text(textwrap.dedent("""
        import hydra
        @hydra.main(version_base=None, config_path=None)
        def main(cfg):
            return 0
        main()
    """))
    cmd = [sys.executable, str(app), "--multirun", "hydra/launcher=joblib",
           f"+seed=range(0,{jobs})", f"hydra.sweep.dir={tmp / 'multirun'}",
           "hydra.launcher.n_jobs=2"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
    return (time.perf_counter() - t0) / jobs


def ray_tune(trials: int) -> float | None:
    try:
        from ray import tune
    except ImportError:
        return None

    def trainable(config):
        return {"x": config["seed"]}

    t0 = time.perf_counter()
    tuner = tune.Tuner(trainable, param_space={"seed": tune.grid_search(list(range(trials)))},
                       tune_config=tune.TuneConfig(max_concurrent_trials=2),
                       run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), verbose=0))
    tuner.fit()
    return (time.perf_counter() - t0) / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--slow", type=int, default=200, help="100 ms cells for the efficiency run")
    ap.add_argument("--others", type=int, default=50, help="jobs/trials for Hydra and Tune")
    args = ap.parse_args()
    import ray
    from sweep.runner import init_local_ray
    init_local_ray(2)
    tmp = Path(tempfile.mkdtemp())
    try:
        ours(50, 0, tmp / "warm")                               # actors and imports warm
        wall, files = ours(args.cells, 0, tmp / "noop")
        print(f"anonsim sweep, {args.cells} noop cells on 2 CPUs: {wall:.2f} s "
              f"= {1000 * wall / args.cells:.2f} ms per cell (target <= 2 ms), {files} files")
        wall, _ = ours(args.slow, 100, tmp / "slow")
        ideal = args.slow * 0.1 / 2
        print(f"anonsim sweep, {args.slow} cells x 100 ms on 2 CPUs: {wall:.2f} s, "
              f"parallel efficiency {100 * ideal / wall:.0f} % (target >= 90 %)")
        per = ray_tune(args.others)
        print(f"Ray Tune, {args.others} trivial trials: " +
              (f"{1000 * per:.0f} ms per trial" if per else "not installed (pip install -e '.[bench]')"))
        ray.shutdown()
        per = hydra_joblib(args.others, tmp)
        print(f"Hydra joblib launcher, {args.others} trivial jobs: " +
              (f"{1000 * per:.0f} ms per job" if per else "not installed (pip install -e '.[bench]')"))
        init_local_ray(2)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wall, files = ours(args.big, 0, tmp / "big")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"anonsim sweep, {args.big} noop cells: {wall:.1f} s, driver peak RSS "
              f"{peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f} MiB during the run), "
              f"{files} Parquet files")
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: the sweep engine at scale.  A grid of `--cells` noop cells (default one
million) is launched by the `sweep` CLI in a fresh process (expansion, validation, the
store scan, Ray submission, result collection, Parquet writes, the run record), then
launched again (every cell cached: the scan of a full store), then `sweep status` reads it.

    python benchmarks/engine_scale.py [--cells 1000000] [--batch-size 0] [--num-cpus 2]

Prints the driver's peak RSS and the wall time of each launch, the Parquet files written,
and the wall time of `sweep status` (a fresh interpreter, as a user runs it).
Targets: driver peak RSS < 1 GB, status < 5 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The CLI in this process's child, reporting its own peak RSS (ru_maxrss, KB) at exit.
DRIVER = """
import resource, sys
from sweep.cli import app
try:
    app(sys.argv[1:], prog_name="sweep")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(f"DRIVER_PEAK_KB {ru.ru_maxrss} CPU_S {ru.ru_utime + ru.ru_stime}", file=sys.stderr)
sys.exit(code)
"""


def run(args: list[str], env: dict) -> tuple[float, int, float, str]:
    """-> (wall s, driver peak RSS KB, driver CPU s, stdout) of one CLI command in a
    fresh process."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"sweep {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    peak, _, cpu = res.stderr.rsplit("DRIVER_PEAK_KB ", 1)[1].split()[:3]
    return wall, int(peak), float(cpu), res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=0, help="sweep.batch_size (0: automatic)")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--keep", help="write the results here and keep them")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "COLUMNS": "120"}
    tmp = Path(tempfile.mkdtemp(prefix="engine_scale-"))
    out = Path(args.keep) if args.keep else tmp / "out"
    launch = ["launch", "conf/demo.yaml", "--out", str(out), "--num-cpus", str(args.num_cpus),
              "--max-cells", str(max(args.cells, 1)), "workload=noop", "~workload.n_ops",
              "policy=eager", "arch=x86_64", f"seed=range(0,{args.cells})",
              f"sweep.batch_size={args.batch_size}", "sweep.sample_every=0"]
    try:
        wall, peak, cpu, stdout = run(launch, env)
        files = sum(1 for _ in out.rglob("part-*.parquet"))
        print(f"launch of {args.cells:,} noop cells on {args.num_cpus} CPUs "
              f"(batch_size {args.batch_size or 'auto'}): {wall:.1f} s "
              f"({1e6 * wall / max(args.cells, 1):.0f} us per cell), driver peak RSS "
              f"{peak / 1024:.0f} MiB (target < 1024), driver CPU {cpu:.1f} s, "
              f"{files} Parquet files; load average now {os.getloadavg()[0]:.1f}")
        print("  " + stdout.strip().splitlines()[-1])
        wall, peak, cpu, stdout = run(launch, env)
        print(f"relaunch (every cell cached, the store scanned): {wall:.1f} s, driver peak RSS "
              f"{peak / 1024:.0f} MiB, driver CPU {cpu:.1f} s")
        print("  " + stdout.strip().splitlines()[-1])
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "sweep.cli", "status", str(out)],
                             capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(f"sweep status failed:\n{res.stderr}")
        print(f"sweep status: {wall:.2f} s (target < 5 s, a fresh interpreter)")
        print("\n".join("  " + ln for ln in res.stdout.strip().splitlines()[:3]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Every performance figure of the README's performance table in one run (issue 16, item 5):
the android_apps cell against commit 15b86df side by side, a worker's RSS over cells of
every policy, the fork+COW microbenchmark against the kernel timed alike, and the engine's
scale benchmark if this tree has one (benchmarks/*scale*.py).

    python benchmarks/perf.py [--runs 1] [--fork-runs 3] [--policies eager,lazy] [--no-scale]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import android_cell  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="android cell: best of N per side")
    ap.add_argument("--fork-runs", type=int, default=3, help="fork+COW: best of N per side")
    ap.add_argument("--policies", default="eager,lazy", help="android speed: policies")
    ap.add_argument("--no-scale", action="store_true",
                    help="leave out the engine's scale benchmark (a 1,000,000-cell grid: ~10 min)")
    args = ap.parse_args()
    print(f"== android_apps (24) cell: this tree vs {android_cell.BASE} (best of {args.runs})",
          flush=True)
    print("\n".join(android_cell.speed(args.runs, args.policies.split(","))), flush=True)
    print("== worker memory: android_apps cells of every policy, one after another", flush=True)
    print("\n".join(android_cell.memory(["eager", "lazy", "cow_context", "eager"])), flush=True)
    print("== fork+COW against the kernel", flush=True)
    subprocess.run([sys.executable, str(HERE / "fork_cow.py"), "--runs", str(args.fork_runs)],
                   check=True)
    for bench in [] if args.no_scale else sorted(HERE.glob("*scale*.py")):
        print(f"== {bench.name}", flush=True)
        subprocess.run([sys.executable, str(bench)], check=True)


if __name__ == "__main__":
    main()

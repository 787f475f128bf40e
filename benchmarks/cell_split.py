"""Where an android_apps (24) cell's time goes: the CPU time of each kind of trace operation
(the machine's handlers, wrapped), the touches the COW batch refused, Machine.release(),
and the rest (workload generator, op tally, the run loop, sampling, metrics).  The same
cell as benchmarks/android_cell.py (arm64_android, seed 0, the knobs 15b86df lacks at 0
unless --full, found as android_cell.py finds them).  The wrappers add a little to every
line; the shares are what to read.

    python benchmarks/cell_split.py [--policy eager] [--full]
"""
from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="eager")
    ap.add_argument("--full", action="store_true", help="every workload knob at its default")
    args = ap.parse_args()
    import simcore.machine as M
    import android_cell                # benchmarks/ is on sys.path when this script runs
    from sweep.config import load_grid
    from sweep.runner import simulate_cell
    cpu: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    clock = time.process_time

    def timed(name, fn):
        def call(*a):
            t = clock()
            try:
                return fn(*a)
            finally:
                cpu[name] += clock() - t
                calls[name] += 1
        return call

    for op_type, fn in list(M.DISPATCH.items()):
        M.DISPATCH[op_type] = timed(op_type.__name__, fn)
    M.do_user_addr_fault = timed("Touch (refused by the COW batch)", M.do_user_addr_fault)
    M.CowBatch.add = timed("CowBatch.add", M.CowBatch.add)
    M.CowBatch.flush = timed("CowBatch.flush", M.CowBatch.flush)
    M.Machine.release = timed("Machine.release", M.Machine.release)
    grid = load_grid(ROOT / "conf/grid.yaml", ["arch=arm64_android", "seed=0",
                                               "workload=android_apps", "policy=" + args.policy])
    cfg = grid.resolve(next(iter(grid.cells))["point"])
    if not args.full:                 # the knobs 15b86df lacks at 0, as android_cell.py does
        with android_cell.base_tree() as base:
            cfg["workload"].update(android_cell.zero_knobs(base, ROOT, "android_apps"))
    t0 = clock()
    row = simulate_cell(cfg, int(cfg["sweep"]["sample_every"]))
    total = clock() - t0
    print(f"android_apps {args.policy}: {total:.2f} s CPU, {row['fork_vmas']:,} VMAs copied "
          f"by {row['forks']} forks, {row['ops_mmap']:,} mmaps")
    for name, t in cpu.most_common():
        print(f"  {name:40} {t:6.2f} s {100 * t / total:5.1f} %  {calls[name]:8,} calls "
              f"{t / calls[name] * 1e6:9.1f} us each")
    rest = total - sum(cpu.values())
    label = "rest (generator, tally, loop, metrics)"
    print(f"  {label:40} {rest:6.2f} s {100 * rest / total:5.1f} %")


if __name__ == "__main__":
    main()

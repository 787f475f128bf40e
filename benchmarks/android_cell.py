"""Benchmark: android_apps (24 apps) cells, speed against commit 15b86df side by side, and the
memory of a worker that runs cells of every policy one after another.

Speed: the same cell (arm64_android, seed 0, sample_every of conf/grid.yaml) is simulated
by this tree and by commit 15b86df, checked out into a temporary git worktree (removed at
the end), alternately, each in a fresh interpreter; the CPU time of the cell (process time,
which a loaded machine disturbs less than wall time) and its wall time are printed with
the ratios, and the two rows are compared (they must be identical).  Workload knobs that
15b86df does not know are set to 0 here, so both sides generate the same operations.

Memory: one worker process runs android_apps cells of each policy one after another, as a
sweep worker does (sweep.runner.simulate_cell); before each cell the peak RSS is reset
(/proc/self/clear_refs 5), so each cell's own peak is printed, then the RSS left after it.

    python benchmarks/android_cell.py [--runs 1] [--policies eager,lazy] [--no-speed] [--no-memory]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
BASE = "15b86df"

# one cell in a fresh interpreter, in whichever tree is on PYTHONPATH; prints one JSON line
CELL = r"""
import contextlib, dataclasses, gc, json, sys, time
from pathlib import Path
from sweep.config import load_grid
from sweep.runner import simulate_cell
try:                                  # what a sweep worker does around a cell (run_cell)
    from sweep.workermem import CellMemory
except ImportError:                   # 15b86df: nothing around the cell
    CellMemory = contextlib.nullcontext
a = json.loads(sys.argv[1])

def hwm_rss():
    kb = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            kb[key] = int(rest.split()[0]) / 1024
    return kb["VmHWM"], kb["VmRSS"]

if a["cmd"] == "fields":
    from simcore.workloads import android        # 15b86df has no registry: its classes
    schema = {"android_apps": android.AndroidApps, "android_boot": android.AndroidBoot}[a["workload"]]
    print(json.dumps({f.name: repr(f.type) for f in dataclasses.fields(schema)}))
    sys.exit(0)
out = []
_, rss0 = hwm_rss()
for policy in a["policies"]:
    grid = load_grid(Path("conf/grid.yaml"), ["arch=arm64_android", "seed=0",
                                              "workload=" + a["workload"], "policy=" + policy])
    cfg = grid.resolve(next(iter(grid.cells))["point"])
    cfg["workload"].update(a["zero"])
    with open("/proc/self/clear_refs", "w") as fh:   # reset VmHWM: this cell's own peak
        fh.write("5")
    t0, c0 = time.perf_counter(), time.process_time()
    with CellMemory():
        row = simulate_cell(cfg, int(cfg["sweep"]["sample_every"]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    hwm, rss = hwm_rss()
    ints = {k: v for k, v in sorted(row.items()) if isinstance(v, int)}
    out.append({"policy": policy, "wall": wall, "cpu": cpu, "hwm": hwm, "rss": rss, "ints": ints})
print(json.dumps({"rss0": rss0, "cells": out}))
"""


def run_cell(tree: Path, args: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", CELL, json.dumps(args)], cwd=tree, env=env,
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Row columns whose definition changed after 15b86df on purpose (not a change of behaviour):
# compared apart, and named in the output with the reason.
REDEFINED = {
    "anon_vma_root_lock_write": "8316558 also counts vma_prepare()'s anon_vma_lock_write() "
                                "on splits, merges and expansions",
}


def rows_compared(base: dict, now: dict) -> str:
    """'identical' if every integer column of the base row has the same value now, apart from
    the REDEFINED columns (said with their values), else 'DIFFERENT' and the columns."""
    differ = sorted(k for k in base if k not in REDEFINED and now.get(k) != base[k])
    if differ:
        return "DIFFERENT: " + ", ".join(f"{k} {base[k]} -> {now.get(k)}" for k in differ)
    redefined = [f"{k} {base[k]} -> {now[k]} ({REDEFINED[k]})" for k in sorted(REDEFINED)
                 if k in base and k in now and base[k] != now[k]]
    return "identical" + (" apart from the redefined " + "; ".join(redefined) if redefined else "")


def zero_knobs(base: Path, here: Path, workload: str) -> dict:
    """Workload fields this tree has and 15b86df has not -> 0 (their behaviour off)."""
    old = run_cell(base, {"cmd": "fields", "workload": workload})
    new = run_cell(here, {"cmd": "fields", "workload": workload})
    return {name: (False if "bool" in typ else 0) for name, typ in new.items() if name not in old}


@contextlib.contextmanager
def base_tree() -> Iterator[Path]:
    """Commit BASE checked out into a temporary git worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="anonsim-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), BASE],
                       check=True, capture_output=True)
        try:
            yield base
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)


def speed(runs: int, policies: list[str]) -> list[str]:
    lines = []
    with base_tree() as base:
        zero = zero_knobs(base, ROOT, "android_apps")
        if zero:
            lines.append(f"  knobs 15b86df does not know, set to 0 here: {zero}")
        for policy in policies:
            best = {}
            for _ in range(runs):
                for side, tree in (("base", base), ("now", ROOT)):
                    cell = run_cell(tree, {"cmd": "run", "workload": "android_apps",
                                           "policies": [policy],
                                           "zero": zero if side == "now" else {}})["cells"][0]
                    if side not in best or cell["cpu"] < best[side]["cpu"]:
                        best[side] = cell
            b, n = best["base"], best["now"]
            same = rows_compared(b["ints"], n["ints"])
            lines.append(
                f"  android_apps {policy:11} cpu {b['cpu']:7.2f} s at {BASE} vs {n['cpu']:6.2f} s "
                f"now: {b['cpu'] / n['cpu']:5.2f}x faster (wall {b['wall']:6.2f} vs "
                f"{n['wall']:6.2f} s: {b['wall'] / n['wall']:5.2f}x)  rows {same}")
    return lines


def memory(policies: list[str]) -> list[str]:
    res = run_cell(ROOT, {"cmd": "run", "workload": "android_apps", "policies": policies,
                          "zero": {}})
    lines = [f"  worker RSS before the first cell          {res['rss0']:7.0f} MB"]
    for i, cell in enumerate(res["cells"], 1):
        lines.append(f"  cell {i}: android_apps {cell['policy']:11} peak RSS {cell['hwm']:5.0f} MB, "
                     f"RSS after it {cell['rss']:5.0f} MB  (cpu {cell['cpu']:.1f} s)")
    peak = max(c["hwm"] for c in res["cells"])
    lines.append(f"  worker peak over {len(res['cells'])} cells {peak:.0f} MB (target <= 600 MB); "
                 f"RSS after the last {res['cells'][-1]['rss']:.0f} MB vs after the first "
                 f"{res['cells'][0]['rss']:.0f} MB")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="best of N per side (CPU time)")
    ap.add_argument("--policies", default="eager,lazy",
                    help="policies for the speed comparison (15b86df has no cow_context)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    if not args.no_speed:
        print(f"android_apps (24) cell: this tree vs {BASE}, side by side (best of {args.runs})")
        print("\n".join(speed(args.runs, args.policies.split(","))))
    if not args.no_memory:
        print("worker memory: android_apps cells of every policy, one after another")
        print("\n".join(memory(["eager", "lazy", "cow_context", "eager"])))


if __name__ == "__main__":
    main()

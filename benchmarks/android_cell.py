"""Benchmark: one android_apps (24 apps, on top of the boot) cell and one android_boot cell,
under each policy, as a sweep worker runs them.  Target: android_apps <= 10 s.

    python benchmarks/android_cell.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.config import load_grid  # noqa: E402
from sweep.runner import simulate_cell  # noqa: E402


def main() -> None:
    grid = load_grid(Path(__file__).resolve().parent.parent / "conf/grid.yaml",
                     ["arch=arm64_android", "seed=0"])
    for cell in grid.cells:
        cfg = grid.resolve(cell["point"])
        t0 = time.perf_counter()
        out = simulate_cell(cfg, int(cfg["sweep"]["sample_every"]))
        wall = time.perf_counter() - t0
        print(f"{cfg['workload']['name']:13} {cfg['policy']['name']:6} {wall:6.2f} s   "
              f"VMAs {out['vm_area_struct']:7d}  anon_vmas {out['anon_vma']:7d}  "
              f"AVCs {out['anon_vma_chain']:7d}  forks {out['forks']}")


if __name__ == "__main__":
    main()

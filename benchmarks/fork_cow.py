"""Benchmark: simulator vs the host kernel on the same fork + COW workload.

4,000 private anonymous regions x 16 pages are written by a parent, then 8 children
are forked one after another and each writes every page (copy-on-write).  The same
run times a native C program doing exactly this on this kernel and the whole
`sweep trace simulate` command on the equivalent trace, and prints both times, their
ratio, and the simulator's peak memory per resident simulated page.

    python benchmarks/fork_cow.py [--regions 4000] [--pages 16] [--children 8] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

C_SOURCE = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long regions = atol(argv[1]), pages = atol(argv[2]), children = atol(argv[3]);
    long psz = sysconf(_SC_PAGESIZE);
    char **base = calloc(regions, sizeof(char *));
    for (long r = 0; r < regions; r++) {           /* a guard page between regions */
        base[r] = mmap(NULL, (pages + 1) * psz, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base[r] == MAP_FAILED) { perror("mmap"); return 1; }
        munmap(base[r] + pages * psz, psz);
        for (long p = 0; p < pages; p++) base[r][p * psz] = 1;
    }
    int go[2], done[2];
    if (pipe(go) || pipe(done)) return 1;
    for (long c = 0; c < children; c++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (long r = 0; r < regions; r++)
                for (long p = 0; p < pages; p++) base[r][p * psz] = 2;
            char b = 1;
            if (write(done[1], &b, 1) != 1) _exit(1);
            close(go[1]);
            if (read(go[0], &b, 1) < 0) _exit(1);     /* stay alive until released */
            _exit(0);
        }
        char b;
        if (read(done[0], &b, 1) != 1) return 1;      /* children run one after another */
    }
    close(go[1]);
    while (wait(NULL) > 0) ;
    return 0;
}
"""


def write_trace(path: Path, regions: int, pages: int, children: int) -> None:
    with path.open("w") as fh:
        for r in range(regions):
            fh.write(json.dumps({"op": "mmap", "pid": 0, "region": f"r{r}", "pages": pages}) + "\n")
            fh.write(json.dumps({"op": "touch", "pid": 0, "region": f"r{r}"}) + "\n")
        for c in range(1, children + 1):
            fh.write(json.dumps({"op": "fork", "pid": 0, "child": c}) + "\n")
            for r in range(regions):
                fh.write(json.dumps({"op": "touch", "pid": c, "region": f"r{r}"}) + "\n")


def best_of(runs: int, cmd: list[str]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_memory(trace: Path) -> tuple[int, int]:
    """(peak bytes traced while simulating, resident simulated pages at the end)."""
    from simcore import trace as T
    from simcore.machine import Machine

    tracemalloc.start()
    m = Machine("eager").run(T.parse_lines(trace.open()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    resident = sum(int((v.pte >= 0).sum()) for mm in m.procs.values() for v in mm.vmas
                   if v.pte is not None)
    return peak, resident


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=4000)
    ap.add_argument("--pages", type=int, default=16)
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3, help="best of N for each side")
    args = ap.parse_args()
    cc = shutil.which("cc") or shutil.which("gcc")
    sweep = shutil.which("sweep")
    if cc is None or sweep is None:
        sys.exit("needs a C compiler and the installed `sweep` command (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "fork_cow.c").write_text(C_SOURCE)
        subprocess.run([cc, "-O2", "-o", str(tmp / "fork_cow"), str(tmp / "fork_cow.c")], check=True)
        trace = tmp / "fork_cow.jsonl"
        write_trace(trace, args.regions, args.pages, args.children)
        shape = [str(args.regions), str(args.pages), str(args.children)]
        kernel = best_of(args.runs, [str(tmp / "fork_cow"), *shape])
        sim = best_of(args.runs, [sweep, "trace", "simulate", str(trace), "--json"])
        peak, resident = peak_memory(trace)
    print(f"workload: {args.regions} regions x {args.pages} pages, {args.children} children "
          f"writing every page (best of {args.runs})")
    print(f"kernel (native C program)        {kernel:8.3f} s")
    print(f"simulator (sweep trace simulate) {sim:8.3f} s")
    print(f"ratio simulator / kernel         {sim / kernel:8.2f}x   (target <= 1.0x)")
    print(f"simulator peak traced memory     {peak / 2**20:8.1f} MiB for {resident} resident "
          f"simulated pages = {peak / max(resident, 1):.1f} bytes/page")


if __name__ == "__main__":
    main()

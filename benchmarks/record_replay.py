"""Benchmark: the cost of `sweep record` and the speed of its replay.

Two figures, each over --runs runs, printed side by side:

* recording slowdown: COMMAND's wall time alone vs under ``sweep record`` (tracefs
  instance, ptrace exec/exit stops, writing the gzip recording; root needed);
* replay speed: the eager replay (``simcore.replay.replay``) of the largest recording of
  the test set (tests/recordings/, by operations) vs how long the program itself ran
  (the recording's own timestamps: first to last event).  The issue asks for a replay
  at least as fast as the program ran (ratio >= 1).

    python benchmarks/record_replay.py [--runs 3] [--recording REC] [-- COMMAND ...]

Default COMMAND: python3 with a fork-based multiprocessing Pool(2).  Without root the
recording half is reported as not measured and the replay half still runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simcore import trace2  # noqa: E402
from simcore.replay import replay  # noqa: E402

POOL = ("import multiprocessing as mp\nmp.set_start_method('fork')\n"
        "with mp.Pool(2) as p:\n    print(sum(p.map(abs, range(100))))\n")


def largest_recording() -> Path:
    """The test-set recording with the most operations."""
    recs = sorted((ROOT / "tests" / "recordings").glob("*.rec"))
    return max(recs, key=lambda p: len(trace2.load(p)[1]))


def program_seconds(path: Path) -> tuple[float, int]:
    """How long the recorded program ran (first to last event) and its operations."""
    _, ops, _ = trace2.load(path)
    return (ops[-1]["t"] - ops[0]["t"]) / 1e6, len(ops)


def time_alone(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def time_recorded(argv: list[str]) -> float:
    from simcore.kernel.record import record
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = record(Path(tmp) / "b.rec", argv)
        took = time.perf_counter() - t
    if res.status != 0:
        raise SystemExit(f"error: {argv[0]} exited {res.status} under sweep record")
    return took


def time_replay(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one eager replay (the CPU time is what the replay costs
    on a machine shared with other work; on an idle one the two agree)."""
    t, c = time.perf_counter(), time.process_time()
    replay(path)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recording", type=Path, default=None,
                    help="recording to replay (default: the largest of tests/recordings)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    argv = [a for a in args.command if a != "--"] or [sys.executable, "-c", POOL]
    rec = args.recording or largest_recording()
    ran_s, n_ops = program_seconds(rec)
    root = os.geteuid() == 0
    alone, recorded, replays = [], [], []
    for _ in range(args.runs):
        alone.append(time_alone(argv))
        if root:
            recorded.append(time_recorded(argv))
        replays.append(time_replay(rec))
    cmd = " ".join(argv if len(" ".join(argv)) < 60 else [argv[0], "..."])
    print(f"recording slowdown of: {cmd}")
    print(f"{'run':>4} {'alone s':>9} {'recorded s':>11} {'slowdown':>9}   "
          f"{'replay s':>9} {'(cpu s)':>8} {'program ran s':>14} {'replay speed':>13}")
    for i in range(args.runs):
        rec_s = f"{recorded[i]:11.3f}" if root else f"{'(no root)':>11}"
        slow = f"{recorded[i] / alone[i]:8.1f}x" if root else f"{'-':>9}"
        wall, cpu = replays[i]
        print(f"{i + 1:>4} {alone[i]:9.3f} {rec_s} {slow}   {wall:9.3f} {cpu:8.3f} "
              f"{ran_s:14.3f} {ran_s / wall:12.2f}x")
    med = statistics.median
    slow = f"{med(recorded) / med(alone):.1f}x" if root else "not measured (not root)"
    wall, cpu = med(w for w, _ in replays), med(c for _, c in replays)
    print(f"median: recording slowdown {slow}; replay of {rec.name} ({n_ops} operations) "
          f"{wall:.3f} s ({cpu:.3f} s CPU) vs the program's {ran_s:.3f} s: "
          f"{ran_s / wall:.2f}x real time ({ran_s / cpu:.2f}x on its CPU time)")


if __name__ == "__main__":
    main()

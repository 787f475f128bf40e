"""`sweep calibrate`: measure fork latency on this host over designed process shapes, fit the
fork cost model, report the error on shapes held out of the fit, write conf/arch/host.yaml.

Model: ns = a + b*VMAs + c*AVCs cloned + d*anon_vmas allocated + e*PTEs copied, where the
counts of each shape come from the eager simulator running the same shape as a trace.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcore import trace as T
from simcore.machine import Machine

SOURCE = Path(__file__).resolve().parent.parent / "simcore" / "kernel" / "forkbench.c"
COEFFS = ("fork_a_ns", "fork_vma_ns", "fork_avc_ns", "fork_av_ns", "fork_pte_ns")


@dataclass(frozen=True)
class Shape:
    vmas: int
    pages: int
    written: bool
    depth: int

    def label(self) -> str:
        what = f"{self.pages}p written" if self.written else "untouched"
        return f"{self.vmas:5d} VMAs x {what:12} depth {self.depth}"


TRAIN = ([Shape(n, 1, False, 0) for n in (250, 1000, 4000, 8000)]
         + [Shape(n, p, True, d) for n in (250, 1000, 4000, 8000) for p in (1, 8) for d in (0, 1, 3)])
HELD_OUT = [Shape(2000, 4, True, 2), Shape(6000, 16, True, 0), Shape(3000, 2, True, 1),
            Shape(2000, 1, False, 0), Shape(5000, 12, True, 3)]


def features(shape: Shape) -> np.ndarray:
    """[1, VMAs, AVCs cloned, anon_vmas allocated, PTEs copied] of the measured fork."""
    ops: list[T.Op] = []
    for i in range(shape.vmas):
        ops.append(T.Mmap(0, f"r{i}", shape.pages))
        if shape.written:
            ops.append(T.Touch(0, f"r{i}"))
    pid = 0
    for d in range(shape.depth):
        ops.append(T.Fork(pid, pid + 1))
        pid += 1
    ops.append(T.Fork(pid, 1000))
    m = Machine("eager").run(ops)
    f = m.forks[-1]
    return np.array([1.0, f.vmas, f.avcs, f.anon_vmas, f.ptes])


def build(tmp: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc) to build the fork benchmark")
    exe = tmp / "forkbench"
    subprocess.run([cc, "-O2", "-o", str(exe), str(SOURCE)], check=True)
    return exe


def measure(exe: Path, shape: Shape, forks: int) -> float:
    out = subprocess.run([str(exe), str(shape.vmas), str(shape.pages), str(int(shape.written)),
                          str(shape.depth), str(forks)], check=True, capture_output=True,
                         text=True, timeout=600)
    return float(out.stdout.split()[-1])


def calibrate(forks: int = 15, train: list[Shape] = TRAIN, held_out: list[Shape] = HELD_OUT,
              progress=None) -> dict:
    """-> {"coefficients": {...}, "train": [...], "held_out": [(shape, measured, predicted)]}"""
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        rows = []
        for shape in [*train, *held_out]:
            rows.append((shape, features(shape), measure(exe, shape, forks)))
            if progress:
                progress(shape)
    X = np.array([f for s, f, _ in rows if s in train])
    y = np.array([ns for s, _, ns in rows if s in train])
    coef = fit(X, y)
    result = {"coefficients": dict(zip(COEFFS, (float(c) for c in coef))), "train": [],
              "held_out": []}
    for shape, f, ns in rows:
        key = "train" if shape in train else "held_out"
        result[key].append((shape, ns, float(f @ coef)))
    return result


def fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error (each row scaled by 1/y), so that small
    and large shapes count alike."""
    w = 1.0 / y
    A, b = X * w[:, None], y * w
    active = np.ones(X.shape[1], bool)
    while True:                                    # drop coefficients that come out negative
        coef = np.zeros(X.shape[1])
        coef[active], *_ = np.linalg.lstsq(A[:, active], b, rcond=None)
        if (coef >= 0).all():
            return coef
        active &= coef > 0


def write_host_yaml(path: Path, coefficients: dict, held_out: list) -> None:
    errors = [abs(p - m) / m for _, m, p in held_out]
    lines = ["# This machine: slab sizes and geometry from /proc/slabinfo at run time (needs root);",
             "# fork cost coefficients fitted by `sweep calibrate` "
             f"(held-out error: max {100 * max(errors):.0f} %).",
             "name: host", "page_size: 4096", "pmd_pages: 512", "from_host: true"]
    lines += [f"{k}: {v:.1f}" for k, v in coefficients.items()]
    path.write_text("\n".join(lines) + "\n")

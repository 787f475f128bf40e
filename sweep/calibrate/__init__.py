"""`sweep calibrate`: time forks, anonymous faults and rmap walks on this host over designed
shapes, fit each cost model (models.py), report the error on shapes held out of the fit,
write conf/arch/host.yaml (coefficients) and conf/arch/host-calibration.json (every raw
measurement, read by notebooks/time_models.ipynb).

Against a noisy shared machine: every benchmark times CPU time of the task doing the work
(CLOCK_THREAD_CPUTIME_ID: preemption is not counted); each shape is measured in several
rounds, and each round runs every shape of the model once in a fresh random order, so that
load drifts hit all shapes alike; a shape's value is a low quantile of all its samples
(fit.robust_ns: the noise left only adds time); the fit is least squares on relative error
with a physical lower bound per coefficient (fit.py).
"""
from __future__ import annotations

import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np

from .fit import FitError, fit, rel_errors, robust_ns, spread
from .models import MODELS, FaultModel, ForkModel, WalkModel, shape_params
from .swap import SwapError, Zram, zram_swap

KERNEL = Path(__file__).resolve().parent.parent.parent / "simcore" / "kernel"
COEFFS = tuple(c for m in MODELS.values() for c in m.coeffs)
TARGET = 0.25                              # held-out error the models must meet

__all__ = ["COEFFS", "MODELS", "TARGET", "CalibrateError", "FaultModel", "ForkModel", "WalkModel", "FitError",
           "SwapError", "build", "calibrate", "fit", "fit_model", "measure_floors",
           "write_host_yaml", "write_raw"]


class CalibrateError(RuntimeError):
    """A benchmark cannot be built or run (one line)."""


def build(tmp: Path, source: str) -> Path:
    """Compile simcore/kernel/<source> into tmp; returns the executable."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise CalibrateError("no C compiler (cc/gcc) to build the benchmarks")
    exe = tmp / Path(source).stem
    res = subprocess.run([cc, "-O2", "-o", str(exe), str(KERNEL / source)],
                         capture_output=True, text=True)
    if res.returncode:
        raise CalibrateError(f"{source} does not compile: {res.stderr.strip().splitlines()[-1]}")
    return exe


def run(exe: Path, argv: list[str], timeout: float = 900) -> str:
    res = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=timeout)
    if res.returncode or not res.stdout.strip():
        err = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        raise CalibrateError(f"{exe.name} {' '.join(argv)}: {err}")
    return res.stdout


def measure_floors(tmp: Path) -> dict[str, float]:
    """The cheapest operations per unit (floorbench.c): syscall, atomic, clear, copy, line."""
    out = run(build(tmp, "floorbench.c"), ["15"])
    return {name: float(v) for name, v in (line.split() for line in out.splitlines())}


def fit_model(model, shapes: list[dict], floors: dict) -> dict:
    """Fit one model on its training shapes (each {"features", "ns", "held_out"}) with its
    floors as lower bounds and its `fixed` coefficients held there; fills in each shape's
    prediction and error; returns {"coefficients", "lower", "worst_held_out", ...}."""
    low = model.floors(floors)
    lower = np.array([low[c] for c in model.coeffs])
    free = np.array([c not in model.fixed for c in model.coeffs])
    train = [s for s in shapes if not s["held_out"]]
    coef = fit(np.array([s["features"] for s in train]), np.array([s["ns"] for s in train]),
               lower, free)
    X = np.array([s["features"] for s in shapes])
    y = np.array([s["ns"] for s in shapes])
    for s, p, e in zip(shapes, X @ coef, rel_errors(X, y, coef)):
        s["predicted"], s["error"] = float(p), float(e)
    held = [abs(s["error"]) for s in shapes if s["held_out"]]
    return {"coefficients": {c: float(v) for c, v in zip(model.coeffs, coef)},
            "lower": {c: float(v) for c, v in zip(model.coeffs, lower)},
            "fixed": list(model.fixed), "features": list(model.features_names),
            "worst_held_out": max(held), "worst_train": max(abs(s["error"]) for s in train)}


def calibrate(models: tuple = ("fork", "fault", "walk"), rounds: int = 9,
              scale: float = 1.0, progress: Callable[[str], None] | None = None,
              seed: int = 0, swap_hook: Callable[[str], None] | None = None) -> dict:
    """Measure every shape of the chosen models (names in MODELS, or model classes) in
    `rounds` interleaved rounds, fit them.  `scale` multiplies the samples per run (forks,
    repetitions).  -> the raw record (see write_raw) with each model's fit."""
    say = progress or (lambda msg: None)
    chosen = [MODELS[m] if isinstance(m, str) else m for m in models]
    t0 = time.monotonic()
    if any(getattr(m, "needs_swap", False) for m in chosen):
        why = Zram().available()                 # fail before minutes of other models
        if why:
            raise SwapError(f"{why}; `--models fork,fault` needs no swap device")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        exes = {m.name: build(tmpdir, m.source) for m in chosen}
        say("measuring floors (floorbench)")
        floors = measure_floors(tmpdir)
        say("simulating the shapes (eager) for their features")
        shapes = {m.name: [{"label": s.label(), "params": shape_params(s), "held_out": held,
                            "features": m.features(s).tolist(), "samples": [], "dropped": 0,
                            "_shape": s}
                           for held, group in ((False, m.train), (True, m.held_out))
                           for s in group] for m in chosen}
        rng = random.Random(seed)
        for m in chosen:                 # the swap device exists only while walks run
            swap = zram_swap(hook=swap_hook) if getattr(m, "needs_swap", False) else nullcontext()
            with swap:
                jobs = list(shapes[m.name])
                for r in range(rounds):
                    rng.shuffle(jobs)
                    for i, s in enumerate(jobs):
                        n = max(3, round(m.per_run * scale))
                        out = run(exes[m.name], m.argv(s["_shape"], n))
                        got = m.samples(out, s["_shape"])
                        s["samples"] += got
                        s["dropped"] += n - len(got)       # preempted forks, partial walks
                        say(f"{m.name} round {r + 1}/{rounds} [{i + 1}/{len(jobs)}] {s['label']}")
    result = {"host": {"kernel": platform.release(), "machine": platform.machine(),
                       "cpus": os.cpu_count(), "loadavg": list(os.getloadavg())},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "rounds": rounds, "scale": scale, "floors": floors, "models": {}}
    for m in chosen:
        for s in shapes[m.name]:
            del s["_shape"]
            if not s["samples"]:
                raise CalibrateError(f"{s['label']}: no valid sample (forks: every one "
                                     "preempted, as root they run as SCHED_FIFO; walks: no "
                                     "repetition reclaimed every page)")
            s["ns"], s["spread"] = robust_ns(s["samples"]), spread(s["samples"])
        result["models"][m.name] = {"shapes": shapes[m.name],
                                    **fit_model(m, shapes[m.name], floors)}
    result["seconds"] = time.monotonic() - t0
    return result


def coefficients(result: dict) -> dict[str, float]:
    return {c: v for fit_ in result["models"].values() for c, v in fit_["coefficients"].items()}


def write_raw(path: Path, result: dict) -> None:
    path.write_text(json.dumps(result, indent=1) + "\n")


def write_host_yaml(path: Path, result: dict) -> None:
    worst = ", ".join(f"{name} {100 * f['worst_held_out']:.0f} %"
                      for name, f in result["models"].items())
    lines = ["# This machine: slab sizes and geometry from /proc/slabinfo at run time (needs root);",
             "# cost coefficients fitted by `sweep calibrate` "
             f"({result['date']}, worst held-out error: {worst});",
             "# raw measurements: host-calibration.json beside this file.",
             "name: host", "from_host: true"]       # the rest: simcore.arch.ArchConf defaults
    lines += [f"{k}: {v:.1f}" for k, v in coefficients(result).items()]
    path.write_text("\n".join(lines) + "\n")

"""Robust statistics and the bounded least-squares fit shared by every cost model."""
from __future__ import annotations

from itertools import combinations

import numpy as np


class FitError(ValueError):
    """The design cannot determine the coefficients (too few shapes, or none positive)."""


QUANTILE = 10         # percent: the statistic of a shape's samples


def robust_ns(samples) -> float:
    """The lower tail of every sample of a shape (each a latency in ns), pooled over the
    rounds: their 10th percentile.  On a shared machine the noise that the CPU-time clock
    still sees only adds time (cache and TLB pollution, lock and allocator contention,
    host steal), comes in bursts, and at times hits most samples of a run: a median follows
    it once half the samples are hit, the 10th percentile only once 90 % are.  Measured on
    this machine under load averages of 30-50 (7 other sessions), fits of the median kept
    training errors of 15-55 % and held-out errors up to 36 %, fits of the 10th percentile
    13-20 % and 1-17 % on the same samples.  The models therefore predict the cost of the
    kernel's own work, not of the contention around it."""
    x = np.asarray(samples, float)
    if not len(x) or (x <= 0).any():
        raise FitError("no positive samples to summarise")
    return float(np.percentile(x, QUANTILE))


def spread(samples) -> float:
    """Relative spread of a shape's samples: interquartile range over the median."""
    x = np.asarray(samples, float)
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    return float((q3 - q1) / q2)


def fit(X: np.ndarray, y: np.ndarray, lower: np.ndarray | None = None,
        free: np.ndarray | None = None) -> np.ndarray:
    """Least squares on relative error (each row scaled by 1/y, so that small and large
    shapes count alike) subject to coef >= lower (the physical floors; 0 when not given);
    coefficients with free False are held at their `lower` value (not identifiable from the
    design: set from a measurement elsewhere).

    Exact: with c = lower + d, d >= 0 is a non-negative least-squares problem whose optimum
    has some set of d at zero and the rest the unconstrained solution on the others; with at
    most a handful of coefficients every such set is tried and the best feasible one kept."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    k = X.shape[1]
    lower = np.zeros(k) if lower is None else np.asarray(lower, float)
    idx = list(range(k)) if free is None else [i for i in range(k) if free[i]]
    if len(y) < len(idx):
        raise FitError(f"{len(y)} shapes cannot determine {len(idx)} coefficients")
    w = 1.0 / y
    A, b = X * w[:, None], (y - X @ lower) * w
    best, best_res = np.zeros(k), float(b @ b)
    for n in range(1, len(idx) + 1):
        for cols in combinations(idx, n):
            cols = list(cols)
            d_free, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
            if (d_free < 0).any():
                continue
            d = np.zeros(k)
            d[cols] = d_free
            r = b - A @ d
            res = float(r @ r)
            if res < best_res - 1e-12 * max(best_res, 1.0):
                best, best_res = d, res
    return lower + best


def rel_errors(X: np.ndarray, y: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(predicted - measured) / measured per shape."""
    return (np.asarray(X, float) @ coef - y) / y

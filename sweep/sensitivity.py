"""Sensitivity designs from the parameters' provenance (simcore.provenance): the knobs are
every numeric workload and arch field that was fitted or assumed and has a plausible range,
so a knob added later (with its metadata) joins the analysis by itself.

A grid's ``grid.sensitivity`` section becomes explicit points (``grid.points``)::

    grid:
      axes: {policy: [eager, lazy]}
      sensitivity:
        workloads: [android_boot, android_apps]
        sources: [fitted_eager, fitted_lazy, assumed]   # default: provenance.SWEPT
        skip: [pages]                                   # knobs left out (say why)
        oat_seeds: [0]          # one-at-a-time: the baseline, then each knob at low and high
        lhs: 8                  # joint Latin hypercube: samples (0: none)
        lhs_seed: 0             # the sampler's seed; sample i runs workload seed 1000 + i

Rows say which design a cell belongs to by the knob columns it sets: none (the baseline),
one (one-at-a-time) or all of its workload's (a Latin-hypercube sample).
"""
from __future__ import annotations

import random
from typing import Any

from simcore import provenance, registry

KEYS = {"workloads", "sources", "skip", "oat_seeds", "lhs", "lhs_seed"}
LHS_SEED_BASE = 1000            # workload seed of Latin-hypercube sample i: LHS_SEED_BASE + i


class DesignError(ValueError):
    """A bad grid.sensitivity section (sweep.config makes it a one-line SweepConfigError)."""


def _fail(where: str, msg: str):
    raise DesignError(f"{where}: grid.sensitivity: {msg}")


def knobs_of(spec: dict, workload: str, arch: str) -> list[tuple[str, provenance.Knob]]:
    """(config key, knob) of one workload and arch profile: in the order of the sources
    (the cells run in this order: list the classes that matter most first), then in field
    order."""
    sources, skip = list(spec.get("sources") or provenance.SWEPT), spec.get("skip") or ()
    out = [(f"workload.{k.name}", k) for k in
           provenance.knobs(registry.schema("workload", workload), workload, sources, skip)]
    out += [(f"arch.{k.name}", k) for k in
            provenance.knobs(registry.schema("arch", arch), arch, sources, skip)]
    return sorted(out, key=lambda item: sources.index(item[1].source))


def _value(knob: provenance.Knob, x: float) -> Any:
    """The knob's value at x in [0, 1] of its range (integers rounded)."""
    v = knob.low + x * (knob.high - knob.low)
    return int(round(v)) if knob.integer else round(v, 6)


def latin_hypercube(n: int, dims: int, rng: random.Random) -> list[list[float]]:
    """n points in [0, 1)^dims, one in each of the n strata of every dimension."""
    columns = []
    for _ in range(dims):
        strata = list(range(n))
        rng.shuffle(strata)
        columns.append([(s + rng.random()) / n for s in strata])
    return [[columns[d][i] for d in range(dims)] for i in range(n)]


def design_points(spec: dict, base: dict, where: str) -> list[dict]:
    """The points of a sensitivity design over the composed base config's arch profile."""
    unknown = set(spec) - KEYS
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))} (allowed: "
                     f"{', '.join(sorted(KEYS))})")
    bad = set(spec.get("sources") or ()) - set(provenance.SOURCES)
    if bad:
        _fail(where, f"sources {sorted(bad)} are not source classes ({', '.join(provenance.SOURCES)})")
    workloads = list(spec.get("workloads") or [base["workload"]["name"]])
    for w in workloads:
        try:
            registry.lookup("workload", w)
        except registry.RegistryError as exc:
            _fail(where, str(exc))
    arch = base["arch"]["name"]
    n, oat_seeds = int(spec.get("lhs") or 0), list(spec.get("oat_seeds") or [])
    if n < 0:
        _fail(where, f"lhs={n} must be 0 or more")
    points = []
    for w in workloads:
        knobs = knobs_of(spec, w, arch)
        values = _baseline(base, w, arch)
        for seed in oat_seeds:
            points.append({"workload": w, "seed": seed})
            for key, knob in knobs:
                for v in (knob.low, knob.high):
                    if v != values.get(key):                # low == the baseline: same cell
                        points.append({"workload": w, "seed": seed, key: v})
    if n:
        union = list(dict.fromkeys(key for w in workloads for key, _ in knobs_of(spec, w, arch)))
        samples = latin_hypercube(n, len(union), random.Random(int(spec.get("lhs_seed") or 0)))
        for w in workloads:
            knobs = dict(knobs_of(spec, w, arch))
            for i, xs in enumerate(samples):
                point: dict = {"workload": w, "seed": LHS_SEED_BASE + i}
                point.update({key: _value(knobs[key], x) for key, x in zip(union, xs)
                              if key in knobs})
                points.append(point)
    return points


def _baseline(base: dict, workload: str, arch: str) -> dict:
    """The composed values of every knob key (workload defaults; the base's arch node)."""
    from dataclasses import asdict
    node = base["workload"] if base["workload"].get("name") == workload else \
        asdict(registry.schema("workload", workload)())
    out = {f"workload.{k}": v for k, v in node.items()}
    out.update({f"arch.{k}": v for k, v in base["arch"].items()})
    return out

"""Grid expansion: product over axes, zipped axes, excluded combinations, cell ids."""
from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Protocol

from simcore.registry import GROUPS


class GridLike(Protocol):
    """What expansion reads of a sweep.config.Grid (which imports this module)."""
    base: dict
    options: dict
    axes: dict
    zips: list
    exclude: list

SIM_VERSION = "simcore-2"     # bump when simulator results change for the same config


def expand(grid: GridLike) -> list[dict]:
    """-> cells: {"point": {axis: value}, "id": cell_id}, in a deterministic order."""
    zipped = {k for z in grid.zips for k in z}
    factors: list[list[dict]] = []
    for z in grid.zips:
        factors.append([dict(zip(z, values)) for values in zip(*(grid.axes[k] for k in z))])
    for key, values in grid.axes.items():
        if key not in zipped:
            factors.append([{key: v} for v in values])
    cells = []
    seen = set()
    for combo in itertools.product(*factors):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        if any(all(point.get(k) == v for k, v in ex.items()) for ex in grid.exclude):
            continue
        ident = cell_id(resolve_point(grid.base, grid.options, point))
        if ident in seen:
            continue                        # two points with the same resolved config
        seen.add(ident)
        cells.append({"point": point, "id": ident})
    return cells


def resolve_point(base: dict, options: dict, point: dict) -> dict:
    """The config of one cell: the base with the point's group options and parameters.
    No deep copy: dicts are copied only along the paths a parameter changes."""
    cfg = {k: v for k, v in base.items() if k != "grid"}
    for group in GROUPS:
        if group in point:
            cfg[group] = options[group][point[group]]
    for key, value in point.items():
        if key in GROUPS:
            continue
        *path, last = key.split(".")
        node = cfg
        for part in path:
            node[part] = dict(node[part])
            node = node[part]
        node[last] = value
    return cfg


def cell_id(cfg: dict) -> str:
    """Hash of the resolved cell config (sweep bookkeeping excluded) and the simulator version."""
    body = {k: v for k, v in cfg.items() if k != "sweep"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(f"{SIM_VERSION}|{text}".encode()).hexdigest()[:16]

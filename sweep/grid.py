"""Grid expansion: cells counted before they are expanded, then streamed; cell ids.

A grid is the product of its factors: each axis, each zip (axes that advance together) and
the explicit points (``grid.points``, e.g. a sensitivity design: partial assignments of keys,
each key a point does not set keeps the composed value).

Axes stay lazy (an integer ``range()`` sweep is a Python ``range``), a grid's size is the
product of its axis lengths (zipped axes counted once) minus its exclusions, computed
without enumerating a cell, and cells are generated one at a time: driver memory does not
grow with the grid.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any, Callable, Iterator, Protocol, Sequence

from simcore.registry import GROUPS


class GridLike(Protocol):
    """What expansion reads of a sweep.config.Grid (which imports this module)."""
    base: dict
    options: dict
    axes: dict
    zips: list
    exclude: list
    points: list            # explicit points: one factor of partial assignments (may be [])


DEFAULT_MAX_CELLS = 1_000_000
# Frozen prefix of every cell id, so ids written before the code fingerprint stay valid
# (their rows are then recomputed as stale, not orphaned).  Never bump it: a change of the
# code that produces rows is detected by sweep.fingerprint, per row.
ID_NAMESPACE = "simcore-2"
INPUT_KEYS = ("workload.path",)         # config keys naming an input file (hashed by content)
LEAD = ("workload", "policy")           # outermost axes: a result partition's cells are adjacent
MAX_EXCLUDE_TERMS = 16                  # inclusion-exclusion over at most 2^16 subsets


class _Unset:
    """A key an explicit point does not set: the cell keeps the composed value."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def factors(grid: GridLike) -> list[tuple[tuple[str, ...], list[Sequence]]]:
    """The independent factors of the grid's product, outermost first: a zip is one factor
    (its axes advance together), every other axis its own; `workload` and `policy` lead."""
    zipped = {k for z in grid.zips for k in z}
    out = [(tuple(z), [grid.axes[k] for k in z]) for z in grid.zips]
    points = getattr(grid, "points", None) or []
    if points:                  # explicit points (a design): one factor, keys unset -> UNSET
        keys = tuple(dict.fromkeys(k for p in points for k in p))
        out.append((keys, [[p.get(k, UNSET) for p in points] for k in keys]))
    out += [((k,), [v]) for k, v in grid.axes.items() if k not in zipped]
    rank = {k: i for i, k in enumerate(LEAD)}
    out.sort(key=lambda f: min((rank.get(k, len(LEAD)) for k in f[0]), default=len(LEAD)))
    return out


def _excluded(point: dict, exclude: list[dict]) -> bool:
    return any(all(point.get(k) == v for k, v in ex.items()) for ex in exclude)


def points(grid: GridLike) -> Iterator[dict]:
    """Every axis point not excluded, in a deterministic order, one at a time
    (no itertools.product: it would turn every axis into a tuple first)."""
    fs = factors(grid)

    def walk(i: int, point: dict) -> Iterator[dict]:
        if i == len(fs):
            if not _excluded(point, grid.exclude):
                yield dict(point)
            return
        keys, columns = fs[i]
        for j in range(len(columns[0])):
            for key, column in zip(keys, columns):
                if column[j] is UNSET:
                    point.pop(key, None)
                else:
                    point[key] = column[j]
            yield from walk(i + 1, point)

    return walk(0, {})


def count(grid: GridLike, limit: int = DEFAULT_MAX_CELLS) -> int:
    """Cells of the grid, without expanding it: the product of the factor lengths minus the
    excluded points (inclusion-exclusion over the exclusions).  With more than
    MAX_EXCLUDE_TERMS exclusions the points are counted by streaming them, or, beyond
    `limit`, the product is returned (an upper bound, enough to refuse the grid)."""
    fs = factors(grid)
    total = math.prod(len(columns[0]) for _, columns in fs)
    if not grid.exclude:
        return total
    if len(grid.exclude) > MAX_EXCLUDE_TERMS:
        return total if total > limit else sum(1 for _ in points(grid))
    excluded = 0
    for r in range(1, len(grid.exclude) + 1):
        for subset in itertools.combinations(grid.exclude, r):
            merged = _merge(subset)
            if merged is not None:
                excluded += (-1) ** (r + 1) * _matching(fs, merged)
    return total - excluded


def _merge(exclusions: tuple[dict, ...]) -> dict | None:
    """The points matching all of these exclusions, as one assignment (None: no point can)."""
    merged: dict = {}
    for ex in exclusions:
        for key, value in ex.items():
            if key in merged and merged[key] != value:
                return None
            merged[key] = value
    return merged


def _matching(fs: list, assignment: dict) -> int:
    """Points of the full product that agree with a partial assignment of axis values."""
    n = 1
    for keys, columns in fs:
        fixed = [(column, assignment[k]) for k, column in zip(keys, columns) if k in assignment]
        if not fixed:
            n *= len(columns[0])
        elif len(fixed) == 1:
            n *= _occurrences(*fixed[0])
        else:
            candidates = _indices(*fixed[0])
            n *= sum(all(col[i] == v for col, v in fixed[1:]) for i in candidates)
        if n == 0:
            return 0
    return n


def _occurrences(column: Sequence, value: Any) -> int:
    return column.count(value)              # O(1) for a range


def _indices(column: Sequence, value: Any) -> list[int]:
    if isinstance(column, range):
        return [column.index(value)] if value in column else []
    return [i for i, v in enumerate(column) if v == value]


def expand(grid: GridLike, input_digest: Callable[[str], str] | None = None) -> Iterator[dict]:
    """-> cells {"point": {axis: value}, "id": cell_id}, streamed in a deterministic order."""
    ids = CellIds(grid, input_digest or InputDigests())
    for point in points(grid):
        yield {"point": point, "id": ids(point)}


class CellIds:
    """cell_id of a grid's points, fast: the id text of a cell is the JSON of its resolved
    config, which differs from point to point only where a parameter axis sets a value.
    So each combination of group options is resolved and dumped once, with a marker in
    place of every parameter, and a cell's text is that template with the parameters'
    own JSON spliced in (JSON is compositional: the same text as cell_id's, byte for
    byte).  A grid whose parameters the template cannot hold (an input file path swept,
    one parameter nested in another, or explicit points, which set keys and group options
    outside the axes) takes cell_id's path for every cell."""

    def __init__(self, grid: GridLike, digest: Callable[[str], str]) -> None:
        self.grid, self.digest = grid, digest
        self.params = [k for k in grid.axes if k not in GROUPS]
        self.groups = [g for g in GROUPS if g in grid.axes]
        self.fast = not getattr(grid, "points", None) and not any(k in INPUT_KEYS or k.startswith("sweep.") or k == "sweep"
                            or any(o.startswith(k + ".") for o in self.params)
                            for k in self.params)
        self.templates: dict[tuple, tuple | None] = {}

    def __call__(self, point: dict) -> str:
        if self.fast:
            key = tuple(point[g] for g in self.groups)
            template = self.templates.get(key, False)
            if template is False:
                template = self.templates[key] = self._template(point)
            if template is not None:
                order, pieces = template
                text = pieces[0]
                for param, piece in zip(order, pieces[1:]):
                    value = point[param]
                    text += (str(value) if type(value) is int else
                             json.dumps(value, sort_keys=True, separators=(",", ":"),
                                        default=str)) + piece
                return _id_of(text)
        return cell_id(resolve_point(self.grid.base, self.grid.options, point), self.digest)

    def _template(self, point: dict) -> tuple[list[str], list[str]] | None:
        """(the parameters in the order they appear in the id text, the text of this
        point's group options split at their places); None when a parameter does not
        appear exactly once (such cells take the slow path)."""
        marks = {k: json.dumps(f"\x00anonsim-param-{i}\x00") for i, k in enumerate(self.params)}
        cfg = resolve_point(self.grid.base, self.grid.options,
                            {**{g: point[g] for g in self.groups},
                             **{k: json.loads(m) for k, m in marks.items()}})
        text = id_text(cfg, self.digest)
        if any(text.count(m) != 1 for m in marks.values()):
            return None
        order = sorted(self.params, key=lambda k: text.index(marks[k]))
        pieces, rest = [], text
        for param in order:
            head, _, rest = rest.partition(marks[param])
            pieces.append(head)
        return order, pieces + [rest]


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


class InputDigests:
    """Content hashes of input files, each file read once (per launch: one instance)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self.seen:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self.seen[path] = h.hexdigest()
        return self.seen[path]


def cell_id(cfg: dict, input_digest: Callable[[str], str] | None = None) -> str:
    """Hash of the resolved cell config (sweep bookkeeping excluded) and of the content of
    its input files (a trace or snapshot edited in place is a new cell)."""
    return _id_of(id_text(cfg, input_digest))


def id_text(cfg: dict, input_digest: Callable[[str], str] | None = None) -> str:
    """The text a cell id hashes: the config's JSON, without `sweep`, with input digests."""
    digest = input_digest or InputDigests()
    body = {k: v for k, v in cfg.items() if k != "sweep"}
    inputs = {}
    for key in INPUT_KEYS:
        group, field = key.split(".")
        path = (cfg.get(group) or {}).get(field)
        if path:
            inputs[key] = digest(str(path))
    if inputs:
        body["inputs"] = inputs
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def _id_of(text: str) -> str:
    return hashlib.sha1(f"{ID_NAMESPACE}|{text}".encode()).hexdigest()[:16]


def axes_json(axes: dict) -> dict:
    """Axes for a JSON footer: a lazy range as its Hydra spelling."""
    return {k: f"range({v.start},{v.stop},{v.step})" if isinstance(v, range) else list(v)
            for k, v in axes.items()}

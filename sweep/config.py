"""Grid configs: Hydra composition and override grammar, typed schemas, validation.

A grid file is a Hydra primary config (defaults list over the groups ``workload``,
``arch`` and ``policy``, looked up in the grid file's folder, then in the project's
``conf/``: see ``search_path``) with a ``grid`` section::

    grid:
      axes: {policy: [eager, lazy], seed: [0, 1, 2]}
      zip: [[workload.n_ops, workload.n_procs]]   # axes that advance together
      exclude: [{policy: lazy, seed: 2}]          # combinations to drop

Command-line overrides use Hydra's grammar (``key=a,b``, ``range()``, ``glob()``): a sweep
override of an existing axis replaces its values, on any other key it adds an axis; a
plain override sets a value; ``~key`` drops an axis.  Everything is composed and type-checked here, before any
cell runs; every problem becomes one ``SweepConfigError`` line naming the file or key.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Sequence

import simcore.arch  # noqa: F401 - registers the arch schema
import simcore.policy  # noqa: F401 - registers the policies
import simcore.workloads  # noqa: F401 - registers the built-in workloads
from simcore import registry
from simcore.registry import GROUPS, RegistryError
from simcore.workloads.tracefile import TraceWorkload

from .grid import resolve_point


class SweepConfigError(ValueError):
    """A bad grid, config group file or override (one line, for the user)."""


# ---- schemas: the groups' come from simcore.registry --------------------------------
@dataclass
class SweepMeta:
    name: str = "sweep"
    batch_size: int = 0              # cells per remote call; 0 = automatic
    max_retries: int = 3             # re-runs of a batch whose worker died
    worker_max_cells: int = 0        # a worker is replaced after this many cells (0: never)
    worker_max_rss_mb: int = 0       # ... or once its RSS after a batch exceeds this (0: never)
    sample_every: int = 100          # slab counts sampled every N operations (0: never)
    plugins: List[str] = field(default_factory=list)   # modules that register workloads


POSITIVE = {("arch", k) for k in ("page_size", "pmd_pages", "vm_area_struct", "anon_vma",
                                   "anon_vma_chain", "vm_area_struct_per_slab",
                                   "anon_vma_per_slab", "anon_vma_chain_per_slab",
                                   "vm_area_struct_slab_pages", "anon_vma_slab_pages",
                                   "anon_vma_chain_slab_pages")}
NON_NEGATIVE = {("workload", "n_ops"), ("workload", "sleep_ms"), ("sweep", "batch_size"),
                ("sweep", "max_retries"), ("sweep", "worker_max_cells"),
                ("sweep", "worker_max_rss_mb"), ("sweep", "sample_every"), ("seed",),
                *(("arch", k) for k in ("lazy_vma_extra", "fork_a_ns", "fork_vma_ns",
                                        "fork_avc_ns", "fork_av_ns", "fork_pte_ns"))}


# ---- the expanded grid ----------------------------------------------------------
@dataclass
class Grid:
    """The composed base config, the axes, and the cells (one dict of axis values each)."""
    source: str
    base: dict
    axes: Dict[str, List[Any]]
    zips: List[List[str]]
    exclude: List[dict]
    options: Dict[str, Dict[str, dict]]            # group -> option -> composed node
    size: int = 0                                   # cells, counted without expanding them
    inputs: Any = field(default=None, repr=False)   # grid.InputDigests: each file hashed once
    points: List[dict] = field(default_factory=list)   # explicit points (grid.points, a design)

    @property
    def name(self) -> str:
        return str(self.base["sweep"]["name"])

    @property
    def cells(self) -> "Cells":
        """The cells, streamed ({"point", "id"} each); len() is the counted size."""
        return Cells(self)

    def resolve(self, point: dict) -> dict:
        """The full config of one cell (a fresh dict that may be changed)."""
        return copy.deepcopy(resolve_point(self.base, self.options, point))


class Cells:
    """A grid's cells as a re-iterable stream: each iteration expands the grid afresh, so
    memory does not grow with the grid (input files are hashed once per launch:
    runner.plan starts a fresh grid.inputs)."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def __len__(self) -> int:
        return self.grid.size

    def __iter__(self):
        from .grid import InputDigests, expand
        if self.grid.inputs is None:
            self.grid.inputs = InputDigests()
        return expand(self.grid, self.grid.inputs)


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value


def _get_dotted(cfg: dict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


# ---- loading ----------------------------------------------------------------------
PROJECT_CONF = Path(__file__).resolve().parent.parent / "conf"


def search_path(grid_file: Path) -> list[Path]:
    """Where config groups are looked up, first match wins: the grid file's folder, then
    the project's ``conf/`` (next to the ``sweep`` package), as Hydra's config search path."""
    out: list[Path] = []
    for d in (grid_file.resolve().parent, PROJECT_CONF):
        if d not in out and d.is_dir():
            out.append(d)
    return out


def _group_files(conf_path: list[Path], group: str) -> set[str]:
    return {p.stem for d in conf_path for p in (d / group).glob("*.yaml")}


def _options(conf_path: list[Path], group: str) -> list[str]:
    """A group's options: its files on the search path and its registered names."""
    return sorted(_group_files(conf_path, group) | set(registry.names(group)))


def _unknown_option(option: Any, group: str, conf_path: list[Path]) -> SweepConfigError:
    where = ", ".join(str(d / group) for d in conf_path)
    return SweepConfigError(f"unknown option {option!r} for group {group!r} (allowed: "
                            f"{', '.join(_options(conf_path, group)) or 'none'}; looked in {where})")


_OFFERED: set[tuple[str, str]] = set()        # (group, name) put into Hydra's ConfigStore


def _offer_registered(conf_path: list[Path]) -> None:
    """Registered options without a file of their own become Hydra options {name: NAME}
    (schema defaults are filled in later), so a group file holds only what differs from
    the defaults and a registered workload needs no file at all."""
    from hydra.core.config_store import ConfigStore
    cs = ConfigStore.instance()
    for group, name in _OFFERED:              # a file on the search path wins over an entry
        cs.repo.get(group, {}).pop(f"{name}.yaml", None)
    _OFFERED.clear()
    for group in GROUPS:
        files = _group_files(conf_path, group)
        for name in registry.names(group):
            if name not in files:
                cs.store(group=group, name=name, node={"name": name})
                _OFFERED.add((group, name))


def load_plugins(modules: Any, where: str) -> None:
    """Import the modules of sweep.plugins (they register workloads, policies)."""
    if modules is None:
        return
    if not isinstance(modules, (list, tuple)):
        raise SweepConfigError(f"{where}: sweep.plugins must be a list of module names")
    try:
        registry.load_plugins(list(modules))
    except RegistryError as exc:
        raise SweepConfigError(f"{where}: {exc}") from None


def _parse_overrides(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as exc:
        raise SweepConfigError(f"bad override: {str(exc).splitlines()[0]}") from None


def _with_schema_keys(ov) -> str:
    """An override of one key of a group node, e.g. ``arch.fork_a_ns=1``: group files hold
    only non-default values, so the key may be absent from the composed file; let Hydra add
    it (``++``) and the schema merge in _with_defaults reject keys the schema lacks."""
    from hydra.core.override_parser.types import OverrideType
    top = ov.key_or_group.split(".")[0]
    if ov.type == OverrideType.CHANGE and "." in ov.key_or_group \
            and top in (*GROUPS, "sweep") and not ov.input_line.startswith("+"):
        return "++" + ov.input_line
    return ov.input_line


def _sweep_values(ov, conf_path: list[Path], max_cells: int) -> Sequence[Any]:
    """The values of a sweep override; an integer range() stays a lazy Python range, and no
    range longer than max_cells is ever enumerated."""
    from hydra.core.override_parser.types import Glob, RangeSweep
    value = ov.value()
    if isinstance(value, RangeSweep):
        if not value.step:
            raise SweepConfigError(f"sweep {ov.input_line!r}: the step of range() must not be 0")
        lazy = value.range()
        if isinstance(lazy, range) and not value.shuffle:
            if not lazy:
                raise SweepConfigError(f"sweep {ov.input_line!r} has no values (empty range?)")
            return lazy
        n = max(0, math.ceil((value.stop - value.start) / value.step))
        if n > max_cells:
            raise SweepConfigError(too_many(n, max_cells, f"{ov.input_line!r} has {{n:,}} values"))
    if isinstance(value, Glob):
        if ov.key_or_group not in GROUPS:
            raise SweepConfigError(f"glob() works on config groups ({', '.join(GROUPS)}), "
                                   f"not on {ov.key_or_group!r}")
        chosen = value.filter(_options(conf_path, ov.key_or_group))
        if not chosen:
            raise SweepConfigError(f"{ov.input_line!r} matches no option of group "
                                   f"{ov.key_or_group!r} (options: "
                                   f"{', '.join(_options(conf_path, ov.key_or_group))})")
        return chosen
    try:
        values = list(ov.sweep_iterator())
    except Exception as exc:  # noqa: BLE001 - hydra raises several types here
        raise SweepConfigError(f"bad sweep {ov.input_line!r}: {exc}") from None
    if not values:
        raise SweepConfigError(f"sweep {ov.input_line!r} has no values (empty range?)")
    return values


def _load_yaml(path: Path) -> Any:
    import yaml
    from omegaconf import OmegaConf
    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepConfigError(f"{path}{where}: YAML syntax error: {problem}") from None


def _reject_code(node: Any, where: str) -> None:
    """No config may name code: no _target_ keys, no resolvers beyond OmegaConf's own."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("_target_", "_partial_", "_call_"):
                raise SweepConfigError(f"{where}: {key!r} is not allowed (configs cannot run code)")
            _reject_code(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _reject_code(value, f"{where}[{i}]")
    elif isinstance(node, str) and "${" in node:
        raise SweepConfigError(f"{where}: interpolation {node!r} is not allowed in sweep configs")


def too_many(n: int, max_cells: int, what: str = "the grid has {n:,} cells") -> str:
    return (f"{what.format(n=n)}, more than --max-cells {max_cells:,} "
            f"(raise --max-cells to run it anyway)")


def load_grid(path: str | Path, overrides: list[str] = (),
              max_cells: int | None = None) -> Grid:
    """Compose and validate a grid file with command-line overrides, and count its cells
    (more than max_cells, default DEFAULT_MAX_CELLS: a SweepConfigError).  Cells are
    expanded only when grid.cells is iterated."""
    from .grid import DEFAULT_MAX_CELLS, count
    max_cells = DEFAULT_MAX_CELLS if max_cells is None else max_cells
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"grid file not found: {path}")
    conf_path = search_path(path)
    raw = _load_yaml(path)
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{path}: a grid file must be a mapping")
    _reject_code(raw, "")
    grid_raw = raw.get("grid") or {}
    unknown = set(grid_raw) - {"axes", "zip", "exclude", "points", "sensitivity"}
    if unknown:
        raise SweepConfigError(f"{path}: grid has unknown key(s) {', '.join(sorted(unknown))} "
                               f"(allowed: axes, zip, exclude, points, sensitivity)")
    points = _points(grid_raw.get("points"), str(path))
    design = grid_raw.get("sensitivity")
    if design is not None and not isinstance(design, dict):
        raise SweepConfigError(f"{path}: grid.sensitivity must be a mapping")
    axes: dict[str, list] = {}
    for key, values in (grid_raw.get("axes") or {}).items():
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"{path}: grid.axes.{key} must be a non-empty list")
        axes[str(key)] = list(values)
    load_plugins((raw.get("sweep") or {}).get("plugins"), str(path))
    base_overrides = []
    zips = [list(z) for z in grid_raw.get("zip") or []]
    exclude = [dict(e) for e in grid_raw.get("exclude") or []]
    for ov in _parse_overrides(overrides):
        key = ov.key_or_group
        if key == "sweep.plugins" and not ov.is_delete():
            load_plugins(ov.value(), "sweep.plugins override")
        if key.startswith("grid.sensitivity.") and design is not None:
            design[key.split(".", 2)[2]] = [] if ov.is_delete() else ov.value()
        elif key == "grid" or key.startswith("grid."):
            zips, exclude = _grid_override(ov, zips, exclude)
        elif ov.is_delete() and key in axes:
            del axes[key]                          # ~key: drop an axis of the grid file
        elif ov.is_sweep_override():
            axes[key] = _sweep_values(ov, conf_path, max_cells)
        elif key in axes:
            axes[key] = [ov.value()]
        else:
            base_overrides.append(_with_schema_keys(ov))
    _reject_code(axes, "")                     # '${seed}' on an axis: refused like in a file
    for key in axes:
        if key == "sweep" or key.startswith("sweep."):
            raise SweepConfigError(f"{key} has {len(axes[key])} values, but sweep.* settings "
                                   f"belong to the whole launch and cannot be an axis "
                                   f"(give one value, e.g. {key}={axes[key][0]})")
    for group in GROUPS:
        for option in axes.get(group, []):
            if option not in _options(conf_path, group):
                raise _unknown_option(option, group, conf_path)
    if design is not None:
        from .sensitivity import DesignError, design_points
        base, _ = _compose(conf_path, path.stem, base_overrides, {})
        try:
            points += design_points(design, base, str(path))
        except DesignError as exc:
            raise SweepConfigError(str(exc)) from None
    groups_of_points = {g: list(dict.fromkeys(p[g] for p in points if g in p)) for g in GROUPS}
    base, options = _compose(conf_path, path.stem, base_overrides,
                             {**axes, **{g: v for g, v in groups_of_points.items() if v}})
    _expand_input_globs(base, axes, zips)
    base.setdefault("seed", 0)                     # a grid may sweep seed without declaring it
    grid = Grid(str(path), base, axes, zips, exclude, options, points=points)
    _validate(grid)
    grid.size = count(grid, max_cells)
    if grid.size > max_cells:
        raise SweepConfigError(too_many(grid.size, max_cells))
    return grid


def _points(raw: Any, where: str) -> list[dict]:
    """grid.points: a list of mappings {key: value} (a group option, seed, parameters)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(p, dict) and p for p in raw):
        raise SweepConfigError(f"{where}: grid.points must be a list of non-empty mappings, "
                               f"e.g. [{{workload: android_apps, workload.app_forks: 0.2}}]")
    return [{str(k): v for k, v in p.items()} for p in raw]


def _expand_input_globs(base: dict, axes: dict, zips: list) -> None:
    """An input file key (sweep.grid.INPUT_KEYS, e.g. workload.path) given as a glob --
    in the composed config or on an axis -- becomes an axis over the matching files,
    sorted, one cell each (``workload.path='tests/recordings/*.rec'``)."""
    import glob as globmod
    from .grid import INPUT_KEYS

    def matches(pattern: Any) -> list:
        if not isinstance(pattern, str) or not globmod.has_magic(pattern):
            return [pattern]
        found = sorted(p for p in globmod.glob(pattern) if Path(p).is_file())
        if not found:
            raise SweepConfigError(f"{key}={pattern!r} matches no file")
        return found

    for key in INPUT_KEYS:
        values = axes.get(key)
        if values is None:
            group, name = key.split(".")
            values = [(base.get(group) or {}).get(name)]
            if values[0] is None:
                continue
        expanded = [f for v in values for f in matches(v)]
        if expanded == list(values):
            continue
        if any(key in z for z in zips):
            raise SweepConfigError(f"{key} is zipped with another axis: give its files "
                                   f"one by one, not as a glob")
        if len(expanded) == 1 and key not in axes:
            _set_dotted(base, key, expanded[0])
        else:
            axes[key] = expanded
            _set_dotted(base, key, expanded[0])


def _grid_override(ov, zips: list, exclude: list) -> tuple[list, list]:
    """grid.zip=[[a,b]] / grid.exclude=[{k: v}] replace those lists; ~grid.zip clears it."""
    key = ov.key_or_group
    if key not in ("grid.zip", "grid.exclude"):
        raise SweepConfigError(f"{ov.input_line!r}: only grid.zip and grid.exclude can be "
                               f"overridden (an axis is set as key=a,b, e.g. seed=0,1,2)")
    if ov.is_sweep_override():
        raise SweepConfigError(f"{ov.input_line!r}: {key} takes one list, not a sweep")
    value = [] if ov.is_delete() else ov.value()
    if key == "grid.zip":
        if not isinstance(value, list) or not all(
                isinstance(z, list) and all(isinstance(k, str) for k in z) for z in value):
            raise SweepConfigError(f"{ov.input_line!r}: grid.zip takes a list of lists of axis "
                                   f"names, e.g. 'grid.zip=[[seed,workload.n_ops]]'")
        return [list(z) for z in value], exclude
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise SweepConfigError(f"{ov.input_line!r}: grid.exclude takes a list of mappings, "
                               f"e.g. 'grid.exclude=[{{policy:lazy,arch:arm64}}]'")
    return zips, [dict(e) for e in value]


def _compose(conf_path: list[Path], name: str, base_overrides: list[str],
             axes: dict[str, list]) -> tuple[dict, dict]:
    """Hydra compose once for the base, once per option of each group axis."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def one(extra: list[str]) -> dict:
        try:
            cfg = compose(config_name=name, overrides=[searchpath] + base_overrides + extra)
            out = OmegaConf.to_container(cfg, resolve=False)
        except MissingConfigException as exc:
            group, _, option = (exc.missing_cfg_file or "").rpartition("/")
            if group in GROUPS:
                raise _unknown_option(option, group, conf_path) from None
            raise SweepConfigError(f"{name}.yaml: {str(exc).splitlines()[0]}") from None
        except (HydraException, OmegaConfBaseException) as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ else ""
            detail = " ".join(lines[:2]) + (f" ({cause})" if cause and cause not in lines[0] else "")
            raise SweepConfigError(f"{name}.yaml: {detail}") from None
        _reject_code(out, "")
        return out

    _offer_registered(conf_path)
    searchpath = "hydra.searchpath=[" + ",".join(f"'file://{d}'" for d in conf_path[1:]) + "]"
    with initialize_config_dir(config_dir=str(conf_path[0]), version_base=None):
        base = one([])
        options = {g: {} for g in GROUPS}
        for group in GROUPS:
            if group not in base:
                raise SweepConfigError(f"{name}.yaml: the defaults list must select a {group!r}")
            for option in axes.get(group, []):
                options[group][option] = one([f"{group}={option}"])[group]
            options[group].setdefault(_option_name(base, group), base[group])
    for group in GROUPS:
        base[group] = _with_defaults(group, base[group])
        for name, node in list(options[group].items()):
            options[group][name] = _with_defaults(group, node)
    base["sweep"] = _with_defaults("sweep", base.get("sweep") or {})
    return base, options


def _with_defaults(group: str, node: dict) -> dict:
    """A group node with its schema's defaults filled in (and host sizes read for arch=host)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    if group == "sweep":
        schema = SweepMeta
    else:
        try:
            schema = registry.schema(group, node.get("name"))
        except RegistryError:
            return node                        # check_cell names the unknown option
    try:
        out = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as exc:
        names = ", ".join(f.name for f in fields(schema))
        raise SweepConfigError(f"{group}: {str(exc).splitlines()[0]} "
                               f"(keys of {schema.__name__}: {names})") from None
    if group == "arch" and out.get("from_host"):
        out = host_arch(out)
    return out


def host_arch(node: dict) -> dict:
    """An arch node with from_host: sizes and slab geometry from this machine's slabinfo."""
    import os
    from simcore.slab import CACHES, parse_slabinfo
    try:
        with open("/proc/slabinfo") as fh:
            geometry = parse_slabinfo(fh.read())
    except OSError as exc:
        raise SweepConfigError(f"arch={node.get('name')!r} reads /proc/slabinfo: {exc.strerror} "
                               f"(it needs root)") from None
    missing = [c for c in CACHES if c not in geometry]
    if missing:
        raise SweepConfigError(f"/proc/slabinfo has no line for {', '.join(missing)}")
    out = dict(node, page_size=os.sysconf("SC_PAGE_SIZE"))
    for cache, (size, per_slab, pages) in geometry.items():
        out.update({cache: size, f"{cache}_per_slab": per_slab, f"{cache}_slab_pages": pages})
    return out


def _option_name(cfg: dict, group: str) -> str:
    return str(cfg[group].get("name", group))


def _validate(grid: Grid) -> None:
    """Type-check every group option and every axis value against the schemas."""
    combos = [{}]
    for group in GROUPS:
        if group in grid.axes:
            combos = [{**c, group: o} for c in combos for o in grid.axes[group]]
    params = {k: v for k, v in grid.axes.items() if k not in GROUPS}
    for key, values in grid.axes.items():
        if not isinstance(values, range):
            seen = set()
            for v in values:
                mark = json.dumps(v, sort_keys=True, default=str) + type(v).__name__
                if mark in seen:
                    raise SweepConfigError(f"axis {key} lists {v!r} twice")
                seen.add(mark)
    for group in GROUPS:                        # two files with one content: one cell id
        swept = [k[len(group) + 1:] for k in grid.axes if k.startswith(group + ".")]
        composed: dict[str, str] = {}
        for option in grid.axes.get(group, []):
            node = copy.deepcopy(grid.options[group][option])
            for key in swept:                   # an axis sets these in every cell
                try:
                    _set_dotted(node, key, "<swept>")
                except (KeyError, TypeError):
                    pass
            text = json.dumps(node, sort_keys=True, default=str)
            if text in composed:
                other = composed[text]
                if json.dumps(grid.options[group][option], sort_keys=True, default=str) == \
                        json.dumps(grid.options[group][other], sort_keys=True, default=str):
                    raise SweepConfigError(f"{group} options {other!r} and {option!r} are "
                                           f"identical (their cells would be the same cells)")
                axes = ", ".join(f"{group}.{k}" for k in swept)
                raise SweepConfigError(f"{group} options {other!r} and {option!r} differ only in "
                                       f"{axes}, which is also an axis (their cells would be the "
                                       f"same cells): drop one of them or that axis")
            composed[text] = option
    for key in [k for z in grid.zips for k in z]:
        if key not in grid.axes:
            raise SweepConfigError(f"grid.zip names {key!r}, which is not an axis")
    for z in grid.zips:
        lengths = {len(grid.axes[k]) for k in z}
        if len(lengths) > 1:
            raise SweepConfigError(f"grid.zip {z}: axes must have the same number of values")
    in_points = {k for p in grid.points for k in p}
    for key in in_points & set(grid.axes):
        raise SweepConfigError(f"{key} is both an axis and a key of grid.points")
    for ex in grid.exclude:
        for key in ex:
            if key not in grid.axes and key not in in_points:
                raise SweepConfigError(f"grid.exclude names {key!r}, which is not an axis")
    for combo in combos:
        cfg = grid.resolve(combo)
        check_cell(cfg)
        for key, values in params.items():
            try:
                _get_dotted(cfg, key)
            except (KeyError, TypeError):
                raise SweepConfigError(f"unknown key {key!r} (not in the composed config)") from None
            for value in _representatives(values):
                trial = copy.deepcopy(cfg)
                _set_dotted(trial, key, value)
                check_cell(trial, key)
    _validate_points(grid, combos)


def _validate_points(grid: Grid, combos: list[dict]) -> None:
    """Type-check explicit points like axes: per choice of group options, every key's
    representative values (_representatives), all keys together (keys are independent)."""
    shapes: dict[str, tuple[dict, dict[str, list]]] = {}
    for point in grid.points:
        groups = {g: point[g] for g in GROUPS if g in point}
        values = shapes.setdefault(json.dumps(groups, sort_keys=True), (groups, {}))[1]
        for key, value in point.items():
            if key not in GROUPS:
                values.setdefault(key, []).append(value)
    for groups, values in shapes.values():
        reps = {k: _representatives(v) for k, v in values.items()}
        for i in range(max((len(r) for r in reps.values()), default=1)):
            trial = {**groups, **{k: r[min(i, len(r) - 1)] for k, r in reps.items()}}
            for combo in combos:
                try:
                    cfg = grid.resolve({**combo, **trial})
                except (KeyError, TypeError):
                    raise SweepConfigError(f"grid.points: {trial} names a key that is not in "
                                           f"the composed config") from None
                check_cell(cfg, "grid.points")


def _representatives(values: Sequence) -> list:
    """Values that stand for the whole axis: one of each type, and the extremes of numbers
    (a schema accepts or rejects a value by its type, and bounds by its size)."""
    if isinstance(values, range):
        return [values[0], min(values[0], values[-1]), max(values[0], values[-1])]
    out, seen = [], set()
    for v in values:
        if type(v) not in seen:
            seen.add(type(v))
            out.append(v)
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers:
        out += [min(numbers), max(numbers)]
    return out


def check_cell(cfg: dict, key: str | None = None) -> dict:
    """Validate one resolved cell config against the schemas; -> the typed config."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    what = f" ({key})" if key else ""
    schemas = {"sweep": SweepMeta}
    for group in GROUPS:
        try:
            schemas[group] = registry.schema(group, cfg.get(group, {}).get("name"))
        except RegistryError as exc:
            raise SweepConfigError(f"{exc}{what}") from None
    allowed_top = set(schemas) | {"seed", "grid"}
    extra = set(cfg) - allowed_top
    if extra:
        raise SweepConfigError(f"unknown key(s) {', '.join(sorted(extra))}{what} "
                               f"(allowed: {', '.join(sorted(allowed_top - {'grid'}))})")
    typed = {}
    for group, schema in schemas.items():
        node = cfg.get(group, {})
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        except OmegaConfBaseException as exc:
            detail = str(exc).splitlines()[0]
            names = ", ".join(f.name for f in fields(schema))
            raise SweepConfigError(f"{group}{what}: {detail} (keys of {schema.__name__}: {names})") from None
        typed[group] = OmegaConf.to_container(merged)
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SweepConfigError(f"seed{what} must be an integer, got {seed!r}")
    typed["seed"] = seed
    for path in POSITIVE | NON_NEGATIVE:
        try:
            value = _get_dotted(typed, ".".join(path))
        except (KeyError, TypeError):
            continue
        if path in POSITIVE and value <= 0 or path in NON_NEGATIVE and value < 0:
            bound = "positive" if path in POSITIVE else "zero or more"
            raise SweepConfigError(f"{'.'.join(path)}={value!r}{what} must be {bound}")
    if issubclass(schemas["workload"], TraceWorkload) and not Path(typed["workload"]["path"]).is_file():
        raise SweepConfigError(f"workload.path={typed['workload']['path']!r}{what}: no such file")
    try:
        registry.lookup("policy", typed["policy"]["name"]).make(**typed["policy"]["variant"])
    except ValueError as exc:
        raise SweepConfigError(f"policy{what}: {exc}") from None
    return typed

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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List

GROUPS = ("workload", "arch", "policy")


class SweepConfigError(ValueError):
    """A bad grid, config group file or override (one line, for the user)."""


# ---- typed schemas of the config groups -----------------------------------------
@dataclass
class NoopWorkload:
    """Does nothing and returns a row: measures the framework itself."""
    name: str = "noop"
    sleep_ms: float = 0.0            # busy time per cell
    die_once: str = ""               # test hook: a marker path; the worker dies once


@dataclass
class TraceWorkload:
    """Replays one trace file (format v1)."""
    name: str = "trace"
    path: str = ""


@dataclass
class RandomWorkload:
    """A random valid trace (simcore.workloads.random_trace), seeded by the cell's seed."""
    name: str = "random"
    n_ops: int = 40
    forks: bool = True


from simcore.workloads.android import AndroidApps, AndroidBoot  # noqa: E402
from simcore.workloads.servers import SERVER_WORKLOADS  # noqa: E402
from simcore.workloads.snapshot import SnapshotWorkload  # noqa: E402

WORKLOAD_SCHEMAS: dict[str, type] = {"noop": NoopWorkload, "trace": TraceWorkload,
                                     "random": RandomWorkload, "android_boot": AndroidBoot,
                                     "android_apps": AndroidApps, "snapshot": SnapshotWorkload,
                                     **{n: cls for n, (cls, _) in SERVER_WORKLOADS.items()}}


@dataclass
class ArchConf:
    """An architecture profile: page geometry, slab caches, and the fork cost model.

    Sizes are slab object sizes in bytes; ``*_per_slab`` objects fit one slab of
    ``*_slab_pages`` pages.  ``from_host`` reads all of them from /proc/slabinfo when a
    cell runs.  ``lazy_vma_extra`` bytes are added to vm_area_struct under the lazy policy
    (its vm_rcuref).  Fork latency is predicted as fork_a_ns + fork_vma_ns * VMAs +
    fork_avc_ns * AVCs cloned + fork_av_ns * anon_vmas allocated + fork_pte_ns * PTEs copied
    (+ fork_pte_ns per page-table entry a lazy upgrade scans)."""
    name: str = "x86_64"
    page_size: int = 4096
    pmd_pages: int = 512
    from_host: bool = False
    vm_area_struct: int = 192
    anon_vma: int = 104
    anon_vma_chain: int = 64
    vm_area_struct_per_slab: int = 21
    anon_vma_per_slab: int = 39
    anon_vma_chain_per_slab: int = 64
    vm_area_struct_slab_pages: int = 1
    anon_vma_slab_pages: int = 1
    anon_vma_chain_slab_pages: int = 1
    lazy_vma_extra: int = 0
    fork_a_ns: float = 50000.0
    fork_vma_ns: float = 450.0
    fork_avc_ns: float = 150.0
    fork_av_ns: float = 300.0
    fork_pte_ns: float = 15.0


@dataclass
class PolicyConf:
    """An rmap policy and its variant knobs."""
    name: str = "eager"
    variant: Dict[str, str] = field(default_factory=dict)


@dataclass
class SweepMeta:
    name: str = "sweep"
    batch_size: int = 0              # cells per remote call; 0 = automatic
    max_retries: int = 3             # re-runs of a batch whose worker died
    sample_every: int = 100          # slab counts sampled every N operations (0: never)


POSITIVE = {("arch", k) for k in ("page_size", "pmd_pages", "vm_area_struct", "anon_vma",
                                   "anon_vma_chain", "vm_area_struct_per_slab",
                                   "anon_vma_per_slab", "anon_vma_chain_per_slab",
                                   "vm_area_struct_slab_pages", "anon_vma_slab_pages",
                                   "anon_vma_chain_slab_pages")}
NON_NEGATIVE = {("workload", "n_ops"), ("workload", "sleep_ms"), ("sweep", "batch_size"),
                ("sweep", "max_retries"), ("sweep", "sample_every"), ("seed",),
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
    cells: List[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.base["sweep"]["name"])

    def resolve(self, point: dict) -> dict:
        """The full config of one cell (a fresh dict that may be changed)."""
        from .grid import resolve_point
        return copy.deepcopy(resolve_point(self.base, self.options, point))


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


def _options(conf_path: list[Path], group: str) -> list[str]:
    return sorted({p.stem for d in conf_path for p in (d / group).glob("*.yaml")})


def _unknown_option(option: Any, group: str, conf_path: list[Path]) -> SweepConfigError:
    where = ", ".join(str(d / group) for d in conf_path)
    return SweepConfigError(f"unknown option {option!r} for group {group!r} (allowed: "
                            f"{', '.join(_options(conf_path, group)) or 'none'}; looked in {where})")


def _parse_overrides(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as exc:
        raise SweepConfigError(f"bad override: {str(exc).splitlines()[0]}") from None


def _sweep_values(ov, conf_path: list[Path]) -> list[Any]:
    from hydra.core.override_parser.types import Glob
    value = ov.value()
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


def load_grid(path: str | Path, overrides: list[str] = ()) -> Grid:
    """Compose, validate and expand a grid file with command-line overrides."""
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"grid file not found: {path}")
    conf_path = search_path(path)
    raw = _load_yaml(path)
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{path}: a grid file must be a mapping")
    _reject_code(raw, "")
    grid_raw = raw.get("grid") or {}
    unknown = set(grid_raw) - {"axes", "zip", "exclude"}
    if unknown:
        raise SweepConfigError(f"{path}: grid has unknown key(s) {', '.join(sorted(unknown))} "
                               f"(allowed: axes, zip, exclude)")
    axes: dict[str, list] = {}
    for key, values in (grid_raw.get("axes") or {}).items():
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"{path}: grid.axes.{key} must be a non-empty list")
        axes[str(key)] = list(values)
    base_overrides = []
    for ov in _parse_overrides(overrides):
        key = ov.key_or_group
        if ov.is_delete() and key in axes:
            del axes[key]                          # ~key: drop an axis of the grid file
        elif ov.is_sweep_override():
            axes[key] = _sweep_values(ov, conf_path)
        elif key in axes:
            axes[key] = [ov.value()]
        else:
            base_overrides.append(ov.input_line)
    zips = [list(z) for z in grid_raw.get("zip") or []]
    exclude = [dict(e) for e in grid_raw.get("exclude") or []]
    for group in GROUPS:
        for option in axes.get(group, []):
            if option not in _options(conf_path, group):
                raise _unknown_option(option, group, conf_path)
    base, options = _compose(conf_path, path.stem, base_overrides, axes)
    base.setdefault("seed", 0)                     # a grid may sweep seed without declaring it
    grid = Grid(str(path), base, axes, zips, exclude, options)
    _validate(grid)
    from .grid import expand
    grid.cells = expand(grid)
    return grid


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
    if group == "workload":
        schema = WORKLOAD_SCHEMAS.get(node.get("name"))
        if schema is None:
            return node                        # check_cell names the unknown workload
    else:
        schema = {"arch": ArchConf, "policy": PolicyConf, "sweep": SweepMeta}[group]
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
    for key in [k for z in grid.zips for k in z]:
        if key not in grid.axes:
            raise SweepConfigError(f"grid.zip names {key!r}, which is not an axis")
    for z in grid.zips:
        lengths = {len(grid.axes[k]) for k in z}
        if len(lengths) > 1:
            raise SweepConfigError(f"grid.zip {z}: axes must have the same number of values")
    for ex in grid.exclude:
        for key in ex:
            if key not in grid.axes:
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


def _representatives(values: list) -> list:
    """Values that stand for the whole axis: one of each type, and the extremes of numbers
    (a schema accepts or rejects a value by its type, and bounds by its size)."""
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
    wname = cfg.get("workload", {}).get("name")
    if wname not in WORKLOAD_SCHEMAS:
        raise SweepConfigError(f"workload.name={wname!r}{what} is not a registered workload "
                               f"(allowed: {', '.join(WORKLOAD_SCHEMAS)})")
    from simcore.policy import POLICIES
    pname = cfg.get("policy", {}).get("name")
    if pname not in POLICIES:
        raise SweepConfigError(f"policy.name={pname!r}{what} is not a registered policy "
                               f"(allowed: {', '.join(POLICIES)})")
    schemas = {"workload": WORKLOAD_SCHEMAS[wname], "arch": ArchConf, "policy": PolicyConf,
               "sweep": SweepMeta}
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
    if typed["workload"]["name"] in ("trace", "snapshot") and not Path(typed["workload"]["path"]).is_file():
        raise SweepConfigError(f"workload.path={typed['workload']['path']!r}{what}: no such file")
    try:
        from simcore.policy import make_policy
        make_policy(typed["policy"]["name"], **typed["policy"]["variant"])
    except ValueError as exc:
        raise SweepConfigError(f"policy{what}: {exc}") from None
    return typed

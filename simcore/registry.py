"""One registry per config group: every workload, policy and the architecture schema are
registered here once, by (group, name), and everything else (sweep configs, the runner,
the CLI) only reads it.

* ``workload``: a schema dataclass (its fields are the group node's keys, types and
  defaults; its ``name`` default is the option name) and a generator
  ``(cfg, seed) -> iterable of trace ops``.  Register with the decorator::

      @register_workload(MySchema)
      def my_workload(cfg: MySchema, seed: int) -> Iterator[Op]: ...

* ``policy``: the policy class (instantiated with the variant knobs) under the schema
  ``PolicyConf``; the class's ``VARIANTS`` (knob -> (choices, default)) is the variant
  schema.
* ``arch``: one schema for every profile (``ArchConf`` in simcore.arch); the profiles
  themselves are the files of ``conf/arch/`` (``sweep calibrate`` writes one).

The built-in entries register themselves when their modules are imported
(``simcore.workloads``, ``simcore.policy``, ``simcore.arch``).

Plugins: your own workloads (or policies) live in your own modules, which import this
module and register.  A sweep names them in its grid config::

    sweep:
      plugins: [mypackage.my_workloads]     # importable module names

The sweep driver imports them before it composes the grid (sweep.config.load_grid), and
every cell imports them before it builds its operations (sweep.runner.workload_ops, in
each Ray worker), so the modules must be importable where the workers run:
an installed package, a directory on PYTHONPATH, or (local Ray) a module under the
driver's working directory, which Ray puts on the workers' sys.path.  Nothing in
anonsim needs editing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict

GROUPS = ("workload", "arch", "policy")


class RegistryError(ValueError):
    """An unknown (group, name), a name registered twice, or a plugin that fails to import."""


@dataclass(frozen=True)
class Entry:
    """One registered option of a config group."""
    group: str
    name: str
    schema: type                      # dataclass of the group node
    make: Callable[..., Any]          # workload: generator(cfg, seed); policy: the class
    module: str = ""                  # where it was registered (for messages)
    variants: Dict[str, tuple] = field(default_factory=dict)   # policy knob -> (choices, default)


@dataclass
class PolicyConf:
    """An rmap policy and its variant knobs (checked by the policy class)."""
    name: str = "eager"
    variant: Dict[str, str] = field(default_factory=dict)


_ENTRIES: dict[str, dict[str, Entry]] = {g: {} for g in GROUPS}
_SCHEMAS: dict[str, type] = {}        # group -> the schema of every option (arch)


def register(group: str, name: str, schema: type, make: Callable[..., Any],
             variants: Dict[str, tuple] | None = None) -> Entry:
    """Register one option; the same name from two different places is an error."""
    if group not in _ENTRIES:
        raise RegistryError(f"unknown config group {group!r} (groups: {', '.join(GROUPS)})")
    entry = Entry(group, name, schema, make, getattr(make, "__module__", ""), dict(variants or {}))
    old = _ENTRIES[group].get(name)
    if old is not None and (old.module, getattr(old.make, "__qualname__", "")) != (
            entry.module, getattr(make, "__qualname__", "")):     # a module reloaded is fine
        raise RegistryError(f"{group} {name!r} is registered twice ({old.module} and "
                            f"{entry.module})")
    _ENTRIES[group][name] = entry
    return entry


def register_workload(schema: type) -> Callable[[Callable], Callable]:
    """Decorator: register a workload generator under its schema's default ``name``."""
    name = _default_name(schema)

    def deco(generator: Callable) -> Callable:
        register("workload", name, schema, generator)
        return generator
    return deco


def register_schema(group: str, schema: type) -> None:
    """The schema of every option of a group whose options are files (arch profiles)."""
    _SCHEMAS[group] = schema


def _default_name(schema: type) -> str:
    for f in fields(schema):
        if f.name == "name":
            return str(f.default)
    raise RegistryError(f"schema {schema.__name__} has no 'name' field")


def names(group: str) -> list[str]:
    """Registered option names of a group, sorted."""
    return sorted(_ENTRIES[group])


def lookup(group: str, name: Any) -> Entry:
    try:
        return _ENTRIES[group][name]
    except (KeyError, TypeError):
        raise RegistryError(f"{group}.name={name!r} is not a registered {group} "
                            f"(allowed: {', '.join(names(group))})") from None


def schema(group: str, name: Any) -> type:
    """The schema of one option: its entry's, or the group's (arch)."""
    if group in _SCHEMAS:
        return _SCHEMAS[group]
    if group == "policy":
        lookup(group, name)
        return PolicyConf
    return lookup(group, name).schema


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import plugin modules (they register on import); a failure is one RegistryError line."""
    for module in modules:
        if not isinstance(module, str) or not module:
            raise RegistryError(f"sweep.plugins: {module!r} is not a module name")
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            raise RegistryError(f"sweep.plugins: cannot import {module!r}: "
                                f"{type(exc).__name__}: {exc}") from None

"""Where every workload and architecture parameter comes from: read from the schemas' field
metadata, the one place it is written::

    boot_apps: int = field(default=130, metadata={
        "source": "fitted_lazy", "range": (90, 160), "ref": "where the value comes from"})

``source`` is a class of SOURCES (``n/a`` only for a field that is no quantity: a name, a
path, a switch; its range is None); ``range`` is the plausible (low, high) of a number and
holds its default.  An arch field may add ``"profiles": {profile: {source, range, ref}}``
for a profile (conf/arch/<profile>.yaml) whose value comes from elsewhere.

The sensitivity analysis (sweep.sensitivity) sweeps the ``knobs``: every numeric field that
was fitted or assumed and has a range wider than one value.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Iterable

SOURCES = ("measured", "cited", "fitted_eager", "fitted_lazy", "assumed")
NOT_A_QUANTITY = "n/a"
SWEPT = ("fitted_eager", "fitted_lazy", "assumed")      # what a sensitivity analysis varies
MEANING = {
    "measured": "measured (on this kernel or the reference machine; ref says where)",
    "cited": "cited from a public source (ref)",
    "fitted_eager": "fitted to the eager (mainline) baseline",
    "fitted_lazy": "fitted to the cover letter's lazy figures (a calibration)",
    "assumed": "assumed (no source)",
    NOT_A_QUANTITY: "not a quantity (a name, path or switch)",
}


class ProvenanceError(ValueError):
    """A schema field without provenance, or with an invalid source class or range."""


@dataclass(frozen=True)
class Provenance:
    """One parameter: its value in a config, and where that value comes from."""
    group: str                  # workload | arch
    option: str                 # the workload or arch profile
    name: str
    value: Any
    source: str
    range: tuple | None
    ref: str


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:            # type: ignore[misc]
        return f.default_factory()                  # type: ignore[misc]
    return None


def _problems_of(where: str, meta: Any, value: Any) -> list[str]:
    """What is wrong with one {source, range, ref} entry for a field of this value."""
    if not isinstance(meta, dict) or "source" not in meta:
        return [f"{where}: no provenance (field metadata needs source, range, ref)"]
    out = []
    source, rng, ref = meta.get("source"), meta.get("range", MISSING), meta.get("ref")
    if source not in (*SOURCES, NOT_A_QUANTITY):
        out.append(f"{where}: source {source!r} is not one of {', '.join(SOURCES)} "
                   f"(or {NOT_A_QUANTITY!r} for a name, path or switch)")
    if not isinstance(ref, str) or not ref.strip():
        out.append(f"{where}: no ref (where the value comes from)")
    if rng is MISSING:
        out.append(f"{where}: no range")
    elif _is_number(value):
        if source == NOT_A_QUANTITY:
            out.append(f"{where}: a number needs a source class, not {NOT_A_QUANTITY!r}")
        if not (isinstance(rng, tuple) and len(rng) == 2 and all(_is_number(x) for x in rng)
                and rng[0] <= rng[1]):
            out.append(f"{where}: range {rng!r} is not a (low, high) pair of numbers")
        elif not rng[0] <= value <= rng[1]:
            out.append(f"{where}: value {value!r} is outside its range {rng!r}")
    elif rng is not None:
        out.append(f"{where}: range {rng!r} given for a value that is no number ({value!r})")
    return out


def problems(schema: type, profiles: dict[str, dict] | None = None) -> list[str]:
    """Every provenance problem of a schema's fields (and of the profiles' values of the
    fields that have a ``profiles`` entry: profile name -> its composed values)."""
    out = []
    for f in fields(schema):
        where = f"{schema.__name__}.{f.name}"
        out += _problems_of(where, dict(f.metadata) or None, _default(f))
        for profile, meta in (f.metadata.get("profiles") or {}).items():
            values = (profiles or {}).get(profile)
            value = (values or {}).get(f.name, _default(f))
            out += _problems_of(f"{where} (profile {profile})", meta, value)
    return out


def _meta(f, option: str) -> dict:
    return (f.metadata.get("profiles") or {}).get(option) or dict(f.metadata)


def table(group: str, option: str, schema: type, values: dict | None = None) -> list[Provenance]:
    """The provenance of every field of one config node (its values; default: the schema's)."""
    values = values or {}
    out = []
    for f in fields(schema):
        meta = _meta(f, option)
        out.append(Provenance(group, option, f.name, values.get(f.name, _default(f)),
                              meta.get("source", ""), meta.get("range"), meta.get("ref", "")))
    return out


@dataclass(frozen=True)
class Knob:
    """A parameter a sensitivity analysis varies: numeric, fitted or assumed, range > 1 value."""
    name: str
    source: str
    low: float
    high: float
    default: Any
    integer: bool


def knobs(schema: type, option: str = "", sources: Iterable[str] = SWEPT,
          skip: Iterable[str] = ()) -> list[Knob]:
    """The knobs of a schema (for one option: an arch profile's own provenance), in field order."""
    sources, skip = tuple(sources), set(skip)
    out = []
    for f in fields(schema):
        meta = _meta(f, option)
        value, rng = _default(f), meta.get("range")
        if (f.name in skip or meta.get("source") not in sources or not _is_number(value)
                or not rng or rng[0] >= rng[1]):
            continue
        out.append(Knob(f.name, meta["source"], rng[0], rng[1], value,
                        isinstance(value, int) and all(isinstance(x, int) for x in rng)))
    return out


def check(schemas: Iterable[type], profiles: dict[str, dict] | None = None) -> None:
    """Raise ProvenanceError listing every problem of these schemas."""
    found = [p for s in schemas for p in problems(s, profiles)]
    if found:
        raise ProvenanceError("; ".join(found))

"""Scenario trace format v1 (shared/TRACE_FORMAT.md): JSON Lines -> typed operations.

Parsing checks each line on its own (fields, types, enumerations); checks that
need the state of the address space (unknown region, unmapped pages, ...) are
made by :mod:`simcore.layout` while the trace is replayed.

One compatible extension of version 1: the range of an ``mremap`` *move* may contain
unmapped pages after its first page.  Linux 6.17+ moves such a range with one
``MREMAP_MAYMOVE|MREMAP_FIXED`` call (``remap_move()``): every VMA in it moves, and the
gaps between them keep their size at the destination.  The first page must be mapped (a
gap there is ``EFAULT``).  Traces valid under version 1 are unchanged by this.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

from orjson import loads as _loads

KINDS = ("anon", "shared_anon", "file", "shared_file")
PROTS = ("rw", "r", "rx", "rwx", "none")
ADVICES = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "hugepage",
           "nohugepage", "mergeable", "unmergeable", "pageout", "cold", "collapse")
WALKS = ("reclaim", "migrate", "idle", "ksm")


class TraceError(ValueError):
    """An invalid trace; the message names the line."""

    def __init__(self, lineno: int, msg: str, source: str = "") -> None:
        self.lineno, self.msg, self.source = lineno, msg, source
        where = f"{source}:" if source else "line "
        super().__init__(f"{where}{lineno}: {msg}")


def _op(cls: type) -> type:
    """@dataclass(slots=True), compared and hashed by value.  Not frozen: a frozen
    dataclass's __init__ sets each field through object.__setattr__ (or a slot descriptor's
    __set__), three times the cost of the plain one (the android workloads make ~10^5-10^6
    ops per cell).  Ops are values all the same: nothing assigns to an op's field (a
    changed op is a new one: dataclasses.replace)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


@_op
class Mmap:
    pid: int
    region: str
    pages: int
    kind: str = "anon"
    prot: str = "rw"
    after: str | None = None
    populate: bool = False
    file: str | None = None
    offset: int = 0
    line: int = 0


@_op
class Touch:
    pid: int
    region: str
    first: int = 0
    count: int | None = None
    write: bool = True
    line: int = 0


@_op
class Mprotect:
    pid: int
    region: str
    prot: str
    first: int = 0
    count: int | None = None
    line: int = 0


@_op
class Munmap:
    pid: int
    region: str
    first: int = 0
    count: int | None = None
    line: int = 0


@_op
class MremapResize:
    pid: int
    region: str
    pages: int
    line: int = 0


@_op
class MremapMove:
    pid: int
    region: str
    to: str
    first: int = 0
    count: int | None = None
    after: str | None = None
    line: int = 0


@_op
class Madvise:
    pid: int
    region: str
    advice: str
    first: int = 0
    count: int | None = None
    line: int = 0


@_op
class Mlock:
    pid: int
    region: str
    first: int = 0
    count: int | None = None
    lock: bool = True          # False = munlock
    line: int = 0


@_op
class Fork:
    pid: int
    child: int
    line: int = 0


@_op
class Exec:
    pid: int
    line: int = 0


@_op
class Exit:
    pid: int
    line: int = 0


@_op
class Rmap:
    pid: int
    region: str
    walk: str = "reclaim"
    first: int = 0
    count: int | None = None
    line: int = 0


Op = Union[Mmap, Touch, Mprotect, Munmap, MremapResize, MremapMove, Madvise, Mlock,
           Fork, Exec, Exit, Rmap]

# op name -> (required fields, optional fields with their types)
_INT, _STR, _BOOL = int, str, bool
_SPEC: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    "mmap": ({"pid": _INT, "region": _STR, "pages": _INT},
             {"kind": _STR, "prot": _STR, "after": _STR, "populate": _BOOL, "file": _STR,
              "offset": _INT}),
    "touch": ({"pid": _INT, "region": _STR},
              {"first": _INT, "count": _INT, "write": _BOOL}),
    "mprotect": ({"pid": _INT, "region": _STR, "prot": _STR}, {"first": _INT, "count": _INT}),
    "munmap": ({"pid": _INT, "region": _STR}, {"first": _INT, "count": _INT}),
    "madvise": ({"pid": _INT, "region": _STR, "advice": _STR}, {"first": _INT, "count": _INT}),
    "mlock": ({"pid": _INT, "region": _STR}, {"first": _INT, "count": _INT}),
    "munlock": ({"pid": _INT, "region": _STR}, {"first": _INT, "count": _INT}),
    "fork": ({"pid": _INT, "child": _INT}, {}),
    "exec": ({"pid": _INT}, {}),
    "exit": ({"pid": _INT}, {}),
    "rmap": ({"pid": _INT, "region": _STR}, {"first": _INT, "count": _INT, "walk": _STR}),
}
_MREMAP_RESIZE = ({"pid": _INT, "region": _STR, "pages": _INT}, {})
_MREMAP_MOVE = ({"pid": _INT, "region": _STR, "to": _STR},
                {"first": _INT, "count": _INT, "after": _STR})
_ENUMS = {"kind": KINDS, "prot": PROTS, "advice": ADVICES, "walk": WALKS}


# spec -> ({field: (type, allowed values or None)}, required fields, the same as a set)
_Table = tuple[dict[str, tuple[type, tuple | None]], tuple[str, ...], frozenset]


def _table(spec: tuple[dict[str, type], dict[str, type]]) -> _Table:
    required, optional = spec
    return ({k: (t, _ENUMS.get(k)) for k, t in {**optional, **required}.items()},
            tuple(required), frozenset(required))


_TABLES: dict[str, _Table] = {name: _table(spec) for name, spec in _SPEC.items()}
_MREMAP_RESIZE_T, _MREMAP_MOVE_T = _table(_MREMAP_RESIZE), _table(_MREMAP_MOVE)


# the least value of an integer field (checked in this order: the first failing one is named)
_LEAST = {"pages": 1, "count": 1, "first": 0, "offset": 0, "pid": 0, "child": 0}


def _check_fields(obj: dict, table: _Table, lineno: int) -> dict:
    fields, required, need = table
    args: dict = {}
    low = False                                # some integer <= 0: checked after the loop
    for key, value in obj.items():
        known = fields.get(key)
        if known is None:
            if key == "op":
                continue
            allowed = ", ".join(sorted(fields))
            raise TraceError(lineno, f"unknown field {key!r} for op {obj['op']!r} (allowed: {allowed})")
        typ, enum = known
        if value.__class__ is not typ:         # exact types pass at once (JSON gives no subclasses)
            if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise TraceError(lineno, f"field {key!r} must be an integer, got {value!r}")
            if typ is not int and not isinstance(value, typ):
                raise TraceError(lineno, f"field {key!r} must be a {typ.__name__}, got {value!r}")
        if enum is not None and value not in enum:
            raise TraceError(lineno, f"{key}={value!r} is not one of {', '.join(enum)}")
        if value.__class__ is int and value <= 0:
            low = True
        args[key] = value
    if len(args) < len(required) or not args.keys() >= need:
        missing = [k for k in required if k not in obj]
        raise TraceError(lineno, f"op {obj['op']!r} needs field(s) {', '.join(missing)}")
    if low:
        for key, least in _LEAST.items():
            if key in args and args[key] < least:
                rule = "be positive" if least else "not be negative"
                raise TraceError(lineno, f"{key} must {rule}, got {args[key]}")
    return args


def _reader(cls: type, table: _Table, keys: tuple[str, ...]) -> Callable[[dict, int], Op | None]:
    """read(obj, line): the op of a line whose keys are `keys` (in that order; a shape that
    _check_fields() has passed once), or None where a value fails a check of
    _check_fields(), which then names it.  Each value is read and checked once, and given
    to the class by position (cls(**args, line=line) without the args)."""
    ns: dict = {"cls": cls}
    body = ["def read(obj, line):"]
    given = {}
    for i, key in enumerate(keys):
        if key == "op":
            continue
        typ, enum = table[0][key]
        ns[f"t{i}"], ns[f"e{i}"] = typ, enum
        test = f"v{i}.__class__ is not t{i}"
        if enum is not None:
            test += f" or v{i} not in e{i}"
        if key in _LEAST:
            test += f" or v{i} < {_LEAST[key]}"
        body += [f"    v{i} = obj[{key!r}]", f"    if {test}:", "        return None"]
        given[key] = f"v{i}"
    args = []
    for j, f in enumerate(fields(cls)):
        ns[f"d{j}"] = f.default
        args.append("line" if f.name == "line" else given.get(f.name, f"d{j}"))
    exec("\n".join([*body, f"    return cls({', '.join(args)})"]), ns)
    return ns["read"]


# op name -> (its class, its field table), for the ops without cross-field rules
_PLAIN = {name: (cls, _TABLES[name]) for name, cls in (
    ("touch", Touch), ("mprotect", Mprotect), ("munmap", Munmap), ("madvise", Madvise),
    ("fork", Fork), ("exec", Exec), ("exit", Exit), ("rmap", Rmap))}
_READERS: dict[tuple[str, tuple[str, ...]], Callable[[dict, int], Op | None]] = {}


def parse_op(obj: object, lineno: int = 0) -> Op:
    """One decoded JSON object -> a typed operation."""
    if obj.__class__ is not dict and not isinstance(obj, dict):
        raise TraceError(lineno, "each line must be a JSON object")
    name = obj.get("op")
    plain = _PLAIN.get(name)
    if plain is not None:                       # the ops without cross-field rules
        shape = (name, tuple(obj))
        read = _READERS.get(shape)
        if read is not None:
            op = read(obj, lineno)
            if op is not None:
                return op
        cls, table = plain
        op = cls(**_check_fields(obj, table, lineno), line=lineno)   # or the error it names
        if read is None:
            _READERS[shape] = _reader(cls, table, shape[1])
        return op
    if name == "mremap":
        if "to" in obj:
            return MremapMove(**_check_fields(obj, _MREMAP_MOVE_T, lineno), line=lineno)
        if "pages" in obj:
            return MremapResize(**_check_fields(obj, _MREMAP_RESIZE_T, lineno), line=lineno)
        raise TraceError(lineno, "mremap needs either 'pages' (resize) or 'to' (move)")
    if name not in _SPEC:
        raise TraceError(lineno, f"unknown op {name!r} (known: {', '.join(sorted([*_SPEC, 'mremap']))})")
    args = _check_fields(obj, _TABLES[name], lineno)
    if name == "mmap":
        kind = args.get("kind", "anon")
        if kind in ("file", "shared_file") and "file" not in args:
            raise TraceError(lineno, f"mmap of kind {kind!r} needs a 'file' name")
        if kind in ("anon", "shared_anon") and ("file" in args or "offset" in args):
            raise TraceError(lineno, f"mmap of kind {kind!r} takes no 'file'/'offset'")
        return Mmap(**args, line=lineno)
    return Mlock(**args, lock=(name == "mlock"), line=lineno)


def parse_lines(lines: Iterable[str], source: str = "") -> Iterator[Op]:
    """Stream typed ops from JSONL text lines (comments and blank lines skipped)."""
    loads = _loads
    for lineno, raw in enumerate(lines, 1):
        try:
            obj = loads(raw)
        except ValueError:
            # blank or comment, or what orjson refuses and the standard decoder takes (NaN,
            # integers beyond 64 bits, lone surrogates) or names the error of
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TraceError(lineno, f"not valid JSON: {exc.msg}", source) from None
        try:
            op = parse_op(obj, lineno)
        except TraceError as exc:
            if obj.__class__ is not dict or not any(v.__class__ is float for v in obj.values()):
                raise TraceError(lineno, exc.msg, source) from None
            try:        # orjson reads an integer beyond 64 bits as a float: json's reading rules
                op = parse_op(json.loads(raw), lineno)
            except TraceError as exc:
                raise TraceError(lineno, exc.msg, source) from None
        yield op


def load(path: str | Path) -> list[Op]:
    """Read and parse a whole trace file."""
    path = Path(path)
    try:
        with path.open() as fh:
            return list(parse_lines(fh, str(path)))
    except OSError as exc:
        raise TraceError(0, f"cannot read trace: {exc.strerror}", str(path)) from None


def to_json(op: Op) -> dict:
    """Typed op -> the JSON object of the trace format (defaults omitted)."""
    cls = type(op)
    name = {Mmap: "mmap", Touch: "touch", Mprotect: "mprotect", Munmap: "munmap",
            MremapResize: "mremap", MremapMove: "mremap", Madvise: "madvise", Fork: "fork",
            Exec: "exec", Exit: "exit", Rmap: "rmap"}.get(cls)
    if cls is Mlock:
        name = "mlock" if op.lock else "munlock"
    out: dict = {"op": name}
    for field in cls.__slots__:
        if field in ("line", "lock"):
            continue
        value = getattr(op, field)
        if value is None or (field in _DEFAULTS and _DEFAULTS[field] == value):
            continue
        out[field] = value
    return out


_DEFAULTS = {"kind": "anon", "populate": False, "offset": 0, "first": 0,
             "write": True, "walk": "reclaim"}


def dumps(ops: Iterable[Op]) -> str:
    """Typed ops -> JSONL text."""
    return "".join(json.dumps(to_json(op)) + "\n" for op in ops)

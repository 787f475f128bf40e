"""The fingerprint of the code and metric set that turn a cell config into a row.

Every row carries it (column ``code_fingerprint``, and ``sweep.code_fingerprint`` in the
file footer); a relaunch recomputes the cells whose stored fingerprint differs from the
current one.  It is computed, never typed by hand, from

- the source of the simulator (every file of the ``simcore`` package: the model, the
  policies, the workload generators, the kernel harness and its C files) and of the sweep
  modules that compute a row from a config (``ROW_MODULES``).  Python is hashed as its
  syntax tree without docstrings, so editing a comment, a docstring or the layout keeps
  the fingerprint, and any change of code changes it; other files are hashed as bytes;
- the metric set: the metric columns and their types, and the sweep settings that change
  metric values (``METRIC_SETTINGS``, e.g. ``sample_every``, which samples the series).
"""
from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path

ROW_MODULES = ("runner.py", "store.py")        # sweep/: simulate_cell, metrics, result schema
METRIC_SETTINGS = ("sample_every",)            # sweep.* keys that change a row's metrics
SKIP_DIRS = ("__pycache__",)


def _normalised(path: Path) -> bytes:
    """Python: the syntax tree without docstrings (comments and layout never reach it)."""
    data = path.read_bytes()
    if path.suffix != ".py":
        return data
    tree = ast.parse(data, filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False).encode()


def source_files(simcore_dir: Path, sweep_dir: Path) -> list[tuple[str, Path]]:
    """(name in the hash, file) of every source that produces rows, in a fixed order."""
    files = [(f"simcore/{p.relative_to(simcore_dir).as_posix()}", p)
             for p in simcore_dir.rglob("*")
             if p.is_file() and not any(d in p.parts for d in SKIP_DIRS)
             and not p.name.startswith(".") and not p.name.endswith("~")   # editor files
             and p.suffix not in (".pyc", ".so", ".o")]
    files += [(f"sweep/{name}", sweep_dir / name) for name in ROW_MODULES]
    return sorted(files)


def code_digest(simcore_dir: Path | None = None, sweep_dir: Path | None = None) -> str:
    """Hash of the normalised sources (default: the simcore and sweep packages imported)."""
    if simcore_dir is None or sweep_dir is None:
        import simcore
        simcore_dir = Path(simcore.__file__).parent
        sweep_dir = Path(__file__).parent
    files = source_files(Path(simcore_dir).resolve(), Path(sweep_dir).resolve())
    stats = tuple((name, path, path.stat().st_mtime_ns, path.stat().st_size)
                  for name, path in files)
    return _cached_digest(stats)         # the files on disk now: what new workers import


def _cached_digest(stats: tuple) -> str:
    """_code_digest, remembered on disk by the files' paths, mtimes and sizes (the same key
    as the in-process cache), so a command such as `sweep status` does not parse the
    sources again (about a second) while they are unchanged."""
    import os
    key = hashlib.sha256(repr([(n, str(p), t, z) for n, p, t, z in stats]).encode()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "anonsim" / \
        "code-digests" / key[:32]
    try:
        text = cache.read_text()
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text
    except OSError:
        pass
    digest = _code_digest(stats)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(digest)
        tmp.replace(cache)
    except OSError:
        pass                             # no cache: computed each time
    return digest


@lru_cache(maxsize=16)
def _code_digest(stats: tuple) -> str:
    h = hashlib.sha256()
    for name, path, _, _ in stats:
        h.update(name.encode() + b"\0" + hashlib.sha256(_normalised(path)).digest())
    return h.hexdigest()


def metric_set(sweep_cfg: dict) -> dict:
    """The metric columns with their types and the metric-affecting sweep settings."""
    from .store import LIST_METRICS, metric_columns
    ints, floats = metric_columns(sweep_cfg.get("plugins") or ())
    return {"int": list(ints), "float": list(floats),
            "list": {k: str(v) for k, v in LIST_METRICS.items()},
            "settings": {k: sweep_cfg.get(k) for k in METRIC_SETTINGS}}


def fingerprint(sweep_cfg: dict, code: str | None = None) -> str:
    """The fingerprint of rows computed now with these sweep settings (16 hex digits)."""
    text = json.dumps({"code": code or code_digest(), "metrics": metric_set(sweep_cfg)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]

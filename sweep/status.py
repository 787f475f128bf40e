"""`sweep status` from the part files' footers: no row is read.

Every part file's footer holds its row counts by (workload, policy, status, code
fingerprint) (``sweep.row_counts``, written by Store.write), so a sweep of a million cells
is summarised from a thousand footers.  Rows are cells unless a launch is (or was, when it
was interrupted) writing rows that supersede others (the store's pending mark): then, and
for files written before the counts existed, the few columns needed are read and the
cells counted from them (ok wins).  ``verify`` reads every page of every file as well,
checksums included, and moves damaged files aside (a footer read catches an empty,
garbage or truncated file, not a bit flip in a data page)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from .store import COUNTS_KEY, READ_ERRORS, Store, row_counts

COUNT_COLUMNS = ("cell_id", "workload", "policy", "status", "code_fingerprint")


@dataclass
class Summary:
    files: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)            # sweep.* footer keys of the first file
    configs: set = field(default_factory=set)           # resolved_config texts of the files
    by: dict = field(default_factory=dict)              # (workload, policy) -> [ok, failed]
    per_fp: dict = field(default_factory=dict)          # code fingerprint -> rows
    cells: int = 0
    from_rows: bool = False                             # counted from rows, not footers


def summarize(store: Store, verify: bool = False) -> Summary:
    out = Summary()
    pending = store.is_pending()
    rowwise: list[str] = []
    for path in store.parquet_files():
        try:
            md = pq.read_metadata(path, filesystem=store.fs)
            if verify:
                store.read(path)
        except READ_ERRORS as exc:
            store._damaged(path, exc)
            continue
        kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items()
              if k.startswith(b"sweep.")}
        if not {"cell_id", "status"} <= set(md.schema.names):     # a foreign Parquet file
            continue
        if not out.files:
            out.meta = kv
        out.files.append(path)
        out.configs.add(kv.get("sweep.resolved_config", "{}"))
        counts = json.loads(kv[COUNTS_KEY]) if COUNTS_KEY in kv else None
        if counts is None or pending:
            rowwise.append(path)
            if counts is None:
                try:
                    counts = row_counts(store.read(path, _present(md)))
                except READ_ERRORS as exc:
                    store._damaged(path, exc)
                    out.files.pop()
                    rowwise.pop()
                    continue
        for w, p, st, fp, n in counts:
            out.per_fp[fp] = out.per_fp.get(fp, 0) + n
            if not pending:
                _add(out.by, w, p, st, n)
    if pending:
        _count_rows(store, rowwise, out)
    out.cells = sum(ok + failed for ok, failed in out.by.values())
    return out


def _present(md) -> list[str]:
    return [c for c in COUNT_COLUMNS if c in md.schema.names]


def _add(by: dict, w: str, p: str, st: str, n: int) -> None:
    ok, failed = by.get((w, p), (0, 0))
    by[(w, p)] = (ok + n * (st == "ok"), failed + n * (st != "ok"))


def _count_rows(store: Store, paths: list[str], out: Summary) -> None:
    """Cells from rows (ok wins): while rows that supersede others may exist."""
    out.from_rows = True
    cells: dict[str, tuple] = {}
    for path in paths:
        try:
            t = store.read(path, ["cell_id", "workload", "policy", "status"])
        except READ_ERRORS as exc:
            store._damaged(path, exc)
            continue
        for cid, w, p, st in zip(*(t[c].to_pylist() for c in t.column_names)):
            if cells.get(cid, ("", "", ""))[2] != "ok":
                cells[cid] = (w, p, st)
    for w, p, st in cells.values():
        _add(out.by, w, p, st, 1)

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

from .store import COUNTS_KEY, READ_ERRORS, Store, read_meta, row_counts

COUNT_COLUMNS = ("cell_id", "workload", "policy", "status", "code_fingerprint")
CONFIG_KEY = "sweep.resolved_config"
MAGIC = b"PAR1"


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
            kv = footer_values(store, path, (COUNTS_KEY, CONFIG_KEY))
            if verify:
                store.read(path)
            counts = json.loads(kv[COUNTS_KEY]) if kv.get(COUNTS_KEY) else None
            md = None
            if counts is None:                # written before the counts, or not ours
                md = pq.read_metadata(path, filesystem=store.fs)
                if not {"cell_id", "status"} <= set(md.schema.names):   # a foreign file
                    continue
                counts = row_counts(store.read(path, _present(md)))
        except READ_ERRORS + (ValueError,) as exc:
            store._damaged(path, exc)
            continue
        if not out.files:
            out.meta = read_meta(store, path)
        out.files.append(path)
        out.configs.add(kv.get(CONFIG_KEY) or "{}")
        if pending:
            rowwise.append(path)
        for w, p, st, fp, n in counts:
            out.per_fp[fp] = out.per_fp.get(fp, 0) + n
            if not pending:
                _add(out.by, w, p, st, n)
    if pending:
        _count_rows(store, rowwise, out)
    out.cells = sum(ok + failed for ok, failed in out.by.values())
    return out


class FooterError(ValueError):
    """A file that does not end like a Parquet file (empty, garbage, truncated)."""


def footer_values(store: Store, path: str, keys: tuple[str, ...]) -> dict[str, str]:
    """Values of string keys of a Parquet file's footer metadata, read from the footer's
    bytes without decoding the footer (pyarrow's read_metadata decodes the schema and
    statistics of every column: ~0.5 ms of CPU a file, seconds over thousands of files).

    The footer (format: PAR1 ... <footer> <4-byte length> PAR1) is Thrift compact; each
    key_value_metadata entry is a KeyValue struct whose fields 1 (key) and 2 (value) are
    binary, each a field header byte 0x18 (field delta 1, type 8) then a ULEB128 length.
    A key whose bytes are not found is absent from the result (the caller then decodes the
    footer with pyarrow)."""
    with store.fs.open_input_file(path) as fh:
        size = fh.size()
        if size < 12:
            raise FooterError(f"{size} bytes: not a Parquet file")
        tail = fh.read_at(8, size - 8)
        n = int.from_bytes(tail[:4], "little")
        if tail[4:] != MAGIC or n > size - 12:
            raise FooterError("no Parquet footer (truncated or not Parquet)")
        raw = fh.read_at(n, size - 8 - n)
    out = {}
    for key in keys:
        k = key.encode()
        at = raw.find(b"\x18" + _uleb(len(k)) + k + b"\x18")
        if at < 0:
            continue
        i = at + 2 + len(_uleb(len(k))) + len(k)
        length, shift = 0, 0
        while True:
            byte = raw[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out[key] = raw[i:i + length].decode()
    return out


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


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

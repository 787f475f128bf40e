"""Result storage: Parquet files under a local path or any pyarrow.fs URI (s3://...).

Layout: ``<root>/workload=<w>/policy=<p>/part-<batch>.parquet``.  Each file is written
under a temporary name in the same directory and then moved into place, so a file that
exists is complete.  Partition values are sanitised so no config value can escape root.
Each file's footer carries its row counts (``sweep.row_counts``), which `sweep status`
reads instead of the rows; a launch reads the store once into a compact index
(``Store.index``) of the rows that stand for cells.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from simcore.activity import COLUMNS as ACTIVITY_COLUMNS
from simcore.fork import FORK_INTS
from simcore.slab import CACHES
from simcore.timemodel import TIME_FLOATS, TIME_INTS

PARTITIONS = ("workload", "policy")
KERNEL_INT_METRICS = (*CACHES, *(f"{c}_peak" for c in CACHES), "folios", "processes",
                      "anon_vma_root_lock_write", "rmap_walks", "rmap_avcs_visited",
                      "rmap_vmas_visited", "rmap_vmas_not_mapping", "rmap_root_lock_read",
                      "rmap_lockless_walks", "lazy_upgrades", "lazy_upgrade_folios",
                      "lazy_upgrade_ptes", "lazy_repointed_folios", "lazy_pinned_vmas",
                      *ACTIVITY_COLUMNS, *TIME_INTS, "forks")
KERNEL_FLOAT_METRICS = (*(f"{c}_kb" for c in CACHES), *(f"{c}_slab_kb" for c in CACHES),
                        "fork_ns_predicted", *TIME_FLOATS)


def policy_metrics(plugins: tuple[str, ...] | None = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns policies declare beyond the kernel caches: per policy cache live/peak
    counts and KB, walk counters (rmap_<name>) and stats() keys; -> (ints, floats).  The
    policies: the built-in ones and those registered by the modules `plugins` (a sweep's
    sweep.plugins), so that a sweep's columns (and its fingerprint's metric set) do not
    depend on what else a process has loaded; None: every registered policy."""
    from simcore import policy, registry      # noqa: F401 - the built-in policies register
    names = tuple(n for n in registry.names("policy")
                  if plugins is None or _ours(registry.lookup("policy", n).module, plugins))
    return _policy_metrics(names)


def _ours(module: str, plugins: tuple[str, ...]) -> bool:
    return module.startswith("simcore.") or any(module == p or module.startswith(p + ".")
                                                for p in plugins)


@lru_cache(maxsize=8)
def _policy_metrics(policies: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from simcore.policy import make_policy
    ints: dict[str, None] = {}
    floats: dict[str, None] = {}
    for name in policies:
        policy = make_policy(name)
        for cache in policy.caches:
            ints.update({cache.name: None, f"{cache.name}_peak": None})
            floats.update({f"{cache.name}_kb": None, f"{cache.name}_slab_kb": None})
        ints.update({f"rmap_{k}": None for k in policy.walk_counters})
        ints.update({f"fork_{k}": None for k in policy.fork_counters})
        ints.update(dict.fromkeys(policy.stats()))
    return (tuple(k for k in ints if k not in KERNEL_INT_METRICS),
            tuple(k for k in floats if k not in KERNEL_FLOAT_METRICS))


def metric_columns(plugins: tuple[str, ...] | list[str] | None = ()) \
        -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(int, float) metric columns of a sweep with these sweep.plugins: the kernel caches'
    and those of the built-in policies and of the plugins' policies (their caches, walk
    counters and stats get columns like a built-in policy's).  The plugins must have been
    loaded (the driver and each worker load them before they build a schema or a row)."""
    ints, floats = policy_metrics(None if plugins is None else tuple(plugins))
    return (KERNEL_INT_METRICS[:-1] + FORK_INTS + ints + KERNEL_INT_METRICS[-1:],      # "forks" stays last
            KERNEL_FLOAT_METRICS + floats)


INT_METRICS, FLOAT_METRICS = metric_columns()           # the built-in policies' (at import)
LIST_METRICS = {"fork_ns": pa.list_(pa.float64()),
                **{f"{c}_series": pa.list_(pa.int64()) for c in CACHES}}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
QUARANTINE = "_quarantine"          # damaged part files are moved here (not matched by *.parquet)
READ_ERRORS = (pa.ArrowException, OSError)


class CellRow(NamedTuple):
    """What the store holds for one cell."""
    status: str
    file: str
    fingerprint: str            # code_fingerprint of the row ('' before fingerprints)


def safe_name(value: object) -> str:
    """A path component derived from a config value: no separators, no leading dot."""
    text = _SAFE.sub("_", str(value)) or "_"
    return "_" + text if text.startswith(".") else text


def result_schema(params: dict[str, type], plugins: tuple[str, ...] | list[str] = ()) -> pa.Schema:
    """The one fixed schema of a sweep: ids, axes, status, then metrics."""
    arrow = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    cols = [("cell_id", pa.string()), ("code_fingerprint", pa.string()),
            ("sweep", pa.string()), ("workload", pa.string()),
            ("arch", pa.string()), ("policy", pa.string()), ("variant", pa.string()),
            ("seed", pa.int64())]
    cols += [(name, arrow[typ]) for name, typ in params.items()]
    cols += [("status", pa.string()), ("error", pa.string()), ("traceback", pa.string()),
             ("wall_s", pa.float64()), ("worker_peak_rss_kb", pa.int64()),
             ("worker_rss_kb", pa.int64())]
    ints, floats = metric_columns(plugins)
    cols += [(m, pa.int64()) for m in ints] + [(m, pa.float64()) for m in floats]
    cols += list(LIST_METRICS.items())
    return pa.schema(cols)


@dataclass
class Store:
    """One sweep's output location."""
    uri: str

    def __post_init__(self) -> None:
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        except (pa.ArrowInvalid, ValueError):
            import os
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(self.uri)
        self.root = self.root.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.quarantined: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []

    def _files(self) -> list[pafs.FileInfo]:
        info = self.fs.get_file_info(self.root)
        if info.type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(self.root, recursive=True)
        return [f for f in self.fs.get_file_info(sel)
                if f.type == pafs.FileType.File and f.base_name.endswith(".parquet")]

    def parquet_files(self) -> list[str]:
        return sorted(f.path for f in self._files() if not f.base_name.startswith(".tmp-"))

    def read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """One part file, its page checksums verified (a bit flip is an error, not a value)."""
        return pq.read_table(path, columns=columns, filesystem=self.fs,
                             page_checksum_verification=True)

    def sound_tables(self, columns: list[str] | None = None):
        """-> (path, table) of every part file whose footer and `columns` (None: all) read
        cleanly.  A damaged file (garbage, empty, truncated, bit-flipped) is moved to
        <root>/_quarantine/ and recorded in self.quarantined as (relative path, error); its
        cells then count as missing, so a relaunch recomputes them."""
        for path in self.parquet_files():
            try:
                table = self.read(path, columns)
            except READ_ERRORS as exc:
                self._damaged(path, exc)
                continue
            yield path, table

    def _damaged(self, path: str, exc: Exception) -> None:
        """A part file that does not read: ours goes to quarantine, a foreign one is skipped."""
        if self.ours(path):
            self.quarantine(path, exc)
        else:                             # not a file we wrote: left where it is, skipped
            self.skipped.append((path[len(self.root) + 1:], _reason(exc)))

    def ours(self, path: str) -> bool:
        """Is path a part file of this store's layout (<p>=<v>/.../part-<batch>.parquet)?"""
        parts = path[len(self.root) + 1:].split("/")
        return (len(parts) == len(PARTITIONS) + 1 and parts[-1].startswith("part-")
                and all(d.startswith(f"{p}=") for d, p in zip(parts, PARTITIONS)))

    def quarantine_notes(self) -> list[str]:
        """One line per damaged file moved aside so far."""
        return [f"moved damaged result file {rel} to {QUARANTINE}/ ({reason}); "
                f"a relaunch recomputes its cells" for rel, reason in self.quarantined] + \
               [f"skipped unreadable file {rel}, which is not a result file of a sweep "
                f"({reason})" for rel, reason in self.skipped]

    def sound_files(self, columns: list[str] | None = None) -> list[str]:
        return [path for path, _ in self.sound_tables(columns)]

    def quarantine(self, path: str, exc: Exception) -> str:
        """Move a damaged part file aside, under a name no result glob matches."""
        rel = path[len(self.root) + 1:]
        dest = f"{self.root}/{QUARANTINE}/{rel.replace('/', '__')}.damaged"
        self.fs.create_dir(f"{self.root}/{QUARANTINE}", recursive=True)
        self.fs.move(path, dest)
        self.quarantined.append((rel, _reason(exc)))
        return dest

    def clean_temporaries(self) -> int:
        """Remove half-written files of an interrupted run."""
        tmp = [f.path for f in self._files() if f.base_name.startswith(".tmp-")]
        for path in tmp:
            self.fs.delete_file(path)
        return len(tmp)

    def _row_tables(self) -> Iterator[tuple[str, float, pa.Table]]:
        """(path, mtime, table of cell_id, status, code_fingerprint) of every result file,
        in path order; rows written before fingerprints existed have fingerprint ''.
        Foreign files are skipped; damaged ones are moved aside (see sound_tables) and
        their cells count as missing."""
        for info in sorted((f for f in self._files() if not f.base_name.startswith(".tmp-")),
                           key=lambda f: f.path):
            try:
                names = pq.read_schema(info.path, filesystem=self.fs).names
                if not {"cell_id", "status"} <= set(names):      # a foreign Parquet file
                    self.skipped.append((info.path[len(self.root) + 1:], "not a result file"))
                    continue
                cols = [c for c in ("cell_id", "status", "code_fingerprint") if c in names]
                table = self.read(info.path, cols)
            except READ_ERRORS as exc:
                self._damaged(info.path, exc)
                continue
            if "code_fingerprint" not in names:
                table = table.append_column("code_fingerprint",
                                            pa.array([""] * table.num_rows, pa.string()))
            yield info.path, info.mtime.timestamp() if info.mtime else 0.0, table

    def standing(self, fingerprint: str = "") -> "Standing":
        """Every row of the store as arrays, and which row stands for each cell: of several
        rows (an interrupted rerun), the one computed by `fingerprint`, then ok over failed,
        then the newest file, then the last path.  Vectorised: a million rows cost a few
        tens of MB and seconds, not a dict of a million objects."""
        paths, parts = [], []
        for path, mtime, table in self._row_tables():
            n = table.num_rows
            fp = pc.fill_null(table["code_fingerprint"], "")
            parts.append((_bytes(table["cell_id"]), _bytes(fp),
                          np.asarray(pc.equal(table["status"], "ok").fill_null(False)),
                          np.asarray(pc.equal(fp, fingerprint)),
                          np.full(n, len(paths), np.int32), np.full(n, mtime),
                          np.arange(n, dtype=np.int32)))
            paths.append(path)
        if not parts:
            empty = np.zeros(0, bool)
            return Standing(paths, np.zeros(0, "S16"), np.zeros(0, "S16"), empty, empty,
                            np.zeros(0, np.int32), np.zeros(0, np.int32), empty)
        ids, fps, ok, current, file, mtime, row = (np.concatenate(c) for c in zip(*parts))
        order = np.lexsort((file, mtime, ok, current, ids))      # last key first: ids primary
        last = np.ones(len(ids), bool)
        last[:-1] = ids[order][:-1] != ids[order][1:]
        winner = np.zeros(len(ids), bool)
        winner[order[last]] = True
        return Standing(paths, ids, fps, ok, current, file, row, winner)

    def index(self, fingerprint: str = "") -> "CellIndex":
        """The standing row of every cell, compactly (see CellIndex)."""
        st = self.standing(fingerprint)
        w = st.winner
        return CellIndex(st.ids[w], st.ok[w], st.current[w], extra_rows=int((~w).sum()))

    def scan(self, fingerprint: str = "") -> dict[str, CellRow]:
        """cell_id -> the row that stands for the cell (see standing()).  One object per
        cell: for tests and small stores; a launch uses index()."""
        st = self.standing(fingerprint)
        return {cid.decode(): CellRow("ok" if ok else "failed", st.paths[f], fp.decode())
                for cid, ok, f, fp in zip(st.ids[st.winner], st.ok[st.winner],
                                          st.file[st.winner], st.fps[st.winner])}

    def supersede(self, fingerprint: str) -> int:
        """Keep one row per cell, the one standing() picks; rewrite the files that hold the
        others without them (a stale or failed row replaced by a rerun). -> rows dropped."""
        st = self.standing(fingerprint)
        dropped = 0
        for f in np.unique(st.file[~st.winner]):
            path = st.paths[f]
            mine = st.file == f
            keep_rows = np.sort(st.row[mine & st.winner])
            try:
                table = self.read(path)
            except READ_ERRORS as exc:
                self._damaged(path, exc)
                continue
            kept = table.take(pa.array(keep_rows, pa.int64()))
            dropped += table.num_rows - kept.num_rows
            if kept.num_rows == 0:
                self.fs.delete_file(path)
                continue
            tmp = path.rsplit("/", 1)[0] + f"/.tmp-rewrite-{uuid.uuid4().hex}.parquet"
            self._write_file(kept, tmp)
            self.fs.move(tmp, path)
        return dropped

    def _write_file(self, table: pa.Table, path: str) -> None:
        """One part file, its row counts in the footer (what `sweep status` reads)."""
        meta = dict(table.schema.metadata or {})
        meta[COUNTS_KEY.encode()] = json.dumps(row_counts(table)).encode()
        pq.write_table(table.replace_schema_metadata(meta), path, filesystem=self.fs,
                       compression="zstd", write_page_checksum=True)

    def pending_path(self) -> str:
        return f"{self.root}/{PENDING}"

    def mark_pending(self) -> None:
        """A launch is about to write second rows of cells: until supersede() has run,
        rows are not cells (`sweep status` then counts cells from the rows)."""
        self.fs.create_dir(self.root, recursive=True)
        with self.fs.open_output_stream(self.pending_path()) as fh:
            fh.write(b"a launch writes rows that supersede others\n")

    def clear_pending(self) -> None:
        if self.fs.get_file_info(self.pending_path()).type == pafs.FileType.File:
            self.fs.delete_file(self.pending_path())

    def is_pending(self) -> bool:
        return self.fs.get_file_info(self.pending_path()).type == pafs.FileType.File

    def write(self, table: pa.Table, batch: str, meta: dict[str, str]) -> list[str]:
        """Write a batch's rows, one file per partition, atomically. -> final paths."""
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in meta.items()}})
        keys = [table[p].to_pylist() for p in PARTITIONS]
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(*keys)):
            groups.setdefault(key, []).append(i)
        paths = []
        for key, rows in sorted(groups.items()):
            folder = "/".join([self.root] + [f"{p}={safe_name(v)}" for p, v in zip(PARTITIONS, key)])
            self.fs.create_dir(folder, recursive=True)
            final = f"{folder}/part-{safe_name(batch)}.parquet"
            tmp = f"{folder}/.tmp-{safe_name(batch)}-{uuid.uuid4().hex}.parquet"
            self._write_file(table.take(rows), tmp)
            self.fs.move(tmp, final)
            paths.append(final)
        return paths


COUNTS_KEY = "sweep.row_counts"     # footer: [[workload, policy, status, fingerprint, rows], ...]
PENDING = "_supersede_pending"      # exists while a launch may hold two rows of one cell


def row_counts(table: pa.Table) -> list[list]:
    """[[workload, policy, status, code_fingerprint, rows], ...] of a table of result rows."""
    cols = {}
    for name in ("workload", "policy", "status", "code_fingerprint"):
        col = (table[name] if name in table.column_names
               else pa.array([""] * table.num_rows, pa.string()))
        cols[name] = pc.fill_null(col.cast(pa.string()), "")
    groups = pa.table(cols).group_by(list(cols)).aggregate([("status", "count")])
    return sorted([*key, n] for *key, n in zip(*(groups[c].to_pylist() for c in cols),
                                                 groups["status_count"].to_pylist()))


class Standing(NamedTuple):
    """Every row of a store (arrays aligned by row) and the rows that stand for cells."""
    paths: list                 # file index -> path
    ids: np.ndarray           # cell ids as bytes
    fps: np.ndarray           # code fingerprints as bytes
    ok: np.ndarray            # status == "ok"
    current: np.ndarray       # fingerprint == the given one
    file: np.ndarray          # index into paths
    row: np.ndarray           # row number within its file
    winner: np.ndarray        # the row that stands for its cell


class CellIndex:
    """Which cells a store holds, for a launch's plan: the sorted cell ids (bytes) and,
    per id, whether its standing row is ok and computed by the current code (16 bytes
    and 2 flags per cell)."""

    def __init__(self, ids, ok, current, extra_rows: int = 0) -> None:
        order = np.argsort(ids, kind="stable")
        self.ids, self.ok, self.current = ids[order], ok[order], current[order]
        self.extra_rows = extra_rows        # rows that stand for no cell (superseded ones)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: list[str]):
        """-> (found, ok, current) arrays for these ids (ok/current False where not found)."""
        q = np.array(ids, dtype="S") if ids else np.zeros(0, "S16")
        if not len(self.ids):
            z = np.zeros(len(q), bool)
            return z, z, z
        i = np.minimum(np.searchsorted(self.ids, q), len(self.ids) - 1)
        found = self.ids[i] == q
        return found, found & self.ok[i], found & self.current[i]


def _bytes(column) -> np.ndarray:
    """A string column as a numpy bytes array (nulls as b'')."""
    values = pc.fill_null(column, "").to_pylist()
    return np.array(values, dtype="S") if values else np.zeros(0, "S16")


def _reason(exc: Exception) -> str:
    """An Arrow/OS error as one short line."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


def read_meta(store: Store, path: str) -> dict[str, str]:
    meta = pq.read_schema(path, filesystem=store.fs).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"sweep.")}


def json_meta(**items: object) -> dict[str, str]:
    return {f"sweep.{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in items.items()}

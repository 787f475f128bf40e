"""Result storage: Parquet files under a local path or any pyarrow.fs URI (s3://...).

Layout: ``<root>/workload=<w>/policy=<p>/part-<batch>.parquet``.  Each file is written
under a temporary name in the same directory and then moved into place, so a file that
exists is complete.  Partition values are sanitised so no config value can escape root.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from simcore.activity import COLUMNS as ACTIVITY_COLUMNS
from simcore.slab import CACHES

PARTITIONS = ("workload", "policy")
INT_METRICS = (*CACHES, *(f"{c}_peak" for c in CACHES), "folios", "processes",
               "anon_vma_root_lock_write", "rmap_walks", "rmap_avcs_visited", "rmap_vmas_visited",
               "rmap_vmas_not_mapping", "rmap_root_lock_read", "rmap_lockless_walks",
               "lazy_upgrades", "lazy_upgrade_folios", "lazy_upgrade_ptes",
               "lazy_repointed_folios", "lazy_pinned_vmas", *ACTIVITY_COLUMNS, "forks")
FLOAT_METRICS = (*(f"{c}_kb" for c in CACHES), *(f"{c}_slab_kb" for c in CACHES),
                 "fork_ns_predicted")


def policy_metrics() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns registered policies declare beyond the kernel caches: per policy cache
    live/peak counts and KB, walk counters (rmap_<name>) and stats() keys; -> (ints, floats)."""
    from simcore import registry
    from simcore.policy import make_policy
    ints: dict[str, None] = {}
    floats: dict[str, None] = {}
    for name in registry.names("policy"):
        policy = make_policy(name)
        for cache in policy.caches:
            ints.update({cache.name: None, f"{cache.name}_peak": None})
            floats.update({f"{cache.name}_kb": None, f"{cache.name}_slab_kb": None})
        ints.update({f"rmap_{k}": None for k in policy.walk_counters})
        ints.update(dict.fromkeys(policy.stats()))
    return (tuple(k for k in ints if k not in INT_METRICS),
            tuple(k for k in floats if k not in FLOAT_METRICS))


_POLICY_INTS, _POLICY_FLOATS = policy_metrics()
INT_METRICS = INT_METRICS[:-1] + _POLICY_INTS + INT_METRICS[-1:]      # "forks" stays last
FLOAT_METRICS += _POLICY_FLOATS
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


def result_schema(params: dict[str, type]) -> pa.Schema:
    """The one fixed schema of a sweep: ids, axes, status, then metrics."""
    arrow = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    cols = [("cell_id", pa.string()), ("code_fingerprint", pa.string()),
            ("sweep", pa.string()), ("workload", pa.string()),
            ("arch", pa.string()), ("policy", pa.string()), ("variant", pa.string()),
            ("seed", pa.int64())]
    cols += [(name, arrow[typ]) for name, typ in params.items()]
    cols += [("status", pa.string()), ("error", pa.string()), ("traceback", pa.string()),
             ("wall_s", pa.float64())]
    cols += [(m, pa.int64()) for m in INT_METRICS] + [(m, pa.float64()) for m in FLOAT_METRICS]
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

    def rows(self) -> Iterator[tuple[str, str, str, str, float]]:
        """(cell_id, status, fingerprint, file, file mtime) of every row written so far;
        rows written before fingerprints existed have fingerprint ''.  Damaged files are
        moved aside (see sound_tables) and their cells count as missing."""
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
            fps = (table["code_fingerprint"].to_pylist() if "code_fingerprint" in names
                   else [""] * table.num_rows)
            mtime = info.mtime.timestamp() if info.mtime else 0.0
            for cid, status, fp in zip(table["cell_id"].to_pylist(), table["status"].to_pylist(),
                                       fps):
                yield cid, status, fp or "", info.path, mtime

    def scan(self, fingerprint: str = "") -> dict[str, CellRow]:
        """cell_id -> the row that stands for the cell: of several rows (an interrupted
        rerun), the one computed by `fingerprint`, then ok over failed, then the newest."""
        best: dict[str, tuple] = {}
        for cid, status, fp, path, mtime in self.rows():
            rank = (fp == fingerprint, status == "ok", mtime, path)
            if cid not in best or rank > best[cid][0]:
                best[cid] = (rank, CellRow(status, path, fp))
        return {cid: row for cid, (_, row) in best.items()}

    def supersede(self, fingerprint: str) -> int:
        """Keep one row per cell, the one scan() picks; rewrite the files that hold the
        others without them (a stale or failed row replaced by a rerun). -> rows dropped."""
        import pyarrow.compute as pc
        keep = self.scan(fingerprint)
        losers: dict[str, set[str]] = {}
        for cid, _, _, path, _ in self.rows():
            if keep[cid].file != path:
                losers.setdefault(path, set()).add(cid)
        dropped = 0
        for path, ids in sorted(losers.items()):
            try:
                table = self.read(path)
            except READ_ERRORS as exc:
                self._damaged(path, exc)
                continue
            kept = table.filter(pc.invert(pc.is_in(table["cell_id"],
                                                   pa.array(sorted(ids), pa.string()))))
            dropped += table.num_rows - kept.num_rows
            if kept.num_rows == 0:
                self.fs.delete_file(path)
                continue
            tmp = path.rsplit("/", 1)[0] + f"/.tmp-rewrite-{uuid.uuid4().hex}.parquet"
            pq.write_table(kept, tmp, filesystem=self.fs, compression="zstd",
                           write_page_checksum=True)
            self.fs.move(tmp, path)
        return dropped

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
            pq.write_table(table.take(rows), tmp, filesystem=self.fs, compression="zstd",
                           write_page_checksum=True)
            self.fs.move(tmp, final)
            paths.append(final)
        return paths


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

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

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from simcore.slab import CACHES

PARTITIONS = ("workload", "policy")
INT_METRICS = (*CACHES, *(f"{c}_peak" for c in CACHES), "folios", "processes",
               "anon_vma_root_lock_write", "rmap_walks", "rmap_avcs_visited", "rmap_vmas_visited",
               "rmap_vmas_not_mapping", "rmap_root_lock_read", "rmap_lockless_walks",
               "lazy_upgrades", "lazy_upgrade_folios", "lazy_upgrade_ptes",
               "lazy_repointed_folios", "lazy_pinned_vmas", "forks")
FLOAT_METRICS = (*(f"{c}_kb" for c in CACHES), *(f"{c}_slab_kb" for c in CACHES),
                 "fork_ns_predicted")


def policy_metrics() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns registered policies declare beyond the kernel caches: per policy cache
    live/peak counts and KB, walk counters (rmap_<name>) and stats() keys; -> (ints, floats)."""
    from simcore.policy import POLICIES
    ints: dict[str, None] = {}
    floats: dict[str, None] = {}
    for cls in POLICIES.values():
        policy = cls()
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


def safe_name(value: object) -> str:
    """A path component derived from a config value: no separators, no leading dot."""
    text = _SAFE.sub("_", str(value)) or "_"
    return "_" + text if text.startswith(".") else text


def result_schema(params: dict[str, type]) -> pa.Schema:
    """The one fixed schema of a sweep: ids, axes, status, then metrics."""
    arrow = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    cols = [("cell_id", pa.string()), ("sweep", pa.string()), ("workload", pa.string()),
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

    def _files(self) -> list[pafs.FileInfo]:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return []
        sel = pafs.FileSelector(self.root, recursive=True)
        return [f for f in self.fs.get_file_info(sel)
                if f.type == pafs.FileType.File and f.base_name.endswith(".parquet")]

    def parquet_files(self) -> list[str]:
        return sorted(f.path for f in self._files() if not f.base_name.startswith(".tmp-"))

    def clean_temporaries(self) -> int:
        """Remove half-written files of an interrupted run."""
        tmp = [f.path for f in self._files() if f.base_name.startswith(".tmp-")]
        for path in tmp:
            self.fs.delete_file(path)
        return len(tmp)

    def scan(self) -> dict[str, tuple[str, str]]:
        """cell_id -> (status, file) of every row written so far."""
        out: dict[str, tuple[str, str]] = {}
        for path in self.parquet_files():
            table = pq.read_table(path, columns=["cell_id", "status"], filesystem=self.fs)
            for cid, status in zip(table["cell_id"].to_pylist(), table["status"].to_pylist()):
                if out.get(cid, ("",))[0] != "ok":
                    out[cid] = (status, path)
        return out

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
            pq.write_table(table.take(rows), tmp, filesystem=self.fs, compression="zstd")
            self.fs.move(tmp, final)
            paths.append(final)
        return paths

    def drop_failed(self, cell_ids: set[str], files: set[str]) -> None:
        """Rewrite files without the failed rows of cell_ids (superseded by a rerun)."""
        import pyarrow.compute as pc
        for path in sorted(files):
            if not self.fs.get_file_info(path).is_file:
                continue
            table = pq.read_table(path, filesystem=self.fs)
            stale = pc.and_(pc.is_in(table["cell_id"], pa.array(sorted(cell_ids))),
                            pc.not_equal(table["status"], "ok"))
            keep = pc.invert(stale)
            kept = table.filter(keep)
            if kept.num_rows == table.num_rows:
                continue
            if kept.num_rows == 0:
                self.fs.delete_file(path)
                continue
            tmp = path.rsplit("/", 1)[0] + f"/.tmp-rewrite-{uuid.uuid4().hex}.parquet"
            pq.write_table(kept, tmp, filesystem=self.fs, compression="zstd")
            self.fs.move(tmp, path)


def read_meta(store: Store, path: str) -> dict[str, str]:
    meta = pq.read_schema(path, filesystem=store.fs).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"sweep.")}


def json_meta(**items: object) -> dict[str, str]:
    return {f"sweep.{k}": v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in items.items()}

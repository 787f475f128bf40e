"""sweep.store.Store, one scenario per behaviour, counts after every step.

Layout of a result directory (``<root>/workload=<w>/policy=<p>/part-<batch>.parquet``)::

    root/
      workload=random/policy=eager/part-b0.parquet    rows of batch b0 with policy eager
      workload=random/policy=lazy/part-b0.parquet     rows of batch b0 with policy lazy
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sweep.store import Store


def rows(*cells: tuple[str, str, str], fp: str = "f1") -> pa.Table:
    """(cell_id, policy, status) rows of one batch, computed by code fingerprint fp."""
    return pa.table({"cell_id": [c for c, _, _ in cells], "code_fingerprint": [fp] * len(cells),
                     "workload": ["random"] * len(cells),
                     "policy": [p for _, p, _ in cells], "status": [s for _, _, s in cells]})


def statuses(store: Store, fp: str = "f1") -> dict[str, str]:
    return {c: row.status for c, row in store.scan(fp).items()}


def names(store: Store) -> list[str]:
    return [str(Path(p).relative_to(store.root)) for p in store.parquet_files()]


def test_write_one_file_per_partition_atomically(tmp_path: Path) -> None:
    """
    batch b0: c1 eager ok, c2 lazy ok, c3 eager ok

        workload=random/policy=eager/part-b0   c1 c3
        workload=random/policy=lazy/part-b0    c2
    """
    store = Store(str(tmp_path / "r"))
    assert store.parquet_files() == [] and store.scan() == {}      # nothing yet, no directory

    paths = store.write(rows(("c1", "eager", "ok"), ("c2", "lazy", "ok"), ("c3", "eager", "ok")),
                        "b0", {"sweep.k": "v"})
    assert len(paths) == 2
    assert names(store) == ["workload=random/policy=eager/part-b0.parquet",
                            "workload=random/policy=lazy/part-b0.parquet"]
    assert [p.name for p in (tmp_path / "r").rglob("*") if p.name.startswith(".tmp-")] == []
    assert pq.read_table(paths[0])["cell_id"].to_pylist() == ["c1", "c3"]
    assert pq.read_schema(paths[0]).metadata[b"sweep.k"] == b"v"

    # the same batch written again replaces its files: still 2 files, 3 rows
    store.write(rows(("c1", "eager", "ok"), ("c2", "lazy", "ok"), ("c3", "eager", "ok")), "b0", {})
    assert len(store.parquet_files()) == 2 and len(store.scan()) == 3


def test_a_half_written_temporary_is_not_a_result(tmp_path: Path) -> None:
    """
    policy=eager/part-b0           c1 ok
    policy=eager/.tmp-b1-xxxx      c2 ok   (a writer killed before its rename)
    """
    store = Store(str(tmp_path / "r"))
    (path,) = store.write(rows(("c1", "eager", "ok")), "b0", {})
    pq.write_table(rows(("c2", "eager", "ok")), Path(path).with_name(".tmp-b1-dead.parquet"))
    assert len(store.parquet_files()) == 1
    assert set(store.scan()) == {"c1"}


def test_scan_prefers_an_ok_row_to_a_failed_one(tmp_path: Path) -> None:
    """
    part-b0   c1 failed  c2 ok
    part-b1   c1 ok                       (c1 rerun)
    part-b2   c2 failed                   (a failed row after an ok one)
    """
    store = Store(str(tmp_path / "r"))
    store.write(rows(("c1", "eager", "failed"), ("c2", "eager", "ok")), "b0", {})
    scan = store.scan("f1")
    assert statuses(store) == {"c1": "failed", "c2": "ok"}
    assert scan["c1"].file.endswith("part-b0.parquet") and scan["c1"].fingerprint == "f1"

    store.write(rows(("c1", "eager", "ok")), "b1", {})
    assert statuses(store) == {"c1": "ok", "c2": "ok"}
    assert store.scan("f1")["c1"].file.endswith("part-b1.parquet")

    store.write(rows(("c2", "eager", "failed")), "b2", {})
    assert statuses(store) == {"c1": "ok", "c2": "ok"}
    assert len(store.parquet_files()) == 3


def test_scan_prefers_the_current_fingerprint(tmp_path: Path) -> None:
    """
    part-b0   c1 ok (code f0)
    part-b1   c1 failed (code f1)         (recomputed by new code, failed)
    """
    store = Store(str(tmp_path / "r"))
    store.write(rows(("c1", "eager", "ok"), fp="f0"), "b0", {})
    store.write(rows(("c1", "eager", "failed"), fp="f1"), "b1", {})
    assert statuses(store, "f0") == {"c1": "ok"}
    assert statuses(store, "f1") == {"c1": "failed"}      # a stale ok row does not win


def test_supersede_keeps_one_row_per_cell(tmp_path: Path) -> None:
    """
    part-b0   c1 failed  c2 ok     -> c2 ok            (rewritten)
    part-b1   c3 failed (f0)       -> deleted          (no row left)
    part-b2   c1 ok  c3 ok         -> unchanged        (the rows scan() picks)
    part-b3   c4 failed            -> unchanged        (its only row)
    """
    store = Store(str(tmp_path / "r"))
    (b0,) = store.write(rows(("c1", "eager", "failed"), ("c2", "eager", "ok")), "b0", {})
    (b1,) = store.write(rows(("c3", "eager", "failed"), fp="f0"), "b1", {})
    (b2,) = store.write(rows(("c1", "eager", "ok"), ("c3", "eager", "ok")), "b2", {})
    (b3,) = store.write(rows(("c4", "eager", "failed")), "b3", {})
    assert len(store.parquet_files()) == 4 and len(store.scan("f1")) == 4

    assert store.supersede("f1") == 2                                    # c1 in b0, c3 in b1
    assert store.parquet_files() == [b0, b2, b3]
    assert pq.read_table(b0)["cell_id"].to_pylist() == ["c2"]          # the ok row of c2 stays
    assert statuses(store) == {"c1": "ok", "c2": "ok", "c3": "ok", "c4": "failed"}
    assert store.supersede("f1") == 0                                    # nothing more to drop
    assert store.parquet_files() == [b0, b2, b3]


def test_a_foreign_parquet_file_is_skipped_not_read_as_rows(tmp_path: Path) -> None:
    """
    workload=random/policy=eager/part-b0   c1 ok
    notes.parquet                          a user's own table (no cell_id, no status)
    """
    store = Store(str(tmp_path / "r"))
    store.write(rows(("c1", "eager", "ok")), "b0", {})
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "r" / "notes.parquet")
    assert statuses(store) == {"c1": "ok"}
    assert store.skipped == [("notes.parquet", "not a result file")]
    assert (tmp_path / "r" / "notes.parquet").exists()          # left where it is


def test_index_holds_the_standing_row_of_each_cell(tmp_path: Path) -> None:
    """
    part-b0   c1 failed  c2 ok           (f1)
    part-b1   c3 ok                      (f0: stale)
    part-b2   c1 ok                      (f1)     c1 stands as ok; one extra row (b0's c1)
    """
    store = Store(str(tmp_path / "r"))
    assert len(store.index("f1")) == 0
    store.write(rows(("c1", "eager", "failed"), ("c2", "eager", "ok")), "b0", {})
    store.write(rows(("c3", "eager", "ok"), fp="f0"), "b1", {})
    store.write(rows(("c1", "eager", "ok")), "b2", {})
    index = store.index("f1")
    assert len(index) == 3 and index.extra_rows == 1
    found, ok, current = index.lookup(["c1", "c2", "c3", "c4", "c1x"])
    assert found.tolist() == [True, True, True, False, False]
    assert ok.tolist() == [True, True, True, False, False]
    assert current.tolist() == [True, True, False, False, False]


def test_each_file_footer_counts_its_rows_and_status_reads_only_footers(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """
    part-b0   c1 failed  c2 ok   (eager)        footer: eager failed 1, eager ok 1
    part-b1   c3 ok              (lazy)         footer: lazy ok 1
    then c1 recomputed (ok) while the pending mark is up: cells come from the rows
    """
    from sweep.status import summarize
    from sweep.store import COUNTS_KEY
    store = Store(str(tmp_path / "r"))
    (b0,) = store.write(rows(("c1", "eager", "failed"), ("c2", "eager", "ok")), "b0", {})
    store.write(rows(("c3", "lazy", "ok")), "b1", {})
    counts = pq.read_metadata(b0).metadata[COUNTS_KEY.encode()]
    assert counts == b'[["random", "eager", "failed", "f1", 1], ["random", "eager", "ok", "f1", 1]]'

    def no_rows(*args, **kwargs):
        raise AssertionError("status read rows")
    with monkeypatch.context() as m:
        m.setattr(Store, "read", no_rows)
        s = summarize(store)
    assert (s.cells, len(s.files), s.from_rows) == (3, 2, False)
    assert s.by == {("random", "eager"): (1, 1), ("random", "lazy"): (1, 0)}
    assert s.per_fp == {"f1": 3}

    store.mark_pending()
    store.write(rows(("c1", "eager", "ok")), "b2", {})
    s = summarize(store)
    assert (s.cells, s.from_rows) == (3, True) and s.by[("random", "eager")] == (2, 0)
    assert store.supersede("f1") == 1
    store.clear_pending()
    s = summarize(store)                      # the rewritten b0 has its counts updated
    assert (s.cells, s.from_rows) == (3, False) and s.by[("random", "eager")] == (2, 0)


def test_status_counts_a_file_written_before_footer_counts_from_its_rows(tmp_path: Path) -> None:
    """
    workload=random/policy=eager/part-old   c1 ok  c2 failed   (no sweep.row_counts)
    notes.parquet                           a user's own table: not counted
    """
    from sweep.status import summarize
    folder = tmp_path / "r" / "workload=random" / "policy=eager"
    folder.mkdir(parents=True)
    pq.write_table(rows(("c1", "eager", "ok"), ("c2", "eager", "failed")),
                   folder / "part-old.parquet")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "r" / "notes.parquet")
    s = summarize(Store(str(tmp_path / "r")))
    assert (s.cells, len(s.files), s.from_rows) == (2, 1, False)
    assert s.by == {("random", "eager"): (1, 1)} and s.per_fp == {"f1": 2}

"""Run cells: the simulator call for one cell, Ray worker actors, and the driver loop.

Data flows one way: cells (axis points) -> actors (resolve, simulate) -> Parquet rows
written by the actors themselves -> a small summary back to the driver.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from simcore import registry
from simcore.fork import fork_metrics
from simcore.registry import GROUPS
from simcore.slab import CACHES, PolicyCache
from simcore.timemodel import fork_cost, time_metrics

from .config import Grid
from .fingerprint import fingerprint
from .grid import axes_json, resolve_point
from .workermem import CellMemory
from .store import LIST_METRICS, CellIndex, Store, json_meta, metric_columns, result_schema

TRACEBACK_CHARS = 20000        # the end of a failed cell's traceback kept in its row
MAX_BATCH = 10000              # cells per automatic batch at most (one Parquet file each)
FAILURES_KEPT = 1000           # failed cells the driver keeps and logs one by one
WALK_KEYS = ("walks", "avcs_visited", "vmas_visited", "vmas_not_mapping", "root_lock_read",
             "lockless_walks")        # rmap_ptes and per-kind walks: simcore.timemodel


# ---- one cell ------------------------------------------------------------------
def workload_ops(cfg: dict) -> Iterable:
    """The operations of a cell's workload: its registered generator(schema(**node), seed).
    The sweep's plugins are imported first, so that any process (a Ray worker, a fresh
    interpreter) finds the workloads they register; a plugin that fails to import makes
    a failed row that says why."""
    registry.load_plugins((cfg.get("sweep") or {}).get("plugins") or [])
    w = cfg["workload"]
    entry = registry.lookup("workload", w["name"])
    return entry.make(entry.schema(**w), int(cfg["seed"]))


def simulate_cell(cfg: dict, sample_every: int = 0) -> dict[str, Any]:
    """Run one resolved cell config; -> its metric columns."""
    from simcore.machine import Machine
    from simcore.policy import make_policy
    from simcore import activity
    tally = activity.OpTally()
    ops = tally.wrap(workload_ops(cfg))
    m = Machine(make_policy(cfg["policy"]["name"], **cfg["policy"].get("variant", {})),
                pmd_pages=int(cfg["arch"]["pmd_pages"]), swap=bool(cfg["arch"].get("swap")))
    m.locks.set_weights(cfg["arch"])          # per-root lock hold ns with this profile's costs
    series: list[list[int]] = [[], [], []]
    import gc
    was_on = gc.isenabled()
    gc.disable()           # the model frees by refcount; cyclic GC passes over ~10^6 objects cost
    try:
        if sample_every:   # the live objects after every sample_every-th op: run in chunks
            ops = iter(ops)
            while True:
                before = m.ops_done
                m.run(itertools.islice(ops, sample_every))
                if m.ops_done - before < sample_every:
                    break
                for i in range(3):
                    series[i].append(m.slab.live[i])
        else:
            m.run(ops)
        counts = m.counts()
        counts.update(activity.counts(m, tally))             # merges, munmaps, exits, compactions
        ints, floats = metric_columns(plugins_of(cfg))
        out: dict[str, Any] = {k: int(counts.get(k, 0)) for k in ints if k != "forks"}
        out.update(dict.fromkeys(floats, 0.0))      # other policies' caches: 0 KB, not null
        for key in WALK_KEYS:
            out[f"rmap_{key}"] = sum(getattr(c, key) for c in m.walk_costs.values())
        for key in m.policy.walk_counters:
            out[f"rmap_{key}"] = sum(c.extra[key] for c in m.walk_costs.values())
        out.update(slab_metrics(counts, cfg["arch"], cfg["policy"]["name"], m.policy.caches))
        fork_ns = fork_cost(m.forks, cfg["arch"])
        out.update(forks=len(fork_ns), fork_ns_predicted=float(sum(fork_ns)), fork_ns=fork_ns)
        out.update(fork_metrics(m.forks, m.policy.fork_counters))
        out.update(time_metrics(m, cfg["arch"]))
        for i, cache in enumerate(CACHES):
            out[f"{cache}_series"] = series[i]
        m.release()          # break the model's cycles: freed now (sweep.workermem trims the heap)
    finally:
        # after release(): the run's objects are freed already; re-enabled before it, the
        # first collection would scan them all (~0.4 s per android cell)
        if was_on:
            gc.enable()
    return out


def slab_metrics(counts: dict, arch: dict, policy: str,
                 caches: tuple[PolicyCache, ...] = ()) -> dict[str, float]:
    """Active KB (objects x object size, as slabtop) and slab KB (whole slabs) per cache;
    a policy's own caches get their per-arch size and order-0 slabs."""
    out = {}
    page = int(arch["page_size"])
    for cache in caches:
        size, live = cache.size(arch), int(counts[cache.name])
        out[f"{cache.name}_kb"] = live * size / 1024
        out[f"{cache.name}_slab_kb"] = (math.ceil(live / max(1, page // size)) * page / 1024
                                        if size and cache.slab else live * size / 1024)
    for cache in CACHES:
        size = int(arch[cache])
        per_slab = int(arch[f"{cache}_per_slab"])
        slab_bytes = int(arch[f"{cache}_slab_pages"]) * int(arch["page_size"])
        if cache == "vm_area_struct" and policy == "lazy" and arch.get("lazy_vma_extra"):
            size += int(arch["lazy_vma_extra"])      # vm_rcuref (patch 06)
            per_slab = max(1, slab_bytes // size)
        live = int(counts[cache])
        out[f"{cache}_kb"] = live * size / 1024
        out[f"{cache}_slab_kb"] = math.ceil(live / per_slab) * slab_bytes / 1024
    return out


def row_head(cfg: dict, cell: dict, params: dict[str, type], sweep: str,
             code_fingerprint: str) -> dict[str, Any]:
    """The identifying columns of a cell's row (and the fingerprint of the code that made it)."""
    variant = cfg["policy"].get("variant") or {}
    row: dict[str, Any] = {
        "cell_id": cell["id"], "code_fingerprint": code_fingerprint, "sweep": sweep,
        "workload": cfg["workload"]["name"],
        "arch": cfg["arch"]["name"], "policy": cfg["policy"]["name"],
        "variant": ",".join(f"{k}={v}" for k, v in sorted(variant.items())),
        "seed": int(cfg.get("seed", 0)), "status": "ok", "error": "", "traceback": "",
        "wall_s": 0.0, "worker_peak_rss_kb": 0, "worker_rss_kb": 0}
    row.update({name: cell["point"].get(name) for name in params})   # None: a point's unset key
    return row


def plugins_of(cfg: dict) -> tuple[str, ...]:
    """A config's sweep.plugins (the modules whose policies' metrics are columns)."""
    return tuple((cfg.get("sweep") or {}).get("plugins") or ())


def zero_metrics(plugins: tuple[str, ...] = ()) -> dict[str, Any]:
    ints, floats = metric_columns(plugins)
    return {**{m: 0 for m in ints}, **{m: 0.0 for m in floats}, **{m: [] for m in LIST_METRICS}}


def run_cell(base: dict, options: dict, cell: dict, params: dict[str, type],
             sweep: str, code_fingerprint: str = "") -> dict[str, Any]:
    """One row: ids, axis values, status, wall time and metrics (zeros when failed)."""
    cfg = resolve_point(base, options, cell["point"])
    row = row_head(cfg, cell, params, sweep, code_fingerprint)
    t0 = time.perf_counter()
    with CellMemory() as mem:
        try:
            row.update(simulate_cell(cfg, int(cfg["sweep"].get("sample_every", 0))))
        except Exception as exc:  # noqa: BLE001 - a simulator exception becomes a failed row
            row.update(zero_metrics(plugins_of(cfg)))
            row["status"] = "failed"
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            row["traceback"] = traceback.format_exc()[-TRACEBACK_CHARS:]
    row["wall_s"] = time.perf_counter() - t0
    row["worker_peak_rss_kb"], row["worker_rss_kb"] = mem.peak_kb, mem.after_kb
    return row


def run_batch(base: dict, options: dict, cells: list[dict], params: dict[str, type],
              sweep: str, store: Store, batch: str, meta: dict[str, str]) -> dict:
    """Run cells and write their rows; -> a small summary for the driver."""
    t0 = time.perf_counter()
    fp = meta.get("sweep.code_fingerprint", "")
    rows = [run_cell(base, options, c, params, sweep, fp) for c in cells]
    schema = result_schema(params, plugins_of(base))
    table = pa.Table.from_pylist(rows, schema=schema)
    import socket
    paths = store.write(table, batch, {**meta, "sweep.host": socket.gethostname()})
    failures = [(r["cell_id"], last_line(r["error"])) for r in rows if r["status"] != "ok"]
    return {"batch": batch, "ok": len(rows) - len(failures), "failed": len(failures),
            "failures": failures, "files": paths, "wall_s": time.perf_counter() - t0,
            "rss_kb": rows[-1]["worker_rss_kb"] if rows else 0}


def last_line(text: str) -> str:
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


# ---- the Ray side ---------------------------------------------------------------
def init_local_ray(num_cpus: int | None = None) -> None:
    """A new Ray on this machine only: loopback, no dashboard, and never a cluster that a
    `ray start` left running (plain ray.init() would join that one)."""
    import ray
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)


def _worker_class():
    import ray

    # No restarts by Ray: a worker that dies is replaced by the driver (WorkerPool), which
    # gives the new one work only once it has answered ready().
    @ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
    class SimWorker:
        """A long-lived simulator process: receives batches of cells."""

        def __init__(self, uri: str) -> None:
            self.store = Store(uri)

        def run(self, setup: tuple, cells: list[dict], batch: str) -> dict:
            base, options, params, sweep, meta = setup
            return run_batch(base, options, cells, params, sweep, self.store, batch, meta)

        def ready(self) -> int:
            return os.getpid()

    return SimWorker


class NoWorkers(RuntimeError):
    """Every worker slot failed to start an actor more than max_retries times in a row."""


class WorkerPool:
    """The sweep's worker actors, one per slot.

    A slot's actor is given work only after its ready() call has returned (the event that
    it is alive and placed on a live node).  An actor that loses a batch (its process died,
    or its node is gone) is killed and a fresh actor is started in its slot, wherever Ray
    finds a CPU; until that one answers ready(), the other slots carry the work.  So a
    lost batch is never resubmitted to a dying process, a restarting one, or one waiting
    for resources on a node that no longer exists."""

    def __init__(self, worker: Any, uri: str, n: int, max_starts: int) -> None:
        self.worker, self.uri, self.max_starts = worker, uri, max_starts
        self.actors: list = [None] * n
        self.failed_starts = [0] * n
        self.starting: dict = {}          # ready() ref -> slot
        self.idle: list[int] = []
        self.cells = [0] * n              # cells the slot's current actor has run
        for slot in range(n):
            self._start(slot)

    def _start(self, slot: int) -> None:
        self.cells[slot] = 0
        actor = self.worker.remote(self.uri)
        self.actors[slot] = actor
        self.starting[actor.ready.remote()] = slot

    def replace(self, slot: int) -> None:
        """End the slot's actor (it lost a batch, or is worn) and start a fresh one."""
        import ray
        ray.kill(self.actors[slot], no_restart=True)
        self._start(slot)

    def worn(self, slot: int, cells: int, rss_kb: int, max_cells: int, max_rss_mb: int) -> str:
        """The slot's actor returned a batch of `cells`: -> why it should be replaced by a
        fresh process ('' if not): it ran max_cells cells, or its RSS after the batch is
        above max_rss_mb (memory a long-lived process does not give back)."""
        self.cells[slot] += cells
        if max_cells and self.cells[slot] >= max_cells:
            return f"ran {self.cells[slot]} cells (sweep.worker_max_cells {max_cells})"
        if max_rss_mb and rss_kb > max_rss_mb * 1024:
            return (f"RSS {rss_kb // 1024} MB after its batch "
                    f"(sweep.worker_max_rss_mb {max_rss_mb})")
        return ""

    def started(self, ref: Any) -> str:
        """A ready() call returned (or failed): -> a log line when the start failed."""
        import ray
        from ray.exceptions import RayActorError
        slot = self.starting.pop(ref)
        try:
            ray.get(ref)
        except RayActorError as exc:
            self.failed_starts[slot] += 1
            if self.failed_starts[slot] <= self.max_starts:
                self._start(slot)
                return f"worker {slot} failed to start ({type(exc).__name__}): starting another"
            self.actors[slot] = None
            if all(actor is None for actor in self.actors):
                raise NoWorkers(f"no worker could start: {type(exc).__name__}: {exc}") from exc
            return f"worker {slot} failed to start {self.failed_starts[slot]} times: slot dropped"
        self.failed_starts[slot] = 0
        self.idle.append(slot)
        return ""

    def kill_all(self) -> None:
        import ray
        for actor in self.actors:
            if actor is not None:
                ray.kill(actor, no_restart=True)


def param_types(grid: Grid) -> dict[str, type]:
    """Typed columns for every swept parameter (group axes and seed have their own)."""
    out = {}
    columns = dict(grid.axes)
    for point in grid.points:                       # explicit points: the values they set
        for key, value in point.items():
            columns.setdefault(key, [])
            if key not in grid.axes:
                columns[key].append(value)
    for key, values in columns.items():
        if key in GROUPS or key == "seed":
            continue
        kinds = {int} if isinstance(values, range) else {type(v) for v in values}
        if kinds <= {int, bool} and len(kinds) > 1 or kinds <= {int, float} and len(kinds) > 1:
            out[key] = float if float in kinds else int
        elif len(kinds) == 1 and kinds <= {int, float, bool, str}:
            out[key] = kinds.pop()
        else:
            out[key] = str
    return out


@dataclass
class Progress:
    """Counters the driver updates; a renderer (rich) reads them."""
    total: int = 0
    cached: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    retried: int = 0
    recycled: int = 0               # workers replaced by fresh ones (worker_max_cells/_rss_mb)
    stale: int = 0                  # cells whose row came from other code (recomputed or kept)
    stale_kept: int = 0             # of which kept on purpose (--keep-stale)
    started: float = field(default_factory=time.perf_counter)
    failures: list = field(default_factory=list)      # {"id", "point", "error"} per failed cell
    quarantined: list = field(default_factory=list)   # (file, error) of damaged files moved aside


def provenance(grid: Grid, code_fingerprint: str) -> dict[str, str]:
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version
    import ray
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", root, "status", "--porcelain"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    packages = {}
    for name in ("anonsim", "numpy", "pyarrow", "ray", "hydra-core", "omegaconf", "polars"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = ""
    config = {"base": grid.base, "axes": axes_json(grid.axes), "zip": grid.zips,
              "exclude": grid.exclude, "points": grid.points}
    from .fingerprint import code_digest, metric_set
    return json_meta(resolved_config=config, git_commit=commit, git_dirty=dirty,
                     packages=packages, driver_host=platform.node(), ray_version=ray.__version__,
                     code_fingerprint=code_fingerprint, code_digest=code_digest(),
                     metric_set=metric_set(grid.base["sweep"]), name=grid.name)


class Batcher:
    """Cuts the remaining cells (a stream of `total` cells) into batches that each run about
    `target_s` seconds.

    Cell cost is learned from finished batches (the first round sends single cells), so
    fast cells travel in large batches and slow ones in small batches that balance well."""

    def __init__(self, cells: Iterable[dict], total: int, workers: int, fixed: int = 0,
                 target_s: float = 1.0) -> None:
        self.cells, self.left, self.workers, self.fixed = iter(cells), total, workers, fixed
        self.target_s, self.cell_s = target_s, None

    def remaining(self) -> int:
        return self.left

    def learn(self, n: int, wall_s: float) -> None:
        per = wall_s / max(n, 1)
        self.cell_s = per if self.cell_s is None else 0.7 * self.cell_s + 0.3 * per

    def size(self) -> int:
        if self.fixed:
            return self.fixed
        if self.cell_s is None:
            return 1
        by_time = math.ceil(self.target_s / max(self.cell_s, 1e-6))
        by_balance = math.ceil(self.remaining() / (4 * self.workers))
        return max(1, min(MAX_BATCH, by_time, by_balance))

    def take(self) -> list[dict]:
        batch = list(itertools.islice(self.cells, self.size()))
        self.left = self.left - len(batch) if batch else 0
        return batch


PLAN_CHUNK = 4096              # cells looked up in the store's index at a time


@dataclass
class Plan:
    """What a launch has to do, decided from the grid and the store alone (no Ray): the
    cells with no row, with a failed row (under retry_failed), or with a row whose code
    fingerprint is not the current one (stale, unless keep_stale)."""
    grid: Grid
    store: Store
    fingerprint: str
    index: CellIndex = field(repr=False)
    retry_failed: bool = False
    keep_stale: bool = False
    todo: int = 0
    stale: int = 0                  # stale cells to recompute (or kept, under keep_stale)
    rerun: int = 0                  # cells to compute that have a row (superseded at the end)

    def needs(self, cells: list[dict]) -> tuple[Any, Any, Any]:
        """-> (must run, has a row, has a stale row) per cell, as boolean arrays."""
        found, ok, current = self.index.lookup([c["id"] for c in cells])
        stale = found & ~current
        need = ~found | (stale & (not self.keep_stale)) | (current & ~ok & self.retry_failed)
        return need, found, stale

    def cells(self) -> Iterator[dict]:
        """The cells to compute, streamed in grid order (workload and policy outermost)."""
        if not len(self.index):
            return iter(self.grid.cells)
        return (cell for chunk in _chunks(self.grid.cells, PLAN_CHUNK)
                for cell, need in zip(chunk, self.needs(chunk)[0]) if need)

    @property
    def must_supersede(self) -> bool:
        """Will (or may) the store hold two rows of one cell after this launch?"""
        return bool(self.rerun or self.index.extra_rows or self.store.is_pending())


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def plan(grid: Grid, out: str, *, retry_failed: bool = False,
         keep_stale: bool = False) -> Plan:
    """Read the store's index once (damaged files are moved aside) and stream the grid
    once against it (not at all when the store holds no row): which cells must run, how
    many are stale."""
    from .grid import InputDigests
    grid.inputs = InputDigests()               # input files hashed afresh, once per launch
    store = Store(out)
    store.clean_temporaries()
    fp = fingerprint(grid.base["sweep"])
    p = Plan(grid, store, fp, store.index(fp), retry_failed, keep_stale)
    if not len(p.index):
        p.todo = len(grid.cells)
        return p
    for chunk in _chunks(grid.cells, PLAN_CHUNK):
        need, found, stale = p.needs(chunk)
        p.stale += int(stale.sum())
        p.todo += int(need.sum())
        p.rerun += int((need & found).sum())
    return p


def launch(grid: Grid, out: str, *, retry_failed: bool = False, keep_stale: bool = False,
           workers: int | None = None, on_progress: Callable[[Progress], None] | None = None,
           todo: Plan | None = None, log: Callable[[str], None] | None = None) -> Progress:
    """Run every cell of grid that out does not hold yet (or holds from other code: stale).
    Ray must be initialised unless the plan has nothing to do.  log (if given) receives one
    line per event: batches done, lost and retried, failures."""
    log = log or (lambda line: None)
    todo = todo or plan(grid, out, retry_failed=retry_failed, keep_stale=keep_stale)
    store = todo.store
    prog = Progress(total=len(grid.cells), cached=len(grid.cells) - todo.todo, stale=todo.stale,
                    stale_kept=todo.stale if todo.keep_stale else 0,
                    quarantined=list(store.quarantined))
    for line in store.quarantine_notes():
        log(line)
    log(f"{todo.todo} cells to compute, {prog.cached} cached, {todo.stale} stale")
    if on_progress:
        on_progress(prog)
    if not todo.todo:
        _supersede(todo)
        return prog
    import ray
    from ray.exceptions import RayActorError, WorkerCrashedError, ObjectLostError
    if todo.rerun:
        store.mark_pending()               # until supersede: `sweep status` counts rows
    params = param_types(grid)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    batcher = Batcher(todo.cells(), todo.todo, n, int(grid.base["sweep"].get("batch_size", 0)))
    meta = provenance(grid, todo.fingerprint)
    # The grid travels with each call, as one shared object the driver holds for the
    # whole run.  An actor is given only small values (inlined in its creation task).
    setup = ray.put((grid.base, grid.options, params, grid.name, meta))
    max_retries = int(grid.base["sweep"].get("max_retries", 3))
    max_cells = int(grid.base["sweep"].get("worker_max_cells", 0))
    max_rss_mb = int(grid.base["sweep"].get("worker_max_rss_mb", 0))
    pool = WorkerPool(_worker_class(), out, n, max_retries)
    retry: list[tuple[list[dict], int]] = []          # (cells, attempts) of lost batches
    inflight: dict = {}                               # run() ref -> (cells, attempts, slot)
    try:
        while retry or batcher.remaining() or inflight:
            while pool.idle and (retry or batcher.remaining()):
                cells, tries = retry.pop(0) if retry else (batcher.take(), 0)
                if not cells:
                    break
                a = pool.idle.pop(0)
                name = hashlib.sha1("".join(c["id"] for c in cells).encode()).hexdigest()[:16]
                inflight[pool.actors[a].run.remote(setup, cells, name)] = (cells, tries, a)
                prog.running += len(cells)
            # Events only: a batch finished or was lost, or a worker answered ready().
            # (The timeout just lets on_progress tick; nothing is decided by it.)
            ready, _ = ray.wait(list(inflight) + list(pool.starting), num_returns=1,
                                timeout=0.5)
            for ref in ready:
                if ref in pool.starting:
                    line = pool.started(ref)
                    if line:
                        log(line)
                    continue
                cells, tries, a = inflight.pop(ref)
                prog.running -= len(cells)
                try:
                    result = ray.get(ref)
                except (RayActorError, WorkerCrashedError, ObjectLostError) as exc:
                    pool.replace(a)
                    prog.retried += 1
                    if tries + 1 > max_retries:
                        error, _ = _write_lost(store, grid, cells, params, meta, exc)
                        prog.failed += len(cells)
                        _note_failures(prog, cells, [(c["id"], error) for c in cells], log)
                        log(f"batch of {len(cells)} cells lost {tries + 1} times "
                            f"({type(exc).__name__}): written as failed")
                    else:
                        retry.append((cells, tries + 1))
                        log(f"batch of {len(cells)} cells lost ({type(exc).__name__}): "
                            f"retry {tries + 1} of {max_retries}")
                    continue
                worn = pool.worn(a, len(cells), result.get("rss_kb", 0), max_cells, max_rss_mb)
                if worn and (retry or batcher.remaining()):
                    pool.replace(a)            # idle, its batch written: nothing is lost
                    prog.recycled += 1
                    log(f"worker {a} replaced by a fresh process: {worn}")
                else:
                    pool.idle.append(a)
                batcher.learn(len(cells), result["wall_s"])
                prog.done += result["ok"]
                prog.failed += result["failed"]
                log(f"batch {result['batch']}: {len(cells)} cells, {result['ok']} ok, "
                    f"{result['failed']} failed, {result['wall_s']:.2f} s")
                _note_failures(prog, cells, result.get("failures", []), log)
            if on_progress:
                on_progress(prog)
    finally:
        pool.kill_all()
    _supersede(todo)                       # one row per cell: reruns replace stale/failed rows
    log(f"end: {prog.done} computed, {prog.cached} cached, {prog.failed} failed, "
        f"{prog.retried} batches retried")
    return prog


def _supersede(todo: Plan) -> None:
    """Drop the rows that no longer stand for a cell, when there can be any."""
    if todo.must_supersede:
        todo.store.supersede(todo.fingerprint)
        todo.store.clear_pending()


def _note_failures(prog: Progress, cells: list[dict], failures: list, log) -> None:
    """Keep (and log) the first FAILURES_KEPT failed cells: a grid whose million cells all
    fail must not fill the driver's memory or the launch log (the rows have them all)."""
    points = {c["id"]: c["point"] for c in cells}
    for cid, error in failures:
        if len(prog.failures) >= FAILURES_KEPT:
            return
        prog.failures.append({"id": cid, "point": points.get(cid, {}), "error": error})
        log(f"failed {cid} {' '.join(f'{k}={v}' for k, v in points.get(cid, {}).items())}: "
            f"{error}")
        if len(prog.failures) == FAILURES_KEPT:
            log(f"more than {FAILURES_KEPT} failed cells: the others are not logged (their "
                f"rows hold their errors)")


def _write_lost(store: Store, grid: Grid, cells: list[dict], params: dict, meta: dict,
                exc: Exception) -> tuple[str, list[str]]:
    """A batch whose worker kept dying: failed rows, written by the driver.
    -> the error and the files written."""
    error = f"worker died: {type(exc).__name__}"
    detail = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
    rows = []
    for cell in cells:
        row = row_head(resolve_point(grid.base, grid.options, cell["point"]), cell, params,
                       grid.name, meta.get("sweep.code_fingerprint", ""))
        row.update(zero_metrics(plugins_of(grid.base)), status="failed", error=error,
                   traceback=detail)
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=result_schema(params, plugins_of(grid.base)))
    name = hashlib.sha1("".join(c["id"] for c in cells).encode()).hexdigest()[:16]
    return error, store.write(table, name, meta)

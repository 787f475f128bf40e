"""Run cells: the simulator call for one cell, Ray worker actors, and the driver loop.

Data flows one way: cells (axis points) -> actors (resolve, simulate) -> Parquet rows
written by the actors themselves -> a small summary back to the driver.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa

from simcore.slab import CACHES, PolicyCache

from .config import GROUPS, Grid
from .grid import SIM_VERSION, resolve_point
from .store import FLOAT_METRICS, INT_METRICS, LIST_METRICS, Store, json_meta, result_schema

if TYPE_CHECKING:
    from simcore.fork import ForkRecord

WALK_KEYS = ("walks", "avcs_visited", "vmas_visited", "vmas_not_mapping", "root_lock_read",
             "lockless_walks")


# ---- one cell ------------------------------------------------------------------
def workload_ops(cfg: dict) -> list:
    """The operations of a cell's workload (registered by name)."""
    w = cfg["workload"]
    if w["name"] == "noop":
        if w.get("die_once") and not os.path.exists(w["die_once"]):
            open(w["die_once"], "w").close()
            os._exit(17)                          # test hook: this worker process dies once
        if w.get("sleep_ms"):
            end = time.perf_counter() + w["sleep_ms"] / 1000
            while time.perf_counter() < end:
                pass
        return []
    if w["name"] == "random":
        from simcore.workloads import random_trace
        return random_trace(int(cfg["seed"]), int(w["n_ops"]), forks=bool(w["forks"]))
    if w["name"] == "trace":
        from simcore import trace
        return trace.load(w["path"])
    if w["name"] == "snapshot":
        import json
        from simcore.workloads.snapshot import snapshot_ops
        with open(w["path"]) as fh:
            return snapshot_ops(json.load(fh))
    from simcore.workloads.servers import SERVER_WORKLOADS
    if w["name"] in SERVER_WORKLOADS:
        cls, gen = SERVER_WORKLOADS[w["name"]]
        return gen(cls(**w), int(cfg["seed"]))
    if w["name"] in ("android_boot", "android_apps"):
        from simcore.workloads import android
        if w["name"] == "android_boot":
            return android.android_boot(android.AndroidBoot(**w), int(cfg["seed"]))
        return android.android_apps(android.AndroidApps(**w), int(cfg["seed"]))
    raise ValueError(f"unknown workload {w['name']!r}")


def simulate_cell(cfg: dict, sample_every: int = 0) -> dict[str, Any]:
    """Run one resolved cell config; -> its metric columns."""
    from simcore.machine import Machine
    from simcore.policy import make_policy
    ops = workload_ops(cfg)
    m = Machine(make_policy(cfg["policy"]["name"], **cfg["policy"].get("variant", {})),
                pmd_pages=int(cfg["arch"]["pmd_pages"]))
    series: list[list[int]] = [[], [], []]
    if sample_every:
        def sample(machine: Machine, op: object) -> None:
            if machine.ops_done % sample_every == 0:
                for i in range(3):
                    series[i].append(machine.slab.live[i])
        m.observers.append(sample)
    import gc
    was_on = gc.isenabled()
    gc.disable()           # the model frees by refcount; cyclic GC passes over ~10^6 objects cost
    try:
        m.run(ops)
    finally:
        if was_on:
            gc.enable()
    counts = m.counts()
    out: dict[str, Any] = {k: int(counts.get(k, 0)) for k in INT_METRICS if k != "forks"}
    out.update(dict.fromkeys(FLOAT_METRICS, 0.0))      # other policies' caches: 0 KB, not null
    for key in WALK_KEYS:
        out[f"rmap_{key}"] = sum(getattr(c, key) for c in m.walk_costs.values())
    for key in m.policy.walk_counters:
        out[f"rmap_{key}"] = sum(c.extra[key] for c in m.walk_costs.values())
    out.update(slab_metrics(counts, cfg["arch"], cfg["policy"]["name"], m.policy.caches))
    fork_ns = fork_cost(m.forks, cfg["arch"])
    out.update(forks=len(fork_ns), fork_ns_predicted=float(sum(fork_ns)), fork_ns=fork_ns)
    for i, cache in enumerate(CACHES):
        out[f"{cache}_series"] = series[i]
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


def fork_cost(forks: list[ForkRecord], arch: dict) -> list[float]:
    """Predicted latency (ns) of each fork from its counts and the profile's coefficients."""
    a, vma, avc, av, pte = (float(arch[k]) for k in ("fork_a_ns", "fork_vma_ns", "fork_avc_ns",
                                                      "fork_av_ns", "fork_pte_ns"))
    return [a + vma * f.vmas + avc * f.avcs + av * f.anon_vmas + pte * (f.ptes + f.upgrade_ptes)
            for f in forks]


def row_head(cfg: dict, cell: dict, params: dict[str, type], sweep: str) -> dict[str, Any]:
    """The identifying columns of a cell's row."""
    variant = cfg["policy"].get("variant") or {}
    row: dict[str, Any] = {
        "cell_id": cell["id"], "sweep": sweep, "workload": cfg["workload"]["name"],
        "arch": cfg["arch"]["name"], "policy": cfg["policy"]["name"],
        "variant": ",".join(f"{k}={v}" for k, v in sorted(variant.items())),
        "seed": int(cfg.get("seed", 0)), "status": "ok", "error": "", "traceback": "",
        "wall_s": 0.0}
    row.update({name: cell["point"][name] for name in params})
    return row


def zero_metrics() -> dict[str, Any]:
    return {**{m: 0 for m in INT_METRICS}, **{m: 0.0 for m in FLOAT_METRICS},
            **{m: [] for m in LIST_METRICS}}


def run_cell(base: dict, options: dict, cell: dict, params: dict[str, type],
             sweep: str) -> dict[str, Any]:
    """One row: ids, axis values, status, wall time and metrics (zeros when failed)."""
    cfg = resolve_point(base, options, cell["point"])
    row = row_head(cfg, cell, params, sweep)
    t0 = time.perf_counter()
    try:
        row.update(simulate_cell(cfg, int(cfg["sweep"].get("sample_every", 0))))
    except Exception as exc:  # noqa: BLE001 - a simulator exception becomes a failed row
        tb = traceback.format_exc()
        row.update(zero_metrics())
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        digest = hashlib.sha1(tb.encode()).hexdigest()[:12]
        row["traceback"] = f"{digest} {os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
    row["wall_s"] = time.perf_counter() - t0
    return row


def run_batch(base: dict, options: dict, cells: list[dict], params: dict[str, type],
              sweep: str, store: Store, batch: str, meta: dict[str, str]) -> dict:
    """Run cells and write their rows; -> a small summary for the driver."""
    t0 = time.perf_counter()
    rows = [run_cell(base, options, c, params, sweep) for c in cells]
    schema = result_schema(params)
    table = pa.Table.from_pylist(rows, schema=schema)
    import socket
    paths = store.write(table, batch, {**meta, "sweep.host": socket.gethostname()})
    failed = sum(r["status"] != "ok" for r in rows)
    return {"batch": batch, "ok": len(rows) - failed, "failed": failed, "files": paths,
            "wall_s": time.perf_counter() - t0}


# ---- the Ray side ---------------------------------------------------------------
def init_local_ray(num_cpus: int | None = None) -> None:
    """A new Ray on this machine only: loopback, no dashboard, and never a cluster that a
    `ray start` left running (plain ray.init() would join that one)."""
    import ray
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)


def _worker_class():
    import ray

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)
    class SimWorker:
        """A long-lived simulator process: receives batches of cells."""

        def __init__(self, setup: tuple) -> None:
            base, options, params, sweep, uri, meta = setup
            self.args = (base, options, params, sweep)
            self.store = Store(uri)
            self.meta = meta

        def run(self, cells: list[dict], batch: str) -> dict:
            base, options, params, sweep = self.args
            return run_batch(base, options, cells, params, sweep, self.store, batch, self.meta)

        def pid(self) -> int:
            return os.getpid()

    return SimWorker


def param_types(grid: Grid) -> dict[str, type]:
    """Typed columns for every swept parameter (group axes and seed have their own)."""
    out = {}
    for key, values in grid.axes.items():
        if key in GROUPS or key == "seed":
            continue
        kinds = {type(v) for v in values}
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
    started: float = field(default_factory=time.perf_counter)


def provenance(grid: Grid) -> dict[str, str]:
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
    config = {"base": grid.base, "axes": grid.axes, "zip": grid.zips, "exclude": grid.exclude}
    return json_meta(resolved_config=config, git_commit=commit, git_dirty=dirty,
                     packages=packages, driver_host=platform.node(), ray_version=ray.__version__,
                     sim_version=SIM_VERSION, name=grid.name)


class Batcher:
    """Cuts the remaining cells into batches that each run about `target_s` seconds.

    Cell cost is learned from finished batches (the first round sends single cells), so
    fast cells travel in large batches and slow ones in small batches that balance well."""

    def __init__(self, cells: list[dict], workers: int, fixed: int = 0,
                 target_s: float = 0.5) -> None:
        self.cells, self.pos, self.workers, self.fixed = cells, 0, workers, fixed
        self.target_s, self.cell_s = target_s, None

    def remaining(self) -> int:
        return len(self.cells) - self.pos

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
        return max(1, min(1000, by_time, by_balance))

    def take(self) -> list[dict]:
        batch = self.cells[self.pos:self.pos + self.size()]
        self.pos += len(batch)
        return batch


def launch(grid: Grid, out: str, *, retry_failed: bool = False, workers: int | None = None,
           on_progress: Callable[[Progress], None] | None = None) -> Progress:
    """Run every cell of grid that out does not hold yet.  Ray must be initialised."""
    import ray
    from ray.exceptions import RayActorError, WorkerCrashedError, ObjectLostError

    store = Store(out)
    store.clean_temporaries()
    existing = store.scan()
    todo, superseded, files = [], set(), set()
    for cell in grid.cells:
        have = existing.get(cell["id"])
        if have is None or (retry_failed and have[0] != "ok"):
            todo.append(cell)
            if have is not None:
                superseded.add(cell["id"])
                files.add(have[1])
    prog = Progress(total=len(grid.cells), cached=len(grid.cells) - len(todo))
    if on_progress:
        on_progress(prog)
    if not todo:
        return prog
    todo.sort(key=lambda c: (str(c["point"].get("workload", "")), str(c["point"].get("policy", ""))))
    params = param_types(grid)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    batcher = Batcher(todo, n, int(grid.base["sweep"].get("batch_size", 0)))
    meta = provenance(grid)
    worker = _worker_class()
    # one shared copy, referenced for the whole run so that restarted actors find it
    setup = ray.put((grid.base, grid.options, params, grid.name, out, meta))
    actors = [worker.remote(setup) for _ in range(n)]
    max_retries = int(grid.base["sweep"].get("max_retries", 3))
    retry: list[tuple[list[dict], int]] = []          # (cells, attempts) of lost batches
    inflight: dict = {}
    idle = list(range(n))
    try:
        while retry or batcher.remaining() or inflight:
            while idle and (retry or batcher.remaining()):
                cells, tries = retry.pop(0) if retry else (batcher.take(), 0)
                a = idle.pop(0)
                name = hashlib.sha1("".join(c["id"] for c in cells).encode()).hexdigest()[:16]
                inflight[actors[a].run.remote(cells, name)] = (cells, tries, a, time.perf_counter())
                prog.running += len(cells)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for ref in ready:
                cells, tries, a, t0 = inflight.pop(ref)
                prog.running -= len(cells)
                idle.append(a)
                try:
                    result = ray.get(ref)
                except (RayActorError, WorkerCrashedError, ObjectLostError) as exc:
                    prog.retried += 1
                    if tries + 1 > max_retries:
                        _write_lost(store, grid, cells, params, meta, exc)
                        prog.failed += len(cells)
                    else:
                        retry.append((cells, tries + 1))
                    continue
                batcher.learn(len(cells), result["wall_s"])
                prog.done += result["ok"]
                prog.failed += result["failed"]
            if on_progress:
                on_progress(prog)
    finally:
        for actor in actors:
            ray.kill(actor)
    if superseded:
        now = store.scan()
        store.drop_failed({c for c in superseded if now.get(c, ("",))[0] == "ok"}, files)
    return prog


def _write_lost(store: Store, grid: Grid, cells: list[dict], params: dict, meta: dict,
                exc: Exception) -> None:
    """A batch whose worker kept dying: failed rows, written by the driver."""
    rows = []
    for cell in cells:
        row = row_head(resolve_point(grid.base, grid.options, cell["point"]), cell, params,
                       grid.name)
        row.update(zero_metrics(), status="failed", error=f"worker died: {type(exc).__name__}")
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=result_schema(params))
    name = hashlib.sha1("".join(c["id"] for c in cells).encode()).hexdigest()[:16]
    store.write(table, name, meta)

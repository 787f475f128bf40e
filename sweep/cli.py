"""The `sweep` command line (typer).  Heavy modules are imported inside commands."""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from simcore.slab import CACHES
from sweep.grid import DEFAULT_MAX_CELLS


class SweepApp(typer.Typer):
    """typer.Typer, with one shortcut for the console script: a plain `sweep trace simulate
    PATH [--policy P] [--variant K=V]... [--json] [--check]` runs trace_simulate() at once,
    without building the click command tree and typer's parameter adapters (pydantic), which
    take longer than many a trace (benchmarks/fork_cow.py times the whole command).  Any other
    command line -- help, another command, an unknown or malformed option -- goes to typer."""

    def __call__(self, *args, **kwargs):
        if not args and not kwargs:
            simulate = _simulate_args(sys.argv[1:])
            if simulate is not None:
                try:
                    trace_simulate(*simulate)
                except typer.Exit as exc:
                    sys.exit(exc.exit_code)
                sys.exit(0)
        return super().__call__(*args, **kwargs)


def _simulate_args(argv: list[str]) -> tuple | None:
    """trace_simulate()'s arguments from a `trace simulate` command line, or None where
    typer must parse it."""
    if argv[:2] != ["trace", "simulate"]:
        return None
    path, opts, variant = None, {"--policy": "eager"}, []
    args = iter(argv[2:])
    for arg in args:
        if arg in ("--json", "--check"):
            opts[arg] = True
            continue
        name, eq, value = arg.partition("=")
        if name in ("--policy", "--variant"):
            value = value if eq else next(args, None)
            if value is None or value.startswith("-"):
                return None
            if name == "--variant":
                variant.append(value)
            else:
                opts[name] = value
        elif arg.startswith("-") or path is not None:
            return None
        else:
            path = arg
    if path is None:
        return None
    return Path(path), opts["--policy"], variant, opts.get("--json", False), \
        opts.get("--check", False)


app = SweepApp(add_completion=False, no_args_is_help=True,
               help="anonsim: simulate anonymous rmap designs and sweep experiments.")
trace_app = typer.Typer(no_args_is_help=True, help="Run one scenario trace.")
app.add_typer(trace_app, name="trace")

EXPECTED_FILE = "expected.json"


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _parse_variant(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--variant takes key=value, got {item!r}")
        out[key] = value
    return out


def simulate_file(path: Path, policy: str = "eager", check: bool = False,
                  variant: dict | None = None) -> dict:
    """Replay a trace file; -> final counts (and walk costs)."""
    from simcore import trace
    from simcore.machine import Machine
    from simcore.policy import make_policy

    m = Machine(make_policy(policy, **(variant or {})), check=check)
    gc_was_on = gc.isenabled()
    gc.disable()      # the model frees its objects by refcount; cyclic GC passes only cost time
    try:
        with path.open() as fh:
            m.run(trace.parse_lines(fh, str(path)))
    except OSError as exc:
        raise trace.TraceError(0, f"cannot read trace: {exc.strerror}", str(path)) from None
    except trace.TraceError as exc:
        if exc.source:
            raise
        raise trace.TraceError(exc.lineno, exc.msg, str(path)) from None
    finally:
        if gc_was_on:
            gc.enable()
    out = m.counts()
    for walk, cost in sorted(m.walk_costs.items()):
        out.update(cost.as_dict(prefix=f"rmap_{walk}_"))
    return out


@trace_app.command("simulate")
def trace_simulate(
    path: Path = typer.Argument(..., help="trace file (.jsonl)"),
    policy: str = typer.Option("eager", help="rmap policy"),
    variant: List[str] = typer.Option([], help="policy variant knob key=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    check: bool = typer.Option(False, "--check", help="check invariants after every operation"),
) -> None:
    """Replay a trace in the simulator and print the final object counts."""
    from simcore.errors import InvariantError
    from simcore.trace import TraceError

    try:
        counts = simulate_file(path, policy, check, _parse_variant(variant))
    except (TraceError, ValueError) as exc:
        _fail(str(exc))
    except InvariantError as exc:
        _fail(str(exc), 1)
    _print_counts(counts, as_json)


@trace_app.command("kernel")
def trace_kernel(
    path: Path = typer.Argument(..., help="trace file (.jsonl)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    repeats: int = typer.Option(2, min=1, help="runs that must agree exactly"),
) -> None:
    """Execute a trace on this machine's kernel and print the objects attributable to it."""
    counts = _kernel_counts(path, repeats)
    _print_counts(counts, as_json)


def _kernel_counts(path: Path, repeats: int) -> dict:
    from simcore.kernel import KernelError, measure
    from simcore.trace import TraceError

    try:
        result = measure(path, repeats=repeats)
    except TraceError as exc:
        _fail(str(exc))
    except KernelError as exc:
        _fail(f"kernel: {exc}")
    return {k: v for k, v in result.items() if not isinstance(v, (dict, list))}


def _print_counts(counts: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(counts, sort_keys=True))
        return
    for key in CACHES:
        typer.echo(f"{key:16} {counts[key]}")
    for key in sorted(k for k in counts if k not in CACHES):
        typer.echo(f"{key:16} {counts[key]}")


def _load_expected(path: Path) -> dict:
    file = path.parent / EXPECTED_FILE
    return json.loads(file.read_text()) if file.exists() else {}


@app.command("validate")
def validate(
    traces: List[Path] = typer.Argument(None, help="trace files (default: tests/traces/*.jsonl)"),
    policy: str = typer.Option("eager", help="policy to simulate (non-eager: oracle only)"),
    against: str = typer.Option("kernel", help="kernel (run each trace on this machine) or "
                                "expected (the counts recorded beside the traces)"),
    record: bool = typer.Option(False, help="write kernel counts into expected.json beside the traces"),
    repeats: int = typer.Option(2, min=1, help="kernel runs per trace that must agree"),
    variant: List[str] = typer.Option([], help="policy variant knob key=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="recordings: print the comparison as JSON"),
) -> None:
    """Run traces in the simulator and on the kernel; table side by side; exit 1 on a mismatch.

    For a policy other than eager there is no kernel to compare with: each trace runs in
    checked mode (invariants and rmap completeness after every operation).  Recordings
    (`sweep record`, trace format v2) are replayed under eager and compared with the
    kernel counts recorded with them (allocs, peak, final; tolerance 1 %)."""
    from simcore import trace2
    if traces and all(p.is_file() and trace2.is_v2(p) for p in traces):
        _validate_recordings(traces, as_json)
    from rich.console import Console
    from rich.table import Table
    from simcore.errors import InvariantError
    from simcore.trace import TraceError

    if not traces:
        traces = sorted(Path("tests/traces").glob("*.jsonl"))
    if not traces:
        _fail("no traces given and none in tests/traces/")
    if against not in ("kernel", "expected"):
        _fail(f"--against must be 'kernel' or 'expected', got {against!r}")
    eager = policy == "eager"
    table = Table(title=f"simulator ({policy}) vs {against if eager else 'invariant oracle'}")
    table.add_column("trace", no_wrap=True)
    for key in ("VMA", "AV", "AVC"):
        table.add_column(f"{key} sim", justify="right")
        if eager:
            table.add_column(f"{key} {against}", justify="right")
    table.add_column("result")
    bad = 0
    mismatches: list[str] = []
    recorded: dict[Path, dict] = {}
    for path in traces:
        try:
            sim = simulate_file(path, policy, check=True, variant=_parse_variant(variant))
        except (TraceError, ValueError) as exc:
            _fail(str(exc))
        except InvariantError as exc:
            table.add_row(path.name, *[""] * (6 if eager else 3), "[red]INVARIANT")
            mismatches.append(f"INVARIANT {path}: {exc}")
            bad += 1
            continue
        if not eager:
            table.add_row(path.name, *[str(sim[k]) for k in CACHES], "[green]ok")
            continue
        if against == "kernel":
            ref = _kernel_counts(path, repeats)
            recorded.setdefault(path.parent, {})[path.name] = {k: ref[k] for k in CACHES}
        else:
            ref = _load_expected(path).get(path.name)
            if ref is None:
                _fail(f"{path}: no expected counts in {path.parent / EXPECTED_FILE}")
        same = all(sim[k] == ref[k] for k in CACHES)
        if not same:
            bad += 1
            mismatches.append(f"MISMATCH {path}: simulator {'/'.join(str(sim[k]) for k in CACHES)}"
                              f" vs {against} {'/'.join(str(ref[k]) for k in CACHES)}")
        cells = [c for k in CACHES for c in (str(sim[k]), str(ref[k]))]
        table.add_row(path.name, *cells, "[green]match" if same else "[red]MISMATCH")
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    for line in mismatches:
        typer.echo(line)
    if record:
        import platform
        for folder, counts in recorded.items():
            data = _load_expected(folder / "x")
            data.update(counts)
            data["_kernel"] = platform.release()
            (folder / EXPECTED_FILE).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    verdict = "match" if eager else "pass the checked mode"
    typer.echo(f"{len(traces) - bad} of {len(traces)} traces {verdict}")
    raise typer.Exit(1 if bad else 0)


def _validate_recordings(paths: list[Path], as_json: bool) -> None:
    """`sweep validate REC...`: eager replay vs the recorded kernel counts; exit 1 beyond 1 %."""
    from simcore.replay import validate_series
    from simcore.trace import TraceError
    bad = 0
    for path in paths:
        try:
            table, rep = validate_series(path)
        except (TraceError, OSError) as exc:
            _fail(str(exc))
        for row in table.values():
            for what in ("allocs", "peak", "final"):
                k, s = row[f"kernel_{what}"], row[f"sim_{what}"]
                bad += abs(s - k) > 0.01 * abs(k)
        if as_json:
            typer.echo(json.dumps(table))
            continue
        typer.echo(f"{path}: kernel vs simulator (eager)")
        typer.echo(f"  {'cache':16}{'allocs':>17}{'peak':>17}{'final':>17}")
        for cache, row in table.items():
            typer.echo(f"  {cache:16}" + "".join(
                f"{row[f'kernel_{w}']:>8} {row[f'sim_{w}']:>8}" for w in ("allocs", "peak", "final")))
        typer.echo(f"  series: {rep.series_off} of {rep.series_ops} operations end with other "
                   f"live counts than the kernel's (largest difference "
                   f"{', '.join(map(str, rep.series_max))})")
    raise typer.Exit(1 if bad else 0)


def _ray_init(address: str | None, num_cpus: int | None) -> None:
    """Join a cluster (--address or RAY_ADDRESS) or start a local one on loopback."""
    import ray
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            from sweep.runner import init_local_ray
            init_local_ray(num_cpus)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        _fail(f"cannot start or join Ray ({address or 'local'}): {str(exc).splitlines()[0]}")


@app.command("launch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def launch(
    ctx: typer.Context,
    grid_file: Path = typer.Argument(..., help="grid config, e.g. conf/grid.yaml"),
    out: Optional[str] = typer.Option(None, help="result directory or pyarrow.fs URI "
                                      "(default results/<sweep name>/)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster to join (else RAY_ADDRESS, "
                                          "else a local Ray)"),
    num_cpus: Optional[int] = typer.Option(None, min=1, help="CPUs of the local Ray"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the cells and their count only"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="recompute failed cells"),
    keep_stale: bool = typer.Option(False, "--keep-stale", help="keep rows computed by other "
                                    "code (a different code fingerprint) instead of recomputing"),
    max_cells: int = typer.Option(DEFAULT_MAX_CELLS, "--max-cells", min=1,
                                  help="refuse a grid with more cells than this"),
) -> None:
    """Run a grid of workload x arch x policy (x seeds, x any parameter) on Ray into Parquet.

    Extra arguments are Hydra overrides: policy=eager,lazy seed='range(0,10)' arch='glob(arm*)'.
    """
    try:
        _launch(ctx, grid_file, out, address, num_cpus, dry_run, retry_failed, keep_stale,
                max_cells)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _launch(ctx: typer.Context, grid_file: Path, out: Optional[str], address: Optional[str],
            num_cpus: Optional[int], dry_run: bool, retry_failed: bool, keep_stale: bool,
            max_cells: int) -> None:
    import os
    from sweep.config import SweepConfigError, load_grid
    overrides = list(ctx.args)
    for item in overrides:
        if item.startswith("-"):
            _fail(f"unknown option {item!r}")
    try:
        grid = load_grid(grid_file, overrides, max_cells=max_cells)
        if dry_run:
            for cell in grid.cells:            # streamed: memory does not grow with the grid
                typer.echo(f"{cell['id']}  " + " ".join(f"{k}={v}" for k, v in cell["point"].items()))
            typer.echo(f"{len(grid.cells)} cells")
            return
        from sweep.store import safe_name
        out = out or f"results/{safe_name(grid.name)}"
    except SweepConfigError as exc:
        _fail(str(exc))
    from_env = not address and bool(os.environ.get("RAY_ADDRESS"))
    address = address or os.environ.get("RAY_ADDRESS") or None
    from sweep.launcher import LaunchSession
    from sweep.lock import LockedError
    from sweep.preflight import LaunchError
    from sweep.runner import plan
    try:
        command = ["sweep", "launch", str(grid_file), "--out", out,
                   *(["--address", address] if address else []),
                   *(["--num-cpus", str(num_cpus)] if num_cpus else []),
                   *(["--retry-failed"] if retry_failed else []),
                   *(["--keep-stale"] if keep_stale else []), *overrides]
        session = LaunchSession(grid, out, overrides, address, command)
        session.prepare()                        # checks, lock, orphans, run record: no Ray yet
    except (LaunchError, LockedError) as exc:
        _fail(f"{exc}{' (from RAY_ADDRESS)' if from_env and address in str(exc) else ''}")
    except OSError as exc:                     # e.g. the disk filled between check and record
        _fail(f"{out}: {exc.strerror or exc}")
    for line in session.notes:
        typer.echo(line, err=True)
    from sweep.runner import NoWorkers
    prog, interrupted, no_workers = None, False, None
    try:
        try:
            todo = plan(grid, out, retry_failed=retry_failed, keep_stale=keep_stale)
        except SweepConfigError as exc:
            _fail(str(exc))
        except OSError as exc:                 # an input file that cannot be read for its hash
            _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        for line in todo.store.quarantine_notes():
            typer.echo(f"warning: {line}", err=True)
        if todo.todo:                          # nothing to compute: no Ray at all
            import ray
            owned = not ray.is_initialized()
            session.local_ray = owned and not address   # ours to stop, even if init is cut short
            _ray_init(address, num_cpus)
            session.ray_started(owned)
        prog = _run_with_progress(grid, out, todo, session)
        for line in session.failure_table(prog):
            typer.echo(line)
        if prog.stale_kept:
            typer.echo(f"{prog.stale_kept} stale cells (code or metric set changed) kept "
                       f"(--keep-stale)")
        elif prog.stale:
            typer.echo(f"{prog.stale} stale cells (code or metric set changed) recomputed")
        typer.echo(f"{prog.total} cells: {prog.done} computed, {prog.cached} cached, "
                   f"{prog.failed} failed -> {out}")
    except KeyboardInterrupt:
        interrupted = True
        session.log("interrupted (SIGINT)")
    except NoWorkers as exc:
        no_workers = exc
        session.log(f"no workers: {exc}")
    finally:
        for line in session.close():
            typer.echo(line, err=True)
    if interrupted:
        _fail(f"interrupted; the cells written so far are kept in {out}, a relaunch "
              f"computes the rest", 130)
    if no_workers is not None:
        _fail(f"{no_workers}; the cells written so far are kept in {out}", 1)
    raise typer.Exit(1 if prog.failed else 0)


def _run_with_progress(grid, out: str, todo, session=None):
    import time as _time
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeElapsedColumn, TimeRemainingColumn
    from sweep.runner import launch as run_grid

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(grid.name, total=len(grid.cells), detail="")

        def show(p) -> None:
            elapsed = max(_time.perf_counter() - p.started, 1e-9)
            rate = (p.done + p.failed) / elapsed
            bar.update(task, completed=p.cached + p.done + p.failed,
                       detail=f"done {p.done} cached {p.cached} failed {p.failed} "
                              f"running {p.running} {rate:.1f} cells/s")
            if session is not None:
                session.tick()
        return run_grid(grid, out, todo=todo, on_progress=show,
                        log=session.log if session is not None else None)


@app.command("report")
def report(
    out: str = typer.Argument(..., help="a sweep's result directory or URI"),
    dest: Optional[Path] = typer.Option(None, help="where report.md and the PNGs go "
                                        "(default: <out>/report for a local sweep)"),
    sensitivity: Optional[str] = typer.Option(None, help="a conf/sensitivity.yaml sweep: its "
                                              "tornado, band and held-out prediction"),
) -> None:
    """Mailing-list table (the cover letter's, beside ours), KB table and plots."""
    from sweep.report import cover_letter_table, kb_table, load_rows, write_report
    from sweep.store import Store
    store = _open_store(out)
    statuses = _sound_statuses(store)             # verifies every file; moves damaged ones aside
    if not statuses:
        _fail(f"no results under {out}")
    ok = sum(st == "ok" for st in statuses.values())
    if not ok:
        _fail(f"no cell of {out} succeeded ({len(statuses)} failed; `sweep status {out}` "
              f"counts them, the rows' error column says why): no report")
    try:
        df = load_rows(out)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if dest is None:
        dest = Path(out) / "report" if "://" not in out else Path("report")
    from sweep.preflight import LaunchError, check_output
    try:
        check_output(str(dest), what="--dest")
    except LaunchError as exc:
        _fail(str(exc))
    from sweep.report_provenance import section as provenance_section
    from sweep.report_sensitivity import baseline_only
    text = cover_letter_table(baseline_only(df))
    typer.echo(text if text else kb_table(baseline_only(df)))
    typer.echo("\n".join(provenance_section(df)))
    sens = None
    if sensitivity is not None:
        try:
            sens = load_rows(sensitivity)
        except FileNotFoundError as exc:
            _fail(str(exc))
    paths = write_report(df, dest, sens)
    typer.echo(f"wrote {', '.join(str(p) for p in paths)}")


@app.command("provenance")
def provenance_cmd(
    workload: List[str] = typer.Option(["android_boot", "android_apps"], help="workloads"),
    arch: List[str] = typer.Option(["arm64_android"], help="arch profiles"),
    readme: bool = typer.Option(False, help="the README's block (seed grid, with markers)"),
) -> None:
    """Where every parameter comes from: value, plausible range, source class, reference
    (the schemas' field metadata); exit 1 if a registered schema lacks it."""
    from simcore import provenance, registry
    from sweep import report_provenance as rp
    from sweep.config import SweepConfigError
    try:
        rp.check_builtin()
    except provenance.ProvenanceError as exc:
        _fail(str(exc), 1)
    try:
        for w in workload:
            registry.lookup("workload", w)
    except registry.RegistryError as exc:
        _fail(str(exc))
    if readme:
        typer.echo(rp.readme_block())
        return
    try:
        typer.echo(rp.markdown(workload, arch))
    except SweepConfigError as exc:
        _fail(str(exc))


@app.command("capture")
def capture_cmd(
    out: Path = typer.Argument(..., help="snapshot file to write (JSON)"),
    check: bool = typer.Option(True, help="replay it under eager and compare with /proc/slabinfo"),
) -> None:
    """Snapshot every process's layout (maps, smaps Anonymous, PPid); replay with workload=snapshot."""
    from sweep.capture import capture, compare, write
    try:
        snap = capture()
    except OSError as exc:
        _fail(f"capture: {exc}")
    write(snap, out)
    typer.echo(f"wrote {out}: {len(snap['processes'])} processes "
               f"({len(snap['unreadable'])} unreadable: {snap['unreadable'][:10]})")
    if check:
        for cache, predicted, real, err in compare(snap):
            typer.echo(f"  {cache:16} replay {predicted:8d}   /proc/slabinfo {real:8d}   "
                       f"error {100 * err:+6.1f} %")


@app.command("record", context_settings={"allow_interspersed_args": False})
def record_cmd(
    rec: Path = typer.Argument(..., help="recording to write (trace format v2)"),
    cmd: List[str] = typer.Argument(..., help="-- CMD [ARGS...]: the command to run as root"),
    buffer_kb: int = typer.Option(32768, min=64, help="trace ring buffer per CPU (KiB)"),
    compress: bool = typer.Option(True, help="gzip the recording"),
) -> None:
    """Run CMD and record its process tree's address-space history + kernel object counts."""
    from simcore.kernel import KernelError
    from simcore.kernel.record import record
    try:
        argv = list(cmd)[1:] if cmd and cmd[0] == "--" else list(cmd)
        res = record(rec, argv, buffer_kb=buffer_kb, compress=compress)
    except KernelError as exc:                 # RecordError, or tracefs unavailable
        _fail(f"record: {exc}", 1)
    except OSError as exc:                     # e.g. the recording's folder does not exist
        _fail(f"record: {exc.filename or rec}: {exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        _fail("record: interrupted; nothing written", 130)
    typer.echo(res.summary.text())
    note = "" if res.status == 0 else " (the command failed; recorded anyway)"
    typer.echo(f"wrote {rec}: command exit status {res.status}{note}")


@app.command("calibrate")
def calibrate_cmd(
    out: Path = typer.Option(Path("conf/arch/host.yaml"), help="profile file to write"),
    raw: Path = typer.Option(None, help="raw measurements (JSON; default: host-calibration.json "
                                        "beside --out)"),
    models: str = typer.Option("fork,fault,walk", help="models to fit (walk needs root and zram)"),
    rounds: int = typer.Option(9, min=1, help="interleaved rounds over every shape"),
    scale: float = typer.Option(1.0, min=0.1, help="multiplies the samples per run"),
) -> None:
    """Time forks, anonymous faults and rmap walks (reclaim onto a temporary zram swap device)
    over designed shapes, fit each cost model, report the error on held-out shapes."""
    from sweep.calibrate import (MODELS, TARGET, CalibrateError, FitError, SwapError,
                                 calibrate, write_host_yaml, write_raw)
    chosen = tuple(m.strip() for m in models.split(",") if m.strip())
    unknown = [m for m in chosen if m not in MODELS]
    if unknown or not chosen:
        _fail(f"calibrate: unknown model(s) {', '.join(unknown) or '(none)'} "
              f"(known: {', '.join(MODELS)})")
    try:
        result = calibrate(chosen, rounds=rounds, scale=scale,
                           progress=lambda msg: typer.echo(msg, err=True))
    except (CalibrateError, SwapError, FitError, OSError) as exc:
        _fail(f"calibrate: {exc}", 1)
    except KeyboardInterrupt:
        _fail("calibrate: interrupted; the swap device was removed, nothing written", 130)
    for name, f in result["models"].items():
        typer.echo(f"{name} model ({', '.join(f['features'])}):")
        for key, value in f["coefficients"].items():
            how = "held at floor" if key in f["fixed"] else f"floor {f['lower'][key]:.1f}"
            typer.echo(f"  {key:17} {value:10.1f}   ({how})")
        typer.echo("  held-out shapes (not used in the fit):")
        for s in f["shapes"]:
            if s["held_out"]:
                typer.echo(f"    {s['label']:44} measured {s['ns'] / 1e3:9.1f} us  "
                           f"predicted {s['predicted'] / 1e3:9.1f} us  "
                           f"error {100 * s['error']:+6.1f} %")
        dropped = sum(s.get("dropped", 0) for s in f["shapes"])
        if dropped:
            typer.echo(f"  samples dropped (preempted forks, walks that did not reclaim "
                       f"every page): {dropped} of {dropped + sum(len(s['samples']) for s in f['shapes'])}")
        ok = "within" if f["worst_held_out"] <= TARGET else "NOT within"
        typer.echo(f"  worst held-out error {100 * f['worst_held_out']:.1f} % ({ok} "
                   f"{100 * TARGET:.0f} %); worst training error {100 * f['worst_train']:.1f} %")
    typer.echo(f"took {result['seconds']:.0f} s (load average {result['host']['loadavg'][0]:.1f})")
    raw = raw or out.with_name("host-calibration.json")
    write_host_yaml(out, result)
    write_raw(raw, result)
    typer.echo(f"wrote {out} and {raw}")


@app.command("status")
def status(out: str = typer.Argument(..., help="a sweep's result directory or URI"),
           verify: bool = typer.Option(False, "--verify", help="read every page of every "
                                       "file (checksums) and move damaged files aside")) -> None:
    """Summarise a sweep on disk from its files' footers: cells per workload/policy,
    provenance, and the code fingerprints of its rows (which one the code here would write)."""
    from sweep.fingerprint import code_digest, fingerprint
    from sweep.status import summarize
    store = _open_store(out)
    s = summarize(store, verify)
    for line in store.quarantine_notes():
        typer.echo(f"warning: {line}", err=True)
    if not s.files:
        _fail(f"no results under {out}")
    code = code_digest()
    current = set()
    for text in s.configs:
        sweep_cfg = json.loads(text).get("base", {}).get("sweep", {})
        try:
            from simcore.registry import load_plugins
            load_plugins(sweep_cfg.get("plugins") or [])     # their policies' metric columns
        except ValueError:
            pass
        current.add(fingerprint(sweep_cfg, code))
    meta = s.meta
    typer.echo(f"sweep {meta.get('sweep.name', '?')}: {s.cells} cells in {len(s.files)} files "
               f"(git {meta.get('sweep.git_commit', '')[:10]}"
               f"{'+dirty' if meta.get('sweep.git_dirty') == 'true' else ''})")
    if s.from_rows:
        typer.echo("  (a launch is writing or was interrupted writing rows that supersede "
                   "others: cells counted from the rows)")
    for (w, p), (ok, failed) in sorted(s.by.items()):
        typer.echo(f"  workload={w:12} policy={p:8} ok={ok:6} failed={failed}")
    typer.echo("code fingerprints:")
    for fp, n in sorted(s.per_fp.items(), key=lambda kv: -kv[1]):
        mark = "current" if fp in current else "stale: a relaunch recomputes these rows"
        typer.echo(f"  {fp or '(none)':16} {n:6} rows  {mark}")


def _open_store(out: str):
    """The Store of an existing sweep, its location checked in bounded time (one-line errors)."""
    from sweep.preflight import LaunchError, check_readable
    from sweep.store import Store
    try:
        check_readable(out)
    except LaunchError as exc:
        _fail(str(exc))
    return Store(out)


def _sound_tables(store, columns: list[str] | None):
    """(path, table) of each readable part file; one warning line per damaged file moved aside."""
    yield from store.sound_tables(columns)
    for line in store.quarantine_notes():
        typer.echo(f"warning: {line}", err=True)


def _sound_statuses(store) -> dict[str, str]:
    """cell_id -> status (ok wins) over every part file, each verified in full."""
    out: dict[str, str] = {}
    for _, t in _sound_tables(store, None):
        for cid, st in zip(t["cell_id"].to_pylist(), t["status"].to_pylist()):
            if out.get(cid) != "ok":
                out[cid] = st
    return out


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

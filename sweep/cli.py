"""The `sweep` command line (typer).  Heavy modules are imported inside commands."""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="anonsim: simulate anonymous rmap designs and sweep experiments.")
trace_app = typer.Typer(no_args_is_help=True, help="Run one scenario trace.")
app.add_typer(trace_app, name="trace")

CACHES = ("vm_area_struct", "anon_vma", "anon_vma_chain")
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
    check: bool = typer.Option(False, "--check", help="assert invariants after every operation"),
) -> None:
    """Replay a trace in the simulator and print the final object counts."""
    from simcore.trace import TraceError

    try:
        counts = simulate_file(path, policy, check, _parse_variant(variant))
    except (TraceError, ValueError) as exc:
        _fail(str(exc))
    except AssertionError as exc:
        _fail(f"invariant violated: {exc}", 1)
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
) -> None:
    """Run traces in the simulator and on the kernel; table side by side; exit 1 on a mismatch.

    For a policy other than eager there is no kernel to compare with: each trace runs in
    checked mode (invariants and rmap completeness after every operation)."""
    from rich.console import Console
    from rich.table import Table
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
        except AssertionError as exc:
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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

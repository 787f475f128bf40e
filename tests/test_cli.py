"""The `sweep` CLI: trace simulate, validate against recorded counts, clear errors."""
from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from conftest import ROOT, TRACES
from sweep.cli import app

runner = CliRunner()
EXAMPLE = str(TRACES / "r01_format_example.jsonl")


def test_simulate_json_has_integer_counts():
    res = runner.invoke(app, ["trace", "simulate", EXAMPLE, "--json", "--check"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["vm_area_struct"], out["anon_vma"], out["anon_vma_chain"]) == (2, 2, 3)


def test_validate_against_recorded_counts_passes(monkeypatch):
    monkeypatch.chdir(ROOT)                  # the default traces: tests/traces/ of the cwd
    res = runner.invoke(app, ["validate", "--against", "expected"])
    assert res.exit_code == 0, res.output
    assert "traces match" in res.output


def test_validate_reports_a_mismatch_with_exit_1(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "t.jsonl")
    (tmp_path / "expected.json").write_text(json.dumps(
        {"t.jsonl": {"vm_area_struct": 2, "anon_vma": 1, "anon_vma_chain": 3}}))
    res = runner.invoke(app, ["validate", str(tmp_path / "t.jsonl"), "--against", "expected"])
    assert res.exit_code == 1
    assert "MISMATCH" in res.output


def test_bad_trace_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "mmap", "pid": 0, "region": "a", "pages": 4}\n'
                   '{"op": "touch", "pid": 0, "region": "zz"}\n')
    res = runner.invoke(app, ["trace", "simulate", str(bad)])
    assert res.exit_code == 2
    assert "bad.jsonl:2: unknown region 'zz'" in res.output
    assert "Traceback" not in res.output


def test_unknown_policy_is_rejected():
    res = runner.invoke(app, ["trace", "simulate", EXAMPLE, "--policy", "nope"])
    assert res.exit_code == 2 and "unknown policy" in res.output


def test_console_shortcut_takes_only_plain_simulate_lines():
    """SweepApp runs a plain `trace simulate` itself; everything else goes to typer."""
    from pathlib import Path

    from sweep.cli import _simulate_args
    assert _simulate_args(["trace", "simulate", "t.jsonl"]) == \
        (Path("t.jsonl"), "eager", [], False, False)
    assert _simulate_args(["trace", "simulate", "--policy=lazy", "t.jsonl", "--json",
                           "--variant", "child_cow=own", "--check"]) == \
        (Path("t.jsonl"), "lazy", ["child_cow=own"], True, True)
    for argv in (["trace", "simulate"], ["trace", "simulate", "t.jsonl", "--help"],
                 ["trace", "simulate", "a.jsonl", "b.jsonl"], ["trace", "simulate", "--policy"],
                 ["trace", "simulate", "t.jsonl", "--bogus"], ["trace", "kernel", "t.jsonl"],
                 ["validate"], []):
        assert _simulate_args(argv) is None, argv


def test_console_shortcut_prints_what_typer_prints(tmp_path):
    """The console script's shortcut and typer: the same output and exit code, for a good
    trace and for a bad one."""
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "touch", "pid": 0, "region": "zz"}\n')
    for args in (["trace", "simulate", EXAMPLE, "--json", "--check"], ["trace", "simulate", str(bad)]):
        proc = subprocess.run([sys.executable, "-c", "from sweep.cli import app; app()", *args],
                              cwd=ROOT, capture_output=True, text=True)
        res = runner.invoke(app, args)
        assert (proc.returncode, proc.stdout + proc.stderr) == (res.exit_code, res.output)

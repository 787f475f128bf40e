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

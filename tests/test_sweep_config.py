"""Grid configs: composition, overrides, expansion, and one-line errors for bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DEMO, ROOT
from sweep.cli import app
from sweep.config import SweepConfigError, load_grid

CONF = ROOT / "conf"
runner = CliRunner()


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A private copy of conf/ to break."""
    shutil.copytree(CONF, tmp_path / "conf")
    return tmp_path / "conf"


def test_default_grid_expands_to_the_product():
    g = load_grid(CONF / "demo.yaml")
    assert len(g.cells) == 2 * 2 * 3 * 2
    assert len({c["id"] for c in g.cells}) == len(g.cells)


def test_overrides_replace_axes_add_axes_and_set_values():
    g = load_grid(CONF / "demo.yaml", ["policy=eager", "seed=range(0,5)", "arch=glob(arm*)",
                                       "workload.forks=true,false", "sweep.name=other"])
    assert g.axes["policy"] == ["eager"] and g.axes["seed"] == range(0, 5)   # kept lazy
    assert g.axes["arch"] == ["arm64", "arm64_16k", "arm64_64k", "arm64_android"]
    assert g.axes["workload.forks"] == [True, False]
    assert g.name == "other" and len(g.cells) == 5 * 4 * 2 * 2


def test_zip_and_exclude(conf: Path):
    (conf / "demo.yaml").write_text((conf / "demo.yaml").read_text()
                                    .replace("zip: []", "zip: [[seed, workload.n_ops]]")
                                    .replace("workload.n_ops: [40, 80]", "workload.n_ops: [40, 80, 120]")
                                    .replace("exclude: []", "exclude: [{policy: lazy, arch: arm64}]"))
    g = load_grid(conf / "demo.yaml")
    assert len(g.cells) == 3 * 3                  # (seed, n_ops) zipped; lazy x arm64 dropped
    assert all((c["point"]["seed"], c["point"]["workload.n_ops"]) in {(0, 40), (1, 80), (2, 120)}
               for c in g.cells)


def test_cell_ids_depend_on_the_resolved_config_only():
    a = load_grid(CONF / "demo.yaml", ["policy=eager", "arch=x86_64", "seed=1", "workload.n_ops=40"])
    b = load_grid(CONF / "demo.yaml", ["policy=eager,lazy", "sweep.name=x"])
    assert next(iter(a.cells))["id"] in {c["id"] for c in b.cells}


BAD = [
    (["nope=1"], "Could not override 'nope'"),
    (["workload.n_ops=lots"], "workload"),
    (["workload.n_ops=-3"], "must be zero or more"),
    (["arch.page_size=0"], "must be positive"),
    (["arch=sparc"], "unknown option 'sparc' for group 'arch'"),
    (["arch=glob(mips*)"], "matches no option"),
    (["policy=frobnicate"], "unknown option 'frobnicate' for group 'policy'"),
    (["seed=range(5,1)"], "has no values"),
    (["seed=range(0,10,0)"], "must not be 0"),
    (["seed=0,1,0"], "axis seed lists 0 twice"),
    (["sweep.sample_every=10,20"], "cannot be an axis"),
    (["workload.n_ops=range(0,1e7,0.5)"], "has 20,000,000 values, more than --max-cells"),
    (["seed=abc"], "seed"),
    (["workload=trace", "workload.path=/no/such.jsonl"], "no such file"),
    (["policy=lazy", "+policy.variant.split=shred"], "is not one of"),
    (["policy=lazy", "+policy.variant.colour=red"], "unknown lazy variant knob"),
    (["workload.n_ops=[1,2"], "bad override"),
    (["arch.vm_area_struct=-192"], "must be positive"),
    (["workload.forks=maybe"], "workload"),
    (["+workload._target_=os.system"], "not allowed"),
    (["sweep.batch_size=-1"], "must be zero or more"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[b[1] for b in BAD])
def test_bad_overrides_fail_with_one_line(overrides, message):
    with pytest.raises(SweepConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_grid(CONF / "demo.yaml", overrides)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "\n  bad: [unclosed\n", "YAML syntax error"),
    (lambda t: t.replace("axes:", "axis:"), "grid has unknown key"),
    (lambda t: t.replace("zip: []", "zip: [[nothing]]"), "not an axis"),
    (lambda t: t.replace("exclude: []", "exclude: [{colour: red}]"), "not an axis"),
    (lambda t: t.replace("seed: [0, 1, 2]", "seed: []"), "non-empty list"),
    (lambda t: t.replace("name: demo", "name: ${oc.env:HOME}"), "interpolation"),
])
def test_bad_grid_files(conf: Path, edit, message):
    (conf / "demo.yaml").write_text(edit((conf / "demo.yaml").read_text()))
    with pytest.raises(SweepConfigError, match=message):
        load_grid(conf / "demo.yaml")


def test_bad_group_file(conf: Path):
    (conf / "arch" / "x86_64.yaml").write_text("name: x86_64\npage_size: big\n")
    with pytest.raises(SweepConfigError, match="arch"):
        load_grid(conf / "demo.yaml")


def test_missing_grid_file():
    with pytest.raises(SweepConfigError, match="grid file not found"):
        load_grid(ROOT / "conf/nothere.yaml")


def test_cli_dry_run_and_bad_config_exit_codes():
    res = runner.invoke(app, ["launch", str(DEMO), "--dry-run", "policy=eager"])
    assert res.exit_code == 0 and res.output.strip().endswith("12 cells")
    res = runner.invoke(app, ["launch", str(DEMO), "arch=sparc"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.count("\n") == 1 and "allowed: arm64, arm64_16k" in res.output


def test_two_options_with_one_content_are_refused(conf: Path):
    shutil.copy(conf / "arch" / "x86_64.yaml", conf / "arch" / "x86_copy.yaml")
    with pytest.raises(SweepConfigError, match="'x86_64' and 'x86_copy' are identical"):
        load_grid(conf / "demo.yaml", ["arch=x86_64,x86_copy"])


def test_group_options_that_differ_only_in_a_swept_key_are_refused():
    """lazy_merge_keep and lazy_merge_refuse differ only in variant.merge; with that key an
    axis too, each pair of their cells would be one config (one cell id written twice)."""
    args = ["launch", str(CONF / "demo.yaml"), "--dry-run", "arch=x86_64", "seed=0",
            "policy=lazy_merge_keep,lazy_merge_refuse"]
    res = runner.invoke(app, args + ["policy.variant.merge=keep,refuse"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "differ only in policy.variant.merge" in lines[0], res.output
    res = runner.invoke(app, args)                     # without the axis: distinct cells
    assert res.exit_code == 0, res.output
    ids = [ln.split()[0] for ln in res.output.strip().splitlines()[:-1]]
    assert len(ids) == 2 * 2 == len(set(ids))

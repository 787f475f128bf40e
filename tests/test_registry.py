"""One registry per config group: a workload is one module + one registration, group files
hold only what differs from the schema defaults, plugins load by module name."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from simcore import registry
from sweep.config import SweepConfigError, load_grid
from sweep.runner import param_types, run_cell

CONF = ROOT / "conf"
PLUGIN = "+sweep.plugins=[tests.plugin_workloads]"


def test_a_workload_from_a_test_module_runs_through_load_grid_and_run_cell():
    grid = load_grid(CONF / "demo.yaml", [PLUGIN, "workload=ladder", "~workload.n_ops",
                                          "workload.steps=2,3", "policy=eager,lazy",
                                          "arch=x86_64", "seed=0"])
    assert len(grid.cells) == 4
    rows = {(c["point"]["policy"], c["point"]["workload.steps"]):
            run_cell(grid.base, grid.options, c, param_types(grid), grid.name) for c in grid.cells}
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert {r["workload"] for r in rows.values()} == {"ladder"}
    # eager: one anon_vma per region in the parent, one more per region and child
    # (steps=3: the parent 3, the children 1 + 2 + 3: each written region it inherits)
    assert rows[("eager", 3)]["anon_vma"] == 9 and rows[("eager", 3)]["forks"] == 3
    assert rows[("eager", 2)]["anon_vma"] == 5
    assert rows[("lazy", 3)]["anon_vma"] < rows[("eager", 3)]["anon_vma"]


def test_a_registered_workload_needs_no_group_file_and_gets_schema_defaults():
    assert not (CONF / "workload" / "chrome.yaml").exists()
    grid = load_grid(CONF / "demo.yaml", ["workload=chrome", "~workload.n_ops", "workload.renderers=2",
                                          "policy=eager", "arch=x86_64", "seed=0"])
    cfg = grid.resolve(next(iter(grid.cells))["point"])
    assert cfg["workload"]["renderers"] == 2 and cfg["workload"]["renderer_vmas"] == 1200


def test_group_files_hold_only_the_name_and_non_default_values():
    for path in sorted(CONF.glob("*/*.yaml")):
        node = yaml.safe_load(path.read_text())
        schema = registry.schema(path.parent.name, node["name"])
        defaults = {f.name: f.default for f in fields(schema) if f.default is not MISSING}
        repeated = [k for k, v in node.items() if k != "name" and k in defaults and defaults[k] == v]
        assert not repeated, f"{path} repeats defaults of {schema.__name__}: {repeated}"


def test_a_plugin_that_cannot_be_imported_is_one_config_error():
    with pytest.raises(SweepConfigError, match=r"cannot import 'no_such_module_xyz'"):
        load_grid(CONF / "demo.yaml", ["+sweep.plugins=[no_such_module_xyz]"])


def test_an_unknown_workload_names_the_registered_ones():
    with pytest.raises(SweepConfigError, match=r"workload.name='nope' is not a registered workload \(allowed: .*android_boot"):
        load_grid(CONF / "demo.yaml", ["workload.name=nope", "~workload.n_ops"])


def test_one_name_registered_from_two_places_is_an_error():
    @dataclass
    class Chrome2:
        name: str = "chrome"

    with pytest.raises(registry.RegistryError, match="registered twice"):
        registry.register_workload(Chrome2)(lambda cfg, seed: [])
    assert registry.lookup("workload", "chrome").module == "simcore.workloads.servers"


def test_a_cell_imports_the_plugins_itself_and_a_missing_one_is_a_failed_row():
    grid = load_grid(CONF / "demo.yaml", [PLUGIN, "workload=ladder", "~workload.n_ops",
                                          "policy=eager", "arch=x86_64", "seed=0"])
    base = {**grid.base, "sweep": {**grid.base["sweep"], "plugins": ["tests.plugin_workloads",
                                                                    "no_such_module_xyz"]}}
    row = run_cell(base, grid.options, next(iter(grid.cells)), {}, grid.name)
    assert row["status"] == "failed"
    assert row["error"].startswith("RegistryError: sweep.plugins: cannot import 'no_such_module_xyz'")


def test_a_plugin_policy_gets_its_metric_columns_like_a_built_in_one(tmp_path):
    """counting_eager (tests/plugin_workloads.py) declares a cache and a stats() counter:
    the sweep's schema gets their columns once the plugin is loaded, and rows fill them."""
    import pyarrow.parquet as pq
    from sweep.runner import run_batch
    from sweep.store import FLOAT_METRICS, INT_METRICS, Store, metric_columns
    ints, floats = INT_METRICS, FLOAT_METRICS                # the built-in policies' columns
    grid = load_grid(CONF / "demo.yaml", [PLUGIN, "workload=ladder", "~workload.n_ops",
                                          "policy=counting_eager,eager", "arch=x86_64",
                                          "seed=0"])
    new_ints, new_floats = metric_columns(grid.base["sweep"]["plugins"])
    assert set(new_ints) - set(ints) == {"plugin_token", "plugin_token_peak",
                                         "plugin_anon_faults"}
    assert set(new_floats) - set(floats) == {"plugin_token_kb", "plugin_token_slab_kb"}
    # a sweep without the plugin: no such columns, even in a process that loaded it (its
    # fingerprint's metric set must not depend on what else the process ran)
    assert metric_columns() == (ints, floats)
    summary = run_batch(grid.base, grid.options, list(grid.cells), param_types(grid),
                        grid.name, Store(str(tmp_path / "r")), "b0", {})
    assert summary["ok"] == 2, summary
    tables = {pq.read_table(p)["policy"][0].as_py(): pq.read_table(p) for p in summary["files"]}
    assert tables["counting_eager"]["plugin_anon_faults"].to_pylist() == [3]   # 3 regions
    assert tables["eager"]["plugin_anon_faults"].to_pylist() == [0]           # not its own
    assert tables["counting_eager"]["plugin_token_kb"].to_pylist() == [0.0]

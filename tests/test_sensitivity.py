"""Sensitivity designs from the provenance metadata (grid.sensitivity -> grid.points), the
points factor of the grid engine, and the report's tornado, band and requirements on
hand-made rows (the real sweep takes an hour: README)."""
from __future__ import annotations

import polars as pl
import pytest

from conftest import ROOT
from simcore import provenance, registry
from sweep import report_sensitivity as rs
from sweep.config import SweepConfigError, load_grid
from sweep.published import PUBLISHED, change_pct
from sweep.runner import param_types
from sweep.sensitivity import LHS_SEED_BASE, knobs_of, latin_hypercube

SENS = ROOT / "conf" / "sensitivity.yaml"


def test_design_has_every_knob_from_the_metadata_at_low_and_high():
    g = load_grid(SENS, ["grid.sensitivity.lhs=3"])
    import yaml
    spec = {"skip": yaml.safe_load(SENS.read_text())["grid"]["sensitivity"]["skip"]}
    assert {"pressure_every", "pressure_pages", "pages", "fork_a_ns"} <= set(spec["skip"])
    oat = {w: knobs_of(spec, w, "arm64_android") for w in ("android_boot", "android_apps")}
    cells = list(g.cells)
    points = [c["point"] for c in cells]
    for w, knobs in oat.items():
        assert {"workload": w, "seed": 0, "policy": "lazy"} in points          # the baseline
        for key, knob in knobs:
            lows = [p for p in points if p.get(key) == knob.low and p["seed"] == 0 and p["workload"] == w]
            highs = [p for p in points if p.get(key) == knob.high and p["seed"] == 0 and p["workload"] == w]
            assert len(highs) == 2 and len(lows) in (0, 2), key        # both policies
    assert "workload.app_forks" in dict(oat["android_apps"])
    assert "workload.app_forks" not in dict(oat["android_boot"])
    assert not any("workload.app_forks" in p for p in points if p["workload"] == "android_boot")
    assert not any(k.endswith(("pages", "pressure_every")) for p in points for k in p)
    lhs = [p for p in points if p["seed"] >= LHS_SEED_BASE]
    assert len(lhs) == 3 * 2 * 2 and len({c["id"] for c in cells}) == len(cells)
    assert len(g.cells) == len(cells)
    boot = {p["seed"]: p for p in lhs if p["workload"] == "android_boot"}
    apps = {p["seed"]: p for p in lhs if p["workload"] == "android_apps"}
    assert all(boot[s]["workload.boot_apps"] == apps[s]["workload.boot_apps"] for s in boot)
    types = param_types(g)
    assert types["workload.app_forks"] is float and types["workload.boot_apps"] is int


def test_a_knob_added_to_a_schema_joins_the_design():
    from dataclasses import field, make_dataclass
    schema = registry.schema("workload", "android_boot")
    extra = make_dataclass("Extended", [("new_knob", float, field(default=0.5, metadata={
        "source": "assumed", "range": (0.0, 1.0), "ref": "test"}))], bases=(schema,))
    assert "new_knob" in {k.name for k in provenance.knobs(extra)}
    assert "new_knob" not in {k.name for k in provenance.knobs(schema)}


def test_latin_hypercube_puts_one_sample_in_each_stratum():
    import random
    pts = latin_hypercube(5, 3, random.Random(1))
    for d in range(3):
        assert sorted(int(p[d] * 5) for p in pts) == [0, 1, 2, 3, 4]


def test_bad_designs_are_one_line_errors():
    with pytest.raises(SweepConfigError, match="unknown key.*colour"):
        load_grid(SENS, ["grid.sensitivity.colour=1"])
    with pytest.raises(SweepConfigError, match="not source classes"):
        load_grid(SENS, ["grid.sensitivity.sources=[guessed]"])


def test_explicit_points_leave_unset_keys_at_the_composed_value(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "defaults: [{workload: random}, {arch: x86_64}, {policy: eager}, _self_]\n"
        "grid:\n  axes: {policy: [eager, lazy]}\n"
        "  points: [{workload.n_ops: 5}, {seed: 3}, {workload.n_ops: 7, seed: 4}]\n")
    g = load_grid(tmp_path / "g.yaml")
    cfgs = [(g.resolve(c["point"])["workload"]["n_ops"], g.resolve(c["point"])["seed"]) for c in g.cells]
    assert cfgs == [(5, 0), (40, 3), (7, 4)] * 2 and len(g.cells) == 6     # policy leads
    (tmp_path / "h.yaml").write_text(
        "defaults: [{workload: random}, {arch: x86_64}, {policy: eager}, _self_]\n"
        "grid:\n  points: [{workload.colour: 5}]\n")
    with pytest.raises(SweepConfigError, match=r"grid.points.*'colour'"):
        load_grid(tmp_path / "h.yaml")


def _rows(points: list[tuple[dict, float, float]]) -> pl.DataFrame:
    """Rows of android_apps cells: (knob values, eager anon_vma KB, lazy anon_vma KB)."""
    rows = []
    for knobs, eager, lazy in points:
        for policy, av in (("eager", eager), ("lazy", lazy)):
            rows.append({"workload": "android_apps", "arch": "arm64_android", "policy": policy,
                         "variant": "", "seed": knobs.pop("seed", 0) if policy == "lazy" else knobs.get("seed", 0),
                         "workload.app_forks": knobs.get("workload.app_forks"),
                         "workload.boot_apps": knobs.get("workload.boot_apps"),
                         "vm_area_struct_kb": 100.0, "anon_vma_chain_kb": 50.0, "anon_vma_kb": av})
    return pl.DataFrame(rows, schema_overrides={"workload.app_forks": pl.Float64,
                                                "workload.boot_apps": pl.Int64})


def test_tornado_band_and_what_must_hold(tmp_path):
    df = _rows([({}, 100.0, 10.0),                                   # baseline: -90 %
                ({"workload.app_forks": 0.0}, 100.0, 5.0),           # -95 %
                ({"workload.app_forks": 1.0}, 100.0, 20.0),          # -80 %
                ({"workload.boot_apps": 90}, 100.0, 9.0),            # -91 %
                ({"workload.boot_apps": 160}, 100.0, 10.5),          # -89.5 %
                ({"seed": 1000, "workload.app_forks": 0.2, "workload.boot_apps": 100}, 100.0, 7.0),
                ({"seed": 1001, "workload.app_forks": 0.8, "workload.boot_apps": 150}, 100.0, 17.0)])
    frame = rs.design_frame(df)
    assert sorted(frame["kind"].to_list()) == ["baseline", "lhs", "lhs", "oat", "oat", "oat", "oat"]
    t = rs.tornado(frame).filter(pl.col("cache") == "anon_vma")
    assert t["knob"].to_list() == ["workload.app_forks", "workload.boot_apps"]   # by swing
    first = t.row(0, named=True)
    assert (first["at_low"], first["at_high"], first["swing"]) == (-95.0, -80.0, 15.0)
    b = rs.band(frame).filter(pl.col("cache") == "anon_vma").row(0, named=True)
    assert (b["n"], b["min"], b["max"], b["baseline"]) == (2, -93.0, -83.0, -90.0)
    (line,) = [s for s in rs.needed(t) if "anon_vma (" in s]
    want = change_pct(*PUBLISHED["android_apps"]["anon_vma"])          # -92.04 %
    x = 0 + (want + 95) * 0.5 / 5                                       # between 0 and 0.5
    assert f"app_forks = {x:.3g}" in line
    text, made = rs.section(df, tmp_path)
    assert any("Tornado" in s for s in text) and any("Band of outcomes" in s for s in text)
    assert made and made[0].exists()


def test_a_sweep_without_design_has_no_section(tmp_path):
    df = _rows([({}, 100.0, 10.0)]).drop("workload.app_forks", "workload.boot_apps")
    assert rs.section(df, tmp_path) == ([], [])


def test_heldout_refits_the_lazy_fitted_knobs_on_eager_alone(tmp_path):
    """Eager KB grows 20 % per unit of app_forks and sits 5 % under the published eager
    figures at the baseline: the re-fit moves app_forks alone (procs change nothing, so they
    stay at the baseline) to 0.75, the grid value nearest +5.26 %."""
    from sweep import report_heldout as rh
    assert [k.name for k in rh.refit_knobs()] == ["procs_min", "procs_max", "app_forks"]
    base = {"workload.procs_min": 2.5, "workload.procs_max": 4.5, "workload.app_forks": 0.5}
    lows = {"workload.procs_min": 1.5, "workload.procs_max": 3.5, "workload.app_forks": 0.0}
    rows = []
    for point in [{}, *({k: v} for k, v in lows.items())]:
        af = point.get("workload.app_forks", 0.5)
        for policy in ("eager", "lazy"):
            row = {"workload": "android_apps", "arch": "arm64_android", "policy": policy,
                   "variant": "", "seed": 0, **{k: point.get(k) for k in base}}
            for c in ("vm_area_struct", "anon_vma_chain", "anon_vma"):
                eager, lazy = PUBLISHED["android_apps"][c]
                row[f"{c}_kb"] = (0.95 * eager * (1 + 0.2 * (af - 0.5)) if policy == "eager"
                                  else lazy * (1 + 2 * (af - 0.5)))
            rows.append(row)
    df = pl.DataFrame(rows, schema_overrides={k: pl.Float64 for k in base})
    text = rh.section(df, tmp_path)
    assert "procs_min = 2.5 (calibrated: 2.5), procs_max = 4.5 (calibrated: 4.5), " \
           "app_forks = 0.75 (calibrated: 0.5)" in "\n".join(text)
    grid = (tmp_path / "heldout.yaml").read_text()
    assert "workload.app_forks: 0.75" in grid and "name: sensitivity" in grid
    g = load_grid(tmp_path / "heldout.yaml")
    assert len(g.cells) == 2


def test_launches_sweeping_different_parameters_load_together(tmp_path):
    """Two launches into one sweep, each with its own explicit points: every parameter
    column is kept, null where a launch did not set it (the sensitivity runs in parts)."""
    from sweep.results import load
    from sweep.runner import run_batch
    from sweep.store import Store
    out = str(tmp_path / "out")
    for i, points in enumerate(["[{workload.n_ops: 5}]", "[{workload.forks: false, seed: 3}]"]):
        (tmp_path / f"g{i}.yaml").write_text(
            "defaults: [{workload: random}, {arch: x86_64}, {policy: eager}, _self_]\n"
            f"sweep: {{name: parts}}\ngrid:\n  points: {points}\n")
        g = load_grid(tmp_path / f"g{i}.yaml")
        run_batch(g.base, g.options, list(g.cells), param_types(g), g.name, Store(out), f"b{i}", {})
    df = load(out).collect().sort("seed")
    assert df["workload.n_ops"].to_list() == [5, None]
    assert df["workload.forks"].to_list() == [None, False]


def test_other_tables_show_a_sensitivity_sweeps_baseline_only():
    df = _rows([({}, 100.0, 10.0), ({"workload.app_forks": 1.0}, 100.0, 20.0)])
    assert rs.baseline_only(df)["anon_vma_kb"].to_list() == [100.0, 10.0]
    swept = df.filter(pl.col("workload.app_forks").is_not_null())      # an ordinary axis sweep
    assert rs.baseline_only(swept).height == swept.height

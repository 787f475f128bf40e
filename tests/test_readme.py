"""What the README promises a new user: its grid-file example, grid files outside conf/,
the report's tables on any sweep (the cover letter's numbers beside arm64_android only),
and an objects-over-time plot whose every line is visible, in operations."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sweep import published, results
from sweep.cli import app
from sweep.config import SweepConfigError, load_grid
from sweep.report import cover_letter_table, kb_table, load_rows

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
runner = CliRunner()


def _blocks(lang: str) -> list[str]:
    """The README's fenced code blocks whose info string is `lang` ("" for plain ones)."""
    out, info, body = [], None, []
    for line in README.splitlines():
        if line.startswith("```"):
            if info is None:
                info, body = line[3:].strip(), []
            else:
                if info == lang:
                    out.append("\n".join(body) + "\n")
                info = None
        elif info is not None:
            body.append(line)
    return out


def test_readme_starts_with_the_two_setup_commands():
    assert README.startswith("# anonsim\n\n```\n")
    assert _blocks("")[0].splitlines() == ["pip install -e . && sweep launch conf/grid.yaml",
                                          "pip install -e '.[test]' && python -m pytest"]


def test_readme_grid_example_loads_outside_conf(tmp_path):
    """The yaml block of the README, saved as mygrid.yaml in a folder of the user's own."""
    (example,) = _blocks("yaml")
    (tmp_path / "mygrid.yaml").write_text(example)
    g = load_grid(tmp_path / "mygrid.yaml")
    assert g.axes["seed"] == [0, 1, 2] and g.axes["arch"] == ["x86_64", "arm64"]
    assert len(g.cells) == 2 * 2 * 3 * 2
    assert {c["point"]["seed"] for c in g.cells} == {0, 1, 2}
    assert "mygrid.yaml --dry-run` lists its 24 cells" in README
    res = runner.invoke(app, ["launch", str(tmp_path / "mygrid.yaml"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("24 cells")


def test_grid_folder_groups_come_first_then_the_project_conf(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "refusing.yaml").write_text("name: lazy\nvariant: {merge: refuse}\n")
    (tmp_path / "g.yaml").write_text(
        "defaults: [{workload: random}, {arch: arm64_16k}, {policy: refusing}, _self_]\n"
        "grid: {axes: {policy: [refusing, eager]}}\n")
    g = load_grid(tmp_path / "g.yaml")
    assert g.options["policy"]["refusing"]["variant"] == {"merge": "refuse"}
    assert g.options["policy"]["eager"]["name"] == "eager"        # from the project's conf/
    assert g.base["arch"]["page_size"] == 16384


@pytest.mark.parametrize("grid, overrides", [
    ("grid: {axes: {policy: [eager, nope]}}\n", []),
    ("", ["policy=nope"]),
    ("", ["policy=eager,nope"]),
])
def test_unknown_group_option_names_where_it_looked(tmp_path, grid, overrides):
    (tmp_path / "g.yaml").write_text(
        "defaults: [{workload: random}, {arch: x86_64}, {policy: eager}, _self_]\n" + grid)
    with pytest.raises(SweepConfigError) as err:
        load_grid(tmp_path / "g.yaml", overrides)
    msg = str(err.value)
    assert "\n" not in msg and "unknown option 'nope' for group 'policy'" in msg
    assert f"looked in {tmp_path / 'policy'}, {ROOT / 'conf' / 'policy'}" in msg


def test_unknown_default_in_the_defaults_list_names_where_it_looked(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "defaults: [{workload: random}, {arch: vax}, {policy: eager}, _self_]\n")
    with pytest.raises(SweepConfigError, match=r"unknown option 'vax' for group 'arch' "
                                               r"\(allowed: .*arm64.*; looked in "):
        load_grid(tmp_path / "g.yaml")


# ---- the report on sweeps with and without Android workloads ---------------------
def _rows(workloads, archs) -> pl.DataFrame:
    """Rows as a sweep writes them: lazy saves half the anon_vmas and AVCs."""
    rows = []
    for w in workloads:
        for a in archs:
            for p, factor in (("eager", 1.0), ("lazy", 0.5)):
                rows.append({"cell_id": f"{w}-{a}-{p}", "workload": w, "arch": a, "policy": p,
                             "variant": "", "seed": 0, "status": "ok",
                             "vm_area_struct": 100, "vm_area_struct_kb": 18.75,
                             "anon_vma": int(40 * factor), "anon_vma_kb": 4.0 * factor,
                             "anon_vma_chain": int(80 * factor), "anon_vma_chain_kb": 5.0 * factor})
    return pl.DataFrame(rows)


def _published_texts() -> set[str]:
    return {f"{v:12.1f}" for caches in published.PUBLISHED.values()
            for pair in caches.values() for v in pair}


def test_report_without_android_prints_the_kb_table():
    df = _rows(["random", "postgres"], ["x86_64", "arm64"])
    assert cover_letter_table(df) == ""
    table = kb_table(df)
    assert "| postgres | x86_64 | lazy | 1 | 18.8 (100) | 2.0 (20) | 2.5 (40) |" in table
    assert len([ln for ln in table.splitlines() if ln.startswith("| random")]) == 4


def test_published_numbers_only_beside_arm64_android():
    df = _rows(["android_boot", "android_apps"], ["x86_64", "arm64_android"])
    text = cover_letter_table(df)
    arm, x86 = text.split("arch=x86_64")
    assert arm.startswith(f"arch={published.ARCH}")
    assert all(v in arm for v in _published_texts())
    assert not any(v.strip() in x86 for v in _published_texts())
    assert "published" not in x86 and x86.count("-50.0%") == 4
    joined = results.with_published(results.spread(results.deltas(df)))
    has = joined.filter(pl.col("published_change_pct").is_not_null())
    assert has.height == 6 and set(has["arch"]) == {published.ARCH}


def test_readme_report_block_has_the_report_format():
    """The README's report excerpt: same headers, rows and published columns as the code."""
    block = next(b for b in _blocks("") if b.startswith("arch="))
    df = _rows(["android_boot", "android_apps"], [published.ARCH])
    mine = cover_letter_table(df).rstrip("\n").splitlines()
    theirs = block.rstrip("\n").splitlines()
    assert len(mine) == len(theirs) and mine[:3] == theirs[:3]
    for a, b in zip(mine[3:], theirs[3:]):
        assert a[:62] == b[:62]                # label and the published before/after/change


@pytest.fixture(scope="module")
def random_sweep(ray_local, tmp_path_factory):
    from sweep.runner import launch
    out = tmp_path_factory.mktemp("sweep") / "random"
    grid = load_grid(ROOT / "conf/demo.yaml", ["seed=0", "arch=x86_64", "workload.n_ops=200",
                                               "sweep.sample_every=7"])
    launch(grid, str(out))
    return str(out)


def test_sweep_report_cli_on_a_random_sweep(random_sweep):
    res = runner.invoke(app, ["report", random_sweep])
    assert res.exit_code == 0, res.output
    assert "| random | x86_64 | eager | 1 |" in res.output
    assert "| random | x86_64 | lazy | 1 |" in res.output
    assert "published" not in res.output and "objects_over_time.png" in res.output


def test_objects_over_time_lines_are_distinct_and_in_operations(random_sweep):
    import matplotlib.pyplot as plt
    from sweep.plots import series_figure
    df = load_rows(random_sweep)
    assert df["sweep.sample_every"].to_list() == [7, 7]          # read from the footers
    fig = series_figure(df)
    try:
        axes = fig.get_axes()
        assert len(axes) == 3                                     # one workload x arch, 3 caches
        for ax in axes:
            assert ax.get_xlabel() == "operations"
            lines = ax.get_lines()
            assert len(lines) == 2
            styles = [(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in lines]
            assert all(len({s[i] for s in styles}) == 2 for i in range(3))
            for ln, row in zip(lines, df.sort("policy").iter_rows(named=True)):
                n = len(row["anon_vma_series"])
                assert list(ln.get_xdata()) == [7 * (k + 1) for k in range(n)]
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["eager", "lazy"]
    finally:
        plt.close(fig)

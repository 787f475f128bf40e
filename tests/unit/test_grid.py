"""Grid expansion (sweep.config.load_grid -> grid.cells), one scenario per rule, counts after
every step.  Each scenario draws its grid as a table of points: ``*`` a cell, ``-`` none."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from sweep.config import load_grid

GRID = """\
defaults:
  - workload: random
  - arch: x86_64
  - policy: eager
  - _self_
sweep:
  name: unit
  batch_size: 0
seed: 0
grid:
  axes:
    policy: [eager, lazy]
    seed: [0, 1, 2]
{extra}  zip: {zip}
  exclude: {exclude}
"""


@pytest.fixture
def grid_file(tmp_path: Path):
    """Write a grid into a private copy of conf/ -> its path."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")

    def write(extra: str = "", zip: str = "[]", exclude: str = "[]") -> Path:
        path = tmp_path / "conf" / "unit.yaml"
        path.write_text(GRID.format(extra=extra, zip=zip, exclude=exclude))
        return path
    return write


def points(grid) -> list[tuple]:
    return [(c["point"]["policy"], c["point"]["seed"]) for c in grid.cells]


def test_expansion_is_the_product_in_a_fixed_order(grid_file) -> None:
    """
            seed 0  1  2
    eager        *  *  *
    lazy         *  *  *
    """
    path = grid_file()
    grid = load_grid(path)
    assert len(grid.cells) == 6
    assert sorted(points(grid)) == [(p, s) for p in ("eager", "lazy") for s in (0, 1, 2)]
    assert all(set(c["point"]) == {"policy", "seed"} for c in grid.cells)
    assert [c["id"] for c in load_grid(path).cells] == [c["id"] for c in grid.cells]

    # an override replaces one axis:   eager  *  *  *  *   (seed 0..3)
    grid = load_grid(path, ["policy=eager", "seed=range(0,4)"])
    assert len(grid.cells) == 4 and points(grid) == [("eager", s) for s in range(4)]

    # an override adds an axis: x 2 values of workload.n_ops
    grid = load_grid(path, ["workload.n_ops=10,20"])
    assert len(grid.cells) == 12
    assert {c["point"]["workload.n_ops"] for c in grid.cells} == {10, 20}


def test_zip_pairs_axes_instead_of_crossing_them(grid_file) -> None:
    """
    (seed, workload.n_ops) zipped: (0,10) (1,20) (2,30)

            (0,10) (1,20) (2,30)
    eager     *      *      *
    lazy      *      *      *         6 cells, not 2 x 3 x 3 = 18
    """
    grid = load_grid(grid_file(extra="    workload.n_ops: [10, 20, 30]\n",
                               zip="[[seed, workload.n_ops]]"))
    assert len(grid.cells) == 6
    assert {(c["point"]["seed"], c["point"]["workload.n_ops"]) for c in grid.cells} == \
        {(0, 10), (1, 20), (2, 30)}


def test_exclude_drops_matching_points(grid_file) -> None:
    """
            seed 0  1  2
    eager        *  *  *
    lazy         *  -  *          exclude {policy: lazy, seed: 1}
    """
    grid = load_grid(grid_file(exclude="[{policy: lazy, seed: 1}]"))
    assert len(grid.cells) == 5 and ("lazy", 1) not in points(grid)

    #         seed 0  1  2
    # eager        *  *  *
    # lazy         -  -  -          exclude {policy: lazy}: a partial point matches a row
    grid = load_grid(grid_file(exclude="[{policy: lazy}]"))
    assert len(grid.cells) == 3 and {p for p, _ in points(grid)} == {"eager"}


def test_cell_ids_name_the_resolved_config(grid_file) -> None:
    """
    grid A:  eager x seed 0 1 2          grid B: eager lazy x seed 1, sweep.name=other
    the cell (eager, 1) has one id in both; every other cell has its own id
    """
    path = grid_file()
    a = load_grid(path)
    ids = {point: c["id"] for point, c in zip(points(a), a.cells)}
    assert len(set(ids.values())) == 6                          # distinct configs, distinct ids

    b = load_grid(path, ["seed=1", "sweep.name=other", "sweep.batch_size=3"])
    assert len(b.cells) == 2
    assert {c["id"] for c in b.cells} == {ids[("eager", 1)], ids[("lazy", 1)]}

    c = load_grid(path, ["seed=1", "workload.n_ops=99"])      # a parameter the cell uses
    assert len(c.cells) == 2 and not {x["id"] for x in c.cells} & set(ids.values())


def test_streamed_ids_are_the_hash_of_each_resolved_config(grid_file) -> None:
    """
    policy  eager lazy lazy_merge_keep      x seed 0 1 2
            x workload.n_ops 10 20 (zipped with nothing)  x workload.forks true false
    each cell's streamed id (one JSON template per policy, parameters spliced in) is
    cell_id() of its config resolved in full
    """
    from sweep.grid import cell_id
    grid = load_grid(grid_file(extra="    workload.n_ops: [10, 20]\n"
                                     "    workload.forks: [true, false]\n"),
                     ["policy=eager,lazy,lazy_merge_keep"])
    cells = list(grid.cells)
    assert len(cells) == 3 * 3 * 2 * 2 == len({c["id"] for c in cells})
    assert [c["id"] for c in cells] == [cell_id(grid.resolve(c["point"])) for c in cells]

    # a swept variant knob (a key inside the group option): the template holds it too
    grid = load_grid(grid_file(), ["policy=lazy_merge_keep", "policy.variant.merge=keep,refuse"])
    cells = list(grid.cells)
    assert len(cells) == 6 == len({c["id"] for c in cells})
    assert [c["id"] for c in cells] == [cell_id(grid.resolve(c["point"])) for c in cells]

"""sweep report's three-design section (sweep/report_designs.py) on rows of real cells."""
from __future__ import annotations

import json
from dataclasses import asdict

import polars as pl

from conftest import fork, mmap, touch
from simcore.arch import ArchConf
from sweep.report_designs import designs, designs_table
from sweep.runner import simulate_cell


def test_three_designs_rows_and_table(tmp_path):
    """P with two written VMAs forks C, C forks G, one reclaim walk of P's first page."""
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in (
        mmap(), touch(), mmap(region="b"), touch(region="b"), fork(0, 1), fork(1, 2),
        {"op": "rmap", "pid": 0, "region": "a", "walk": "reclaim", "count": 1})))
    rows = []
    for policy in ("eager", "lazy", "cow_context"):
        cfg = {"workload": {"name": "trace", "path": str(path)}, "seed": 0,
               "policy": {"name": policy}, "arch": asdict(ArchConf())}
        rows.append({"workload": "trace", "arch": "x86_64", "policy": policy, "variant": "",
                     "seed": 0, **{k: v for k, v in simulate_cell(cfg).items()
                                   if not isinstance(v, list)}})
    t = {r["policy"]: r for r in designs(pl.DataFrame(rows)).iter_rows(named=True)}
    assert list(t) == ["eager", "lazy", "cow_context"]
    eager, cow = t["eager"], t["cow_context"]
    assert (eager["anon_vmas"], eager["avcs"], eager["contexts"]) == (6, 12, 0)   # 2 VMAs x 3 mms
    assert (cow["anon_vmas"], cow["avcs"], cow["contexts"], cow["zombies"]) == (0, 0, 3, 0)
    assert eager["rmap_kb"] == (6 * 104 + 12 * 64) / 1024
    assert cow["rmap_kb"] == 3 * 96 / 1024 and cow["folio_ptr_kb"] == 16 * 8 / 1024
    # forks: eager allocates 2 AVs + 4 AVCs (first), 2 + 6 (second); cow one context each,
    # charged fork_cow_ctx_allocs_ns; the same VMAs and PTEs copied
    a = ArchConf()
    assert eager["fork_objects"] == (6 + 8) / 2 and cow["fork_objects"] == 1
    assert abs(eager["fork_ns"] - cow["fork_ns"] - (5 * a.fork_avc_ns + 2 * a.fork_av_ns
                                                    - a.fork_cow_ctx_allocs_ns)) < 1e-6
    # the walk: P's folio mapped by P, C, G; 2 passes stopping once all 3 are found
    assert (eager["walks"], eager["vmas_per_walk"], eager["locks_per_walk"]) == (2, 3, 1)
    assert (cow["walks"], cow["ctx_per_walk"], cow["lookups_per_walk"], cow["locks_per_walk"]) \
        == (2, 3, 3, 0)
    text = designs_table(pl.DataFrame(rows))
    assert "| trace x86_64 | cow_context | 6 | 0 | 0 | 3 (0) | 0 | 0.0 / 0.0 / 0.3 / 0.0 |" in text
    assert "cow_context reaches lazy's saving;" in text and "in 1 of 1 cells" in text

"""`workload=recording`: recordings (trace format v2) as sweep cells under every policy,
a glob as an axis over files, the file's content in the cell id, and lazy's replay of
real programs in checked mode."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simcore.errors import InvariantError
from simcore.machine import Machine
from simcore.policy import make_policy
from simcore.replay import RecordedOp, recorded_ops, replay, validate
from sweep.config import SweepConfigError, load_grid

ROOT = Path(__file__).resolve().parents[1]
RECS = ROOT / "tests" / "recordings"


def test_recorded_ops_on_a_machine_count_like_validate():
    """Machine.run over recorded_ops() is the replay `sweep validate` does."""
    rec = RECS / "git.rec"
    m = Machine("eager")
    m.run(recorded_ops(rec))
    table = validate(rec)
    for i, cache in enumerate(table):
        assert m.slab.allocs[i] == table[cache]["sim_allocs"] == table[cache]["kernel_allocs"]
        assert m.slab.peak[i] == table[cache]["sim_peak"] == table[cache]["kernel_peak"]
        assert m.slab.live[i] == 0


def test_one_session_cannot_run_on_two_machines():
    ops = recorded_ops(RECS / "sh.rec")
    first = next(ops)
    Machine("eager").apply(first)
    with pytest.raises(RuntimeError, match="two machines"):
        Machine("eager").apply(RecordedOp(first.session, 1, 3))


def test_memory_pressure_walks_on_a_recording():
    """workload=recording adds rmap walks (default: every 50 ops, 4 pages from a written
    page) as the generators do: walks cost something, eager's objects do not change, lazy
    walks the same pages at another cost (checked mode clean); pressure_every=0 walks
    nothing."""
    from simcore.workloads.recording import RecordingWorkload, recording
    cfg = RecordingWorkload(path=str(RECS / "pipe.rec"))
    assert (cfg.pressure_every, cfg.pressure_pages) == (50, 4)
    table = validate(RECS / "pipe.rec")
    runs = {}
    for policy, every in [("eager", 50), ("eager", 0), ("lazy", 50), ("lazy", 0)]:
        m = Machine(make_policy(policy), check=policy == "lazy")
        m.run(recording(RecordingWorkload(path=cfg.path, pressure_every=every), seed=1))
        runs[policy, every] = m
    walked = runs["eager", 50].walk_costs
    assert sum(c.walks for c in walked.values()) >= 20 and not runs["eager", 0].walk_costs
    assert sum(c.avcs_visited for c in walked.values()) > 0
    for i, row in enumerate(table.values()):
        assert runs["eager", 50].slab.peak[i] == runs["eager", 0].slab.peak[i] == row["kernel_peak"]
    lazy = runs["lazy", 50].walk_costs            # the same walks: fewer AVCs, some lockless
    assert sum(c.walks for c in lazy.values()) == sum(c.walks for c in walked.values())
    assert sum(c.avcs_visited for c in lazy.values()) < sum(c.avcs_visited for c in walked.values())
    assert sum(c.lockless_walks for c in lazy.values()) > 0


@pytest.mark.parametrize("rec", ["sh", "git", "sqlite"])
def test_lazy_replays_real_programs_checked_mode_clean(rec):
    """Invariants I1-I6, slab and rmap completeness after every recorded operation."""
    m = Machine(make_policy("lazy"), check=True)
    m.run(recorded_ops(RECS / f"{rec}.rec"))
    assert m.ops_done > 20
    assert list(m.slab.live) == [0, 0, 0]


def test_eager_checked_mode_sees_offstage_mms():
    """An execve's new mm (before exec_mmap()) is alive but run by no process: the
    checker counts it (check.live_mms), or slab != chains right after exec_begin."""
    m = Machine(make_policy("eager"), check=True)
    m.run(recorded_ops(RECS / "sh.rec"))
    table = validate(RECS / "sh.rec")
    assert list(m.slab.allocs) == [row["kernel_allocs"] for row in table.values()]


def test_real_yaml_glob_is_an_axis_over_files_and_every_policy(monkeypatch):
    monkeypatch.chdir(ROOT)                   # the glob is relative to the working directory
    grid = load_grid(ROOT / "conf" / "real.yaml")
    files = sorted(RECS.glob("*.rec"))
    assert [Path(f).resolve() for f in grid.axes["workload.path"]] == files
    assert {"eager", "lazy", "lazy_split_upgrade", "lazy_child_cow_own"} <= set(grid.axes["policy"])
    assert grid.size == len(grid.axes["policy"]) * len(files)
    assert grid.options["policy"]["lazy_merge_refuse"]["variant"] == {"merge": "refuse"}


def test_glob_override_and_content_in_cell_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(RECS / "sh.rec", tmp_path / "a.rec")
    shutil.copy(RECS / "git.rec", tmp_path / "b.rec")
    real = ROOT / "conf" / "real.yaml"
    grid = load_grid(real, ["workload.path=*.rec", "policy=eager"])
    assert grid.axes["workload.path"] == ["a.rec", "b.rec"]
    ids = [c["id"] for c in grid.cells]
    one = load_grid(real, ["workload.path=a.rec", "policy=eager"])
    assert "workload.path" not in one.axes and [c["id"] for c in one.cells] == ids[:1]
    shutil.copy(RECS / "sqlite.rec", tmp_path / "a.rec")          # same name, new content
    again = [c["id"] for c in load_grid(real, ["workload.path=*.rec", "policy=eager"]).cells]
    assert again[0] != ids[0] and again[1] == ids[1]


def test_glob_matching_nothing_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SweepConfigError, match="matches no file"):
        load_grid(ROOT / "conf" / "real.yaml", ["workload.path=nothing/*.rec"])


def test_corrupt_recording_in_a_sweep_cell_is_a_trace_error(tmp_path):
    from simcore.trace import TraceError
    bad = tmp_path / "bad.rec"
    bad.write_bytes((RECS / "sh.rec").read_bytes()[:-12])
    with pytest.raises(TraceError):
        Machine("eager").run(recorded_ops(bad))


def test_invariant_error_names_the_recorded_op():
    """A broken invariant during a replay names the v2 operation (not the wrapper)."""
    m = Machine("eager", check=True)
    ops = recorded_ops(RECS / "sh.rec")
    m.apply(next(ops))
    m.slab.live[0] += 1                                    # a leak the checker must see
    with pytest.raises(InvariantError) as exc:
        m.apply(next(ops))
    assert exc.value.op.startswith('{"op": ') and exc.value.line == 3


def test_report_section_real_programs_against_eager():
    import polars as pl
    from sweep.realreport import object_sizes, real_programs, real_programs_table
    zero = {"lazy_upgrades": 0, "lazy_upgrade_folios": 0, "lazy_upgrade_ptes": 0,
            "rmap_walks": 0, "rmap_avcs_visited": 0, "rmap_vmas_visited": 0}
    rows = [
        {"workload": "recording", "workload.path": "x/git.rec", "arch": "x86_64",
         "policy": "eager", "variant": "", "vm_area_struct_peak": 42, "anon_vma_peak": 12,
         "anon_vma_chain_peak": 18, **zero},
        {"workload": "recording", "workload.path": "x/git.rec", "arch": "x86_64",
         "policy": "lazy", "variant": "split=upgrade", "vm_area_struct_peak": 44,
         "anon_vma_peak": 1, "anon_vma_chain_peak": 2,
         **zero, "lazy_upgrades": 1, "lazy_upgrade_folios": 3, "lazy_upgrade_ptes": 5},
        {"workload": "noop", "workload.path": "", "arch": "x86_64", "policy": "eager",
         "variant": "", "vm_area_struct_peak": 0, "anon_vma_peak": 0,
         "anon_vma_chain_peak": 0, **zero},
    ]
    t = real_programs(pl.DataFrame(rows))
    assert t["program"].to_list() == ["git", "git"]
    lazy = t.row(1, named=True)
    assert (lazy["policy"], lazy["VMA_delta"], lazy["AV_delta"], lazy["AVC_delta"]) == \
        ("lazy split=upgrade", 2, -11, -16)
    assert lazy["objects_saved"] == 25
    s = object_sizes("x86_64")
    want = (-2 * s["vm_area_struct"] - 44 * s["lazy_vma_extra"] + 11 * s["anon_vma"]
            + 16 * s["anon_vma_chain"]) / 1024
    assert lazy["kb_saved"] == pytest.approx(want)
    assert "| git | x86_64 | lazy split=upgrade | 44 (+2) | 1 (-11) | 2 (-16) | 25 |" in \
        real_programs_table(pl.DataFrame(rows))


def test_replay_sysv_shm_attach_detach():
    """shmget/shmat/shmdt (ipc/shm.c): the attach is a shared mapping of the segment's
    shmem file at the returned address (one VMA, no anon_vma even when written), shmdt
    unmaps it; a failed shmat changes nothing."""
    from simcore.mm import MM
    from simcore.replay import Replayer, _Snapshots
    r = Replayer()
    pid, base = 7, 0x7f0000000000
    mm = MM(pid)
    r.m.procs[pid], r.users[id(mm)] = mm, 1
    ops = [{"op": "shmget", "pid": pid, "key": 1, "size": 3 * 4096 + 56, "flags": 0, "ret": 4},
           {"op": "shmat", "pid": pid, "shmid": 4, "addr": 0, "flags": 0, "ret": base},
           {"op": "fault", "pid": pid, "addr": base + 4096, "write": True, "user": True},
           {"op": "shmat", "pid": pid, "shmid": 4, "addr": 0, "flags": 0, "ret": -22},
           {"op": "shmdt", "pid": pid, "addr": base, "ret": 0}]
    snaps = _Snapshots(ops)
    live = []
    extent = []
    for i, op in enumerate(ops):
        r.step(i, op, snaps)
        live.append(list(r.m.slab.live))
        extent.append([(v.vm_start - (base >> 12), v.vm_end - (base >> 12)) for v in mm.vmas])
    assert extent[1] == [(0, 4)]                  # 3 pages + 56 bytes: 4 pages
    assert live == [[0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert not r.rep.skipped and mm.vmas == []

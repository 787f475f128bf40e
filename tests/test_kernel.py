"""simcore.kernel: compile, tracefs parsing, and counts measured on the live kernel.

The kernel tests need root, tracefs with the kmem events and a C compiler; they
are skipped otherwise.  Expected counts are mainline 6.18 (TRACE_FORMAT.md and
shared/research/groundtruth).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import pytest

from simcore.kernel import (KernelError, Tracefs, compile_trace, measure, parse_trace,
                            unavailable_reason)
from simcore.kernel import harness, tracefs
from simcore.kernel.tracefs import tracefs_mounts, tracing_root
from simcore.trace import Op, TraceError, parse_lines

REASON = unavailable_reason()
kernel = pytest.mark.skipif(REASON is not None,
                            reason=f"live-kernel measurement unavailable: {REASON}")


def ops(*objs: dict) -> list[Op]:
    return list(parse_lines([json.dumps(o) for o in objs]))


def mmap(pid: int = 0, region: str = "a", pages: int = 16, **kw) -> dict:
    return {"op": "mmap", "pid": pid, "region": region, "pages": pages, **kw}


def touch(pid: int = 0, region: str = "a", **kw) -> dict:
    return {"op": "touch", "pid": pid, "region": region, **kw}


def fork(pid: int, child: int) -> dict:
    return {"op": "fork", "pid": pid, "child": child}


SPLIT = {"op": "mprotect", "pid": 0, "region": "a", "first": 4, "count": 4, "prot": "r"}
EXAMPLE = ops(mmap(), touch(), fork(0, 1), touch(1))

CASES = {
    "trace_format_example": (EXAMPLE, (2, 2, 3)),
    "one_region_written": (ops(mmap(), touch()), (1, 1, 1)),
    "one_region_read": (ops(mmap(), touch(write=False)), (1, 0, 0)),
    "populate_read_only": (ops(mmap(prot="r", populate=True)), (1, 0, 0)),
    "fork_chain_0_1_2": (ops(mmap(), touch(), fork(0, 1), touch(1), fork(1, 2), touch(2)),
                         (3, 3, 6)),
    "dontfork_then_fork": (ops(mmap(), touch(), {"op": "madvise", "pid": 0, "region": "a",
                                                  "advice": "dontfork"}, fork(0, 1)), (1, 1, 1)),
    "parent_exits_after_fork": (ops(mmap(), touch(), fork(0, 1), {"op": "exit", "pid": 0}),
                                (1, 2, 2)),
    "private_file_written": (ops(mmap(kind="file", file="f", offset=2, pages=4), touch()),
                             (1, 1, 1)),
    # a region split in 3 VMAs (one anon_vma): growing extends the last VMA, a move
    # of the whole region moves each VMA
    "split_region_grown": (ops(mmap(), touch(), SPLIT, {"op": "mremap", "pid": 0,
                                                        "region": "a", "pages": 24}), (3, 1, 3)),
    "split_region_moved": (ops(mmap(), touch(), SPLIT, {"op": "mremap", "pid": 0,
                                                        "region": "a", "to": "b"}), (3, 1, 3)),
}


# ---- no kernel needed --------------------------------------------------------
def test_compile_addresses_and_control() -> None:
    prog = compile_trace(EXAMPLE)
    assert [c.text.split()[0] for c in prog.commands] == ["mmap", "touch", "fork", "touch"]
    assert [c.line for c in prog.commands] == [1, 2, 3, 4]
    addr = int(prog.commands[0].text.split()[1], 16)
    assert addr % (512 * 4096) == 0 and prog.commands[1].text == f"touch {addr:#x} 16 1"
    control = compile_trace(EXAMPLE, control=True)
    assert [(c.pid, c.text) for c in control.commands] == [(0, "fork 1")]
    grow = compile_trace(ops(mmap(), {"op": "mremap", "pid": 0, "region": "a", "pages": 20}))
    assert grow.commands[-1].text == f"mremap {addr + 15 * 4096:#x} 4096 {5 * 4096}"


def test_compile_files_open_once_inherit_and_exec() -> None:
    trace = ops(
        mmap(region="a", kind="file", file="x", pages=4),
        mmap(region="b", kind="shared_file", file="x", pages=2, offset=10),
        fork(0, 1),
        mmap(1, region="c", kind="file", file="x", pages=1),
        {"op": "exec", "pid": 1},
        mmap(1, region="d", kind="file", file="x", pages=1),
        {"op": "mremap", "pid": 0, "region": "b", "pages": 8},
        {"op": "rmap", "pid": 0, "region": "a"},
    )
    prog = compile_trace(trace)
    opens = [(c.pid, c.text) for c in prog.commands if c.text.startswith("open")]
    assert opens == [(0, "open 0 f0"), (1, "open 0 f0")]   # pid 1 reopens only after exec
    assert prog.files == {"f0": (10 + 8) * 4096}             # grown mapping is covered
    assert not any(c.text.startswith("rmap") for c in prog.commands)
    control = compile_trace(trace, control=True)
    assert control.files == {} and [c.text for c in control.commands] == ["fork 1", "exec"]


def test_invalid_trace_is_rejected_naming_the_line() -> None:
    bad = ops(mmap(), touch(1))
    with pytest.raises(TraceError, match=r"line 2: unknown pid 1"):
        measure(bad)
    with pytest.raises(TraceError, match=r"line 2: touch: write to pages that are not writable"):
        compile_trace(ops(mmap(prot="r"), touch()))


def test_unavailable_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = unavailable_reason()
    assert reason is not None and "\n" not in reason
    with pytest.raises(KernelError, match=r"^cannot measure on the kernel: needs"):
        measure(EXAMPLE)
    monkeypatch.setattr(harness, "_compiler", lambda: None)
    with pytest.raises(KernelError, match="no C compiler"):
        harness.build_executor()


def test_parse_trace_counts_and_separates_fs_struct_and_irq() -> None:
    head = "           exe-100     [001] "
    text = "\n".join([
        "# tracer: nop",
        head + "..... 1.0: kmem_cache_alloc: call_site=vm_area_alloc+0x1/0x2 ptr=0 "
               "name=vm_area_struct bytes_req=192",
        head + "..... 1.1: kmem_cache_alloc: call_site=copy_fs_struct+0x22/0xb0 ptr=1 "
               "name=anon_vma_chain bytes_req=64",
        head + "..... 1.2: kmem_cache_alloc: call_site=anon_vma_clone+0x6/0x1 ptr=2 "
               "name=anon_vma_chain bytes_req=64",
        head + "..s.. 1.3: kmem_cache_free: call_site=foo+0x1/0x2 ptr=3 name=anon_vma",
        head + "..... 1.4: kmem_cache_free: call_site=exit_mmap+0x1/0x2 ptr=0 name=vm_area_struct",
        head + "..... 1.5: kmem_cache_alloc: call_site=x+0x1/0x2 ptr=4 name=kmalloc-64 bytes_req=8",
    ])
    counts = parse_trace(text)
    assert counts.net == {"vm_area_struct": 0, "anon_vma": 0, "anon_vma_chain": 1}
    assert (counts.fs_struct, counts.irq, counts.events, counts.pids) == (1, 1, 5, {100})
    with pytest.raises(KernelError, match="lost events"):
        parse_trace("CPU:1 [LOST 12 EVENTS]\n")


# ---- live kernel -------------------------------------------------------------
@kernel
@pytest.mark.parametrize("name", list(CASES))
def test_counts_match_mainline(name: str) -> None:
    trace, expected = CASES[name]
    result = measure(trace)
    got = (result["vm_area_struct"], result["anon_vma"], result["anon_vma_chain"])
    assert got == expected, f"{name}: {got} != {expected}; sites {result['sites']}"
    assert result["irq_events"] == 0 and result["raw_stable"]


@kernel
def test_repeats_agree_and_extras(tmp_path: Path) -> None:
    path = tmp_path / "example.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in
                            (mmap(), touch(), fork(0, 1), touch(1))))
    result = measure(path, repeats=3)
    assert len(result["runs"]) == 3
    assert all(run == result["runs"][0] for run in result["runs"])
    assert result["kernel"] == os.uname().release
    for cache in ("vm_area_struct", "anon_vma", "anon_vma_chain"):
        assert result["trace"][cache] - result["control"][cache] == result[cache]
    assert result["fs_struct"]["trace"] == result["fs_struct"]["control"] == 1  # the fork


SETTINGS = ("tracing_on", "buffer_size_kb", "set_event_pid", "options/event-fork",
            "events/kmem/kmem_cache_alloc/enable", "events/kmem/kmem_cache_alloc/filter",
            "events/kmem/kmem_cache_free/enable", "events/kmem/kmem_cache_free/filter")


def _snapshot(root: Path) -> dict[str, str]:
    snap = {rel: (root / rel).read_text() for rel in SETTINGS}
    # other users' private instances come and go concurrently; ours must be gone
    snap["instances"] = " ".join(sorted(p.name for p in (root / "instances").iterdir()
                                        if p.name == f"anonsim-{os.getpid()}"))
    return snap


def _buffer_kb(text: str) -> int:
    """The ring buffer's size in KB: "1410", or "7 (expanded: 1408)" before its first use."""
    expanded = re.search(r"expanded: (\d+)", text)
    return int(expanded.group(1) if expanded else text.split()[0])


def _restored(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every setting as before; the global buffer's size as before up to the kernel's
    rounding.  On a machine whose tracing was never used, buffer_size_kb reads
    "7 (expanded: 1408)"; once used, the buffer stays expanded (the kernel has no way back),
    and a size written reads back rounded up to whole ring-buffer pages (measured on this
    6.18 kernel: 1408 reads 1410, 2048 reads 2051)."""
    a, b = dict(before), dict(after)
    kb_a, kb_b = _buffer_kb(a.pop("buffer_size_kb")), _buffer_kb(b.pop("buffer_size_kb"))
    return a == b and kb_a <= kb_b < kb_a + 4


@kernel
def test_a_busy_private_mount_is_still_removed(monkeypatch) -> None:
    """A private tracefs mount that a process still holds when its user is done (here: a
    file of it open in this process) is unmounted lazily: it is gone from the tree at once,
    and its mount point is removed."""
    before = tracefs_mounts()
    monkeypatch.setattr(tracefs, "tracefs_mounts", lambda: [])   # a private mount, always
    with tracing_root() as root:
        assert os.path.ismount(root)
        held = open(root / "trace")           # umount(8) would say: target is busy
    try:
        assert not root.exists()
        monkeypatch.undo()
        assert tracefs_mounts() == before
        assert held.read(1) is not None       # the open file still works (lazy unmount)
    finally:
        held.close()


@kernel
def test_another_private_mount_is_not_taken(monkeypatch) -> None:
    """Two measurements at once: the second does not work through the first one's private
    mount (which goes when the first is done), and the first's outlives the second."""
    real = tracefs.tracefs_mounts
    monkeypatch.setattr(tracefs, "tracefs_mounts", lambda: [])   # the first: a private mount
    with tracing_root() as first:
        monkeypatch.setattr(tracefs, "tracefs_mounts", real)
        assert first in real()
        with tracing_root() as second:
            assert second != first and (second / "trace").exists()
        assert os.path.ismount(first) and (first / "trace").exists()
    assert first not in real()


@kernel
def test_tracefs_settings_restored() -> None:
    mounts = tracefs_mounts()
    with tracing_root() as root:          # mounts tracefs privately if nothing mounted it
        before = _snapshot(root)
        measure(EXAMPLE, repeats=1)
        assert _snapshot(root) == before          # a private instance: nothing global touched
        with Tracefs(use_instance=False, buffer_kb=2048) as tfs:   # the global instance
            assert tfs.dir == tfs.root           # the global instance (one superblock:
            #                                       the same files under root)
            assert (root / "events/kmem/kmem_cache_free/enable").read_text().strip() == "1"
            assert _buffer_kb((root / "buffer_size_kb").read_text()) >= 2048
            tfs.start(os.getpid())
            tfs.stop()
        after = _snapshot(root)
        assert _restored(before, after), (before, after)
    assert tracefs_mounts() == mounts


@kernel
def test_measures_where_tracefs_is_not_mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine: nothing mounted tracefs; the harness mounts it privately and
    unmounts it, leaving the machine's mounts as they were."""
    mounts = tracefs_mounts()
    monkeypatch.setattr(tracefs, "tracefs_mounts", lambda: [])
    seen = []
    real_root = tracefs.tracing_root

    @contextlib.contextmanager
    def spy():
        with real_root() as root:
            seen.append(root)
            assert os.path.ismount(root) and root not in mounts
            yield root
    monkeypatch.setattr(tracefs, "tracing_root", spy)
    result = measure(EXAMPLE, repeats=1)
    assert (result["vm_area_struct"], result["anon_vma"], result["anon_vma_chain"]) == (2, 2, 3)
    assert len(seen) == 1 and not seen[0].exists()
    monkeypatch.undo()
    assert tracefs_mounts() == mounts


@kernel
def test_kernel_failure_names_line_and_errno() -> None:
    trace = ops(mmap(), {"op": "mlock", "pid": 0, "region": "a"},
                {"op": "madvise", "pid": 0, "region": "a", "advice": "dontneed"})
    with pytest.raises(KernelError, match=r"line 3: madvise dontneed \(pid 0\) failed on the "
                                          r"kernel: EINVAL"):
        measure(trace, repeats=1)
    with tracing_root() as root:
        assert (root / "instances").is_dir()
        assert not (root / "instances" / f"anonsim-{os.getpid()}").exists()

"""Shared test helpers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pyarrow.fs as pafs
from hypothesis import settings

from simcore.kernel import unavailable_reason

def size(ci: int, full: int) -> int:
    """The size of a property run marked ``long``: ``ci`` in the normal suite (.ci/run),
    ``full`` with ANONSIM_LONG=1 (``ANONSIM_LONG=1 python -m pytest -m long``)."""
    return full if os.environ.get("ANONSIM_LONG", "") not in ("", "0") else ci


# no example database: a run never depends on what an earlier run left in .hypothesis/
settings.register_profile("anonsim", database=None, deadline=None, print_blob=True)
settings.load_profile("anonsim")

ROOT = Path(__file__).resolve().parent.parent   # tests never depend on the cwd
TRACES = ROOT / "tests" / "traces"
DEMO = ROOT / "conf" / "demo.yaml"
KERNEL_REASON = unavailable_reason()
needs_kernel = pytest.mark.skipif(KERNEL_REASON is not None,
                                  reason=f"live-kernel measurement unavailable: {KERNEL_REASON}")


# JSON objects of trace ops, for tests that write traces inline
def mmap(pid=0, region="a", pages=8, **kw):
    return {"op": "mmap", "pid": pid, "region": region, "pages": pages, **kw}


def touch(pid=0, region="a", **kw):
    return {"op": "touch", "pid": pid, "region": region, **kw}


def fork(p, c):
    return {"op": "fork", "pid": p, "child": c}


def parse(*objs) -> list:
    """Trace ops from their JSON objects."""
    from simcore import trace as T
    return list(T.parse_lines([json.dumps(o) for o in objs]))


def lockstep_pair(fast, ref, ops, state) -> tuple:
    """A fast path against its reference: machines fast and ref receive the same ops and
    state(fast) == state(ref) after every op."""
    for op in ops:
        fast.apply(op)
        ref.apply(op)
        assert state(fast) == state(ref), op
    return fast, ref


def corpus() -> list[Path]:
    return sorted(TRACES.glob("*.jsonl"))


def expected() -> dict:
    return json.loads((TRACES / "expected.json").read_text())


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole test session."""
    import ray
    if not ray.is_initialized():
        from sweep.runner import init_local_ray
        init_local_ray(2)
    yield ray
    ray.shutdown()


@pytest.fixture
def s3_uri():
    """A local S3-compatible server (moto, real HTTP) and an empty prefix of a bucket (moto
    keeps its buckets in memory for the whole process: each test gets its own prefix)."""
    import uuid
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", scheme="http",
                           endpoint_override=f"{host}:{port}", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir("results")
    yield (f"s3://testing:testing@results/sweep-{uuid.uuid4().hex[:8]}"
           f"?endpoint_override={host}:{port}"
           f"&scheme=http&region=us-east-1")
    server.stop()


# pytest-xdist (`-n 2 --dist loadgroup`, pyproject's addopts): the simulator's own tests --
# no Ray, no tracefs, no sweep or CLI processes, nothing outside their process and tmp_path
# -- run on either worker.  Every other module is one xdist group, run by one worker one
# test after another as without xdist: one local Ray per session (ray_local), one user of
# tracefs at a time (the harness mounts it, and a test checks what it leaves), the sweep
# tests' process checks (orphans, SIGINT, SIGKILL) with no other sweep running.
PARALLEL = {
    "test_android.py", "test_android_life.py", "test_anon_vma_fast_paths.py",
    "test_check_optimized.py", "test_cow_context.py", "test_imports.py", "test_lazy.py",
    "test_lazy_fast_paths.py", "test_mremap.py", "test_policies_random.py",
    "test_properties.py", "test_randtrace_shapes.py", "test_recording_workload.py",
    "test_release.py", "test_rules.py", "test_server_workloads.py", "test_swap.py",
    "test_trace_format.py", "test_workload_streams.py", "test_worstcase.py",
    "unit/test_anon_vma.py", "unit/test_emitter.py", "unit/test_fault.py",
    "unit/test_fork.py", "unit/test_layout.py", "unit/test_mm.py", "unit/test_mmap.py",
    "unit/test_mprotect.py", "unit/test_pagetable.py", "unit/test_pressure.py",
    "unit/test_timemodel.py", "unit/test_vma.py",
}


@pytest.hookimpl(tryfirst=True)    # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    serial = pytest.mark.xdist_group("serial")
    for item in items:
        if item.path.relative_to(ROOT / "tests").as_posix() not in PARALLEL:
            item.add_marker(serial)

"""A new user's mistakes and accidents: one-line errors before Ray starts, damaged part
files, cells that fail again, orphans of a killed driver, two launches into one output,
and the run record of each launch."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import SweepConfigError, load_grid
from sweep.fingerprint import fingerprint
from sweep.lock import LOCK_NAME, LockedError, OutputLock
from sweep.procs import proc_start, same_process
from sweep.runner import launch, row_head, zero_metrics
from sweep.store import QUARANTINE, Store, result_schema

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
runner = CliRunner()


def one_line_error(res, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Each test has its own record of launched processes."""
    monkeypatch.setenv("ANONSIM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- item 3: one-line errors before Ray starts --------------------------------------
def _bad_outputs(tmp_path: Path) -> list[tuple[str, str]]:
    regular = tmp_path / "a-file"
    regular.write_text("x")
    return [
        (str(regular), "not a directory"),
        (str(regular / "sub"), f"({regular} is a file)"),
        ("/proc/self/anonsim-out", "cannot write there"),      # not even root can write here
        ("/sys/anonsim-out", "cannot write there"),
        (str(tmp_path / ("n" * 300)), "longer than this filesystem allows"),
        (f"s3://k:s@bucket/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
         f"&region=us-east-1", "cannot reach or write"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_output_is_one_line_before_ray(tmp_path, case, monkeypatch):
    import sweep.cli
    started = []
    monkeypatch.setattr(sweep.cli, "_ray_init", lambda *a: started.append(a))
    out, message = _bad_outputs(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--out", out, "policy=eager"])
    line = one_line_error(res)
    assert message in line and "k:s@" not in line          # credentials are not echoed
    assert not started                                       # refused before Ray is started
    assert sorted(os.listdir(tmp_path)) == before             # nothing left behind


def test_unreachable_address_names_it(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--out", str(tmp_path / "r"),
                              "--address", address])
    assert address in one_line_error(res)
    assert not (tmp_path / "r").exists()


def test_an_address_that_is_not_a_ray_gcs(tmp_path):
    """Something listens but speaks no gRPC: refused, not retried for half a minute."""
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            conn.close()
    threading.Thread(target=answer, daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--out",
                                  str(tmp_path / "r"), "--address", address])
    finally:
        server.close()
    line = one_line_error(res)
    assert address in line and "Ray" in line


@pytest.mark.parametrize("overrides, message", [
    (["workload.n_ops=${seed}"], "interpolation '${seed}' is not allowed"),
    (["workload.n_ops=${seed},4"], "interpolation"),
    (["sweep.name=a,b"], "cannot be an axis"),
    (["sweep.sample_every=1,2"], "cannot be an axis"),
    (["grid.axes.seed=[1]"], "only grid.zip and grid.exclude"),
    (["grid.zip=[a]"], "grid.zip takes a list of lists"),
    (["grid.exclude=[lazy]"], "grid.exclude takes a list of mappings"),
    (["grid.exclude=[{colour:red}]"], "not an axis"),
    (["grid.zip=[[seed,policy]]"], "same number of values"),
])
def test_overrides_that_were_ignored_are_refused(overrides, message):
    with pytest.raises(SweepConfigError, match=message.replace("$", r"\$").replace("{", r"\{")
                       .replace("}", r"\}").replace("[", r"\[")):
        load_grid(CONF / "demo.yaml", overrides)
    res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--dry-run", *overrides])
    one_line_error(res)


def test_grid_zip_and_exclude_overrides_work():
    g = load_grid(CONF / "demo.yaml", ["grid.exclude=[{policy:lazy,arch:arm64}]"])
    assert len(g.cells) == 24 - 6
    assert not any(c["point"]["policy"] == "lazy" and c["point"]["arch"] == "arm64"
                   for c in g.cells)
    g = load_grid(CONF / "demo.yaml", ["seed=0,1", "grid.zip=[[seed,workload.n_ops]]"])
    assert len(g.cells) == 2 * 2 * 2
    assert {(c["point"]["seed"], c["point"]["workload.n_ops"]) for c in g.cells} == {(0, 40), (1, 80)}
    assert len(load_grid(CONF / "demo.yaml", ["grid.exclude=[{policy:lazy}]", "~grid.exclude"])
               .cells) == 24


# ---- stores written without Ray --------------------------------------------------------
def write_rows(out: Path, n: int, status: str = "ok", batches: int = 1) -> list[str]:
    """n rows of a noop grid written into out as `batches` part files. -> cell ids."""
    grid = load_grid(CONF / "demo.yaml", ["workload=noop", "~workload.n_ops", "policy=eager",
                                          "arch=x86_64", f"seed=range(0,{n})"])
    store = Store(str(out))
    fp = fingerprint(grid.base["sweep"])
    rows = []
    for cell in grid.cells:
        row = row_head(grid.resolve(cell["point"]), cell, {}, grid.name, fp)
        row.update(zero_metrics(), status=status, processes=1,
                   error="" if status == "ok" else "ValueError: boom",
                   traceback="" if status == "ok" else "Traceback ...\nValueError: boom")
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=result_schema({}))
    step = -(-n // batches)
    for b in range(batches):
        store.write(table.slice(b * step, step), f"b{b}", {"sweep.name": grid.name})
    return [c["id"] for c in grid.cells]


def test_report_on_a_sweep_whose_cells_all_failed(tmp_path):
    out = tmp_path / "r"
    write_rows(out, 3, status="failed")
    res = runner.invoke(app, ["report", str(out)])
    line = one_line_error(res)
    assert "no cell" in line and "3 failed" in line
    assert not (out / "report").exists()


def test_report_into_a_file_is_one_line(tmp_path):
    out = tmp_path / "r"
    write_rows(out, 2)
    (tmp_path / "f").write_text("x")
    res = runner.invoke(app, ["report", str(out), "--dest", str(tmp_path / "f")])
    assert "--dest" in one_line_error(res)


def _flip_in_data_page(path: Path) -> None:
    """Flip one bit in the middle of the first column's first data page."""
    col = pq.read_metadata(path).row_group(0).column(0)
    pos = col.data_page_offset + col.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x08
    path.write_bytes(bytes(data))


def damage(files: list[Path]) -> None:
    files[0].write_bytes(b"")                                  # empty
    files[1].write_bytes(b"PAR1 not really a parquet file")    # garbage
    _flip_in_data_page(files[2])                               # a bit flip


def test_damaged_part_files_are_quarantined_with_one_line_each(tmp_path):
    out = tmp_path / "r"
    ids = write_rows(out, 8, batches=4)
    files = sorted(out.rglob("part-*.parquet"))
    assert len(files) == 4
    damage(files)
    res = runner.invoke(app, ["status", str(out)])            # footers: empty and garbage
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2 and all("moved damaged result file" in w for w in warnings)
    assert "4 cells in 2 files" in res.output
    res = runner.invoke(app, ["status", "--verify", str(out)])   # every page: the bit flip
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "moved damaged result file" in warnings[0]
    assert "2 cells in 1 files" in res.output
    moved = sorted(p.name for p in (out / QUARANTINE).iterdir())
    assert moved == sorted(f"workload=noop__policy=eager__{f.name}.damaged" for f in files[:3])
    assert not list((out / QUARANTINE).rglob("*.parquet"))    # result globs do not see them
    assert len(Store(str(out)).scan()) == 2
    lf = pl.scan_parquet(f"{out}/**/*.parquet", hive_partitioning=False)
    assert lf.select(pl.len()).collect().item() == 2
    res = runner.invoke(app, ["status", str(out)])            # nothing more to move
    assert "warning" not in res.output and res.exit_code == 0
    assert len(set(ids)) == 8
    foreign = out / "notes.parquet"                           # not ours: never moved
    foreign.write_bytes(b"mine")
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "skipped unreadable file notes.parquet" in res.output
    assert foreign.read_bytes() == b"mine"


def test_a_relaunch_recomputes_the_cells_of_damaged_files(ray_local, tmp_path):
    grid = load_grid(CONF / "demo.yaml", ["workload=noop", "~workload.n_ops", "policy=eager",
                                          "arch=x86_64", "seed=range(0,8)", "sweep.batch_size=2"])
    out = tmp_path / "r"
    assert launch(grid, str(out), workers=1).done == 8
    files = sorted(out.rglob("part-*.parquet"))
    lost = set(pq.read_table(files[1], columns=["cell_id"])["cell_id"].to_pylist())
    files[1].write_bytes(files[1].read_bytes()[:-100])                 # truncated
    again = launch(grid, str(out), workers=1)
    assert [rel for rel, _ in again.quarantined] == [str(files[1].relative_to(out))]
    assert again.done == len(lost) == 2 and again.cached == 6
    ids = pq.read_table(out, columns=["cell_id"], partitioning=None)["cell_id"].to_pylist()
    assert sorted(ids) == sorted(c["id"] for c in grid.cells)


def test_results_load_and_report_skip_damaged_files(tmp_path):
    from sweep import results
    out = tmp_path / "r"
    write_rows(out, 6, batches=3)
    files = sorted(out.rglob("part-*.parquet"))
    files[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="moved damaged result file"):
        lf = results.load(str(out))
    assert lf.collect().height == 4
    _flip_in_data_page(files[1])
    res = runner.invoke(app, ["report", str(out), "--dest", str(tmp_path / "rep")])
    assert "moved damaged result file" in res.output and "CRC" in res.output
    assert (out / QUARANTINE).is_dir() and len(list((out / QUARANTINE).iterdir())) == 2


# ---- the output lock -------------------------------------------------------------------
def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        (out / LOCK_NAME).write_text(json.dumps({
            "pid": holder.pid, "host": socket.gethostname(), "start": proc_start(holder.pid),
            "since": "then"}))
        with pytest.raises(LockedError, match=f"pid {holder.pid} on {socket.gethostname()}"):
            OutputLock(Store(str(out))).acquire()
    finally:
        holder.stdin.close()
        holder.wait()
    lock = OutputLock(Store(str(out)))
    lock.acquire()                                  # that pid has ended: the lock is stale
    assert lock.took_over["pid"] == holder.pid
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / LOCK_NAME).exists()


def test_a_lock_of_a_reused_pid_is_stale(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                             "start": proc_start(os.getpid()) - 1}))
    with OutputLock(Store(str(out))) as lock:
        assert lock.took_over is not None


# ---- item 5: failures that fail again, visibly --------------------------------------
def bad_trace_grid(tmp_path: Path, seeds: str = "0,1"):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "touch", "pid": 0, "region": "nope"}\n')
    return ["workload=trace", f"workload.path={bad}", "~workload.n_ops", "policy=eager",
            "arch=x86_64", f"seed={seeds}"]


def test_retry_failed_when_cells_fail_again(ray_local, tmp_path):
    overrides = bad_trace_grid(tmp_path)
    grid = load_grid(CONF / "demo.yaml", overrides)
    out = str(tmp_path / "r")
    first = launch(grid, out, workers=1)
    assert first.failed == 2 and {f["id"] for f in first.failures} == {c["id"] for c in grid.cells}
    grid.base["sweep"]["batch_size"] = 2            # other batches: other file names
    again = launch(grid, out, retry_failed=True, workers=1)
    assert again.failed == 2 and again.done == 0
    df = pl.read_parquet(f"{out}/**/*.parquet", hive_partitioning=False)
    assert df.height == 2 and df["cell_id"].n_unique() == 2      # the old failed rows went
    tb = df["traceback"][0]
    assert tb.startswith("Traceback (most recent call last):") and "simulate_cell" in tb
    assert "TraceError: line 1: unknown region 'nope'" in tb.rstrip().splitlines()[-1]


def test_launch_prints_a_table_of_failed_cells(ray_local, tmp_path):
    overrides = bad_trace_grid(tmp_path, "0")
    out = tmp_path / "r"
    res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--out", str(out), *overrides])
    assert res.exit_code == 1, res.output
    assert "1 failed cells" in res.output
    cid = next(iter(load_grid(CONF / "demo.yaml", overrides).cells))["id"]
    row = next(ln for ln in res.output.splitlines() if ln.strip().startswith(cid))
    assert "seed=0" in row and "unknown region 'nope'" in row
    assert ray_local.is_initialized()               # the session's Ray was not ours to stop


# ---- item 8: the run record ------------------------------------------------------------
def test_each_launch_leaves_a_run_record(ray_local, tmp_path):
    overrides = ["workload=noop", "~workload.n_ops", "policy=eager", "arch=x86_64", "seed=0,1"]
    out = tmp_path / "r"
    res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--out", str(out), *overrides])
    assert res.exit_code == 0, res.output
    runs = list((out / "_runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith(f"-{os.getpid()}")
    import yaml
    assert yaml.safe_load((runs[0] / "overrides.yaml").read_text()) == overrides
    config = yaml.safe_load((runs[0] / "config.yaml").read_text())
    assert config["axes"]["seed"] == [0, 1] and config["base"]["workload"]["name"] == "noop"
    assert (runs[0] / "command.txt").read_text().startswith(
        f"sweep launch {CONF / 'demo.yaml'} --out {out} workload=noop")
    log = (runs[0] / "launch.log").read_text()
    assert "2 cells to compute" in log and "end: 2 computed" in log
    assert not (out / LOCK_NAME).exists()


def test_run_record_and_lock_on_s3(ray_local, s3_uri):
    overrides = ["workload=noop", "~workload.n_ops", "policy=eager", "arch=x86_64", "seed=0"]
    res = runner.invoke(app, ["launch", str(CONF / "demo.yaml"), "--out", s3_uri, *overrides])
    assert res.exit_code == 0, res.output
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    names = {Path(f.path).name for f in fs.get_file_info(pafs.FileSelector(f"{root}/_runs",
                                                                           recursive=True))}
    assert {"config.yaml", "overrides.yaml", "command.txt", "launch.log"} <= names
    assert fs.get_file_info(f"{root}/{LOCK_NAME}").type == pafs.FileType.NotFound


# ---- item 7: orphans and clashes, with real drivers --------------------------------------
def _cmd(out: Path, seeds: int = 40) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", "launch", "conf/demo.yaml", "--out", str(out),
            "--num-cpus", "2", "workload=noop", "workload.sleep_ms=150", "~workload.n_ops",
            "policy=eager,lazy", "arch=x86_64", f"seed=range(0,{seeds})", "sweep.batch_size=2"]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "RAY_ADDRESS": "", "ANONSIM_STATE_DIR": str(tmp_path / "state"),
            "PYTHONPATH": str(ROOT)}


def _wait_for(pred, proc: subprocess.Popen, what: str) -> None:
    """Poll for an event; fail if the process ends first (no wall-clock deadline)."""
    while not pred():
        if proc.poll() is not None:
            pytest.fail(f"the launch ended (exit {proc.returncode}) before {what}")
        time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _recorded(path: Path) -> dict[int, int]:
    try:
        return {int(k): v for k, v in json.loads(path.read_text())["procs"].items()}
    except (OSError, ValueError, KeyError):
        return {}


def test_sigkilled_driver_leaves_no_orphans_after_a_relaunch(tmp_path):
    out = tmp_path / "r"
    env = _env(tmp_path)
    proc = subprocess.Popen(_cmd(out), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "state" / f"{proc.pid}.json"
    try:
        _wait_for(lambda: len(list(out.rglob("part-*.parquet"))) >= 4 and
                  any("DashboardAgent" in _cmdline(p) for p in _recorded(state)),
                  proc, "it recorded its Ray and wrote results")
    finally:
        os.kill(proc.pid, signal.SIGKILL)             # the driver only, as the OOM killer would
        proc.wait()
    left = _recorded(state)
    assert [p for p, start in left.items() if same_process(p, start)], \
        "processes of the killed launch outlive it (else there is nothing to test)"
    res = subprocess.run(_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600, start_new_session=True)
    assert res.returncode == 0, res.stderr[-2000:]
    alive = [p for p, start in left.items() if same_process(p, start)]
    assert alive == [], f"processes of the killed launch still alive: {alive}"
    assert "took over the lock of an earlier launch" in res.stderr
    if "ended" in res.stderr:
        assert f"driver pid {proc.pid}" in res.stderr
    # the relaunch itself left nothing: every process it recorded has ended
    logs = sorted((out / "_runs").glob("*/launch.log"))
    mine = [ln for ln in logs[-1].read_text().splitlines() if "local Ray processes" in ln]
    assert mine, "the relaunch recorded its local Ray"
    procs = [tuple(map(int, item.split("@"))) for ln in mine
             for item in ln.split("(pid@start): ")[1].split()]
    assert procs and not [p for p, start in procs if same_process(p, start)]
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").glob("*.json"))
    table = pq.read_table(out, columns=["cell_id"], partitioning=None)
    assert table.num_rows == len(set(table["cell_id"].to_pylist())) == 80


def test_a_second_launch_into_the_same_output_is_refused(tmp_path):
    out = tmp_path / "r"
    env = _env(tmp_path)
    first = subprocess.Popen(_cmd(out, seeds=10), cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (out / LOCK_NAME).exists(), first, "it took the lock")
        os.kill(first.pid, signal.SIGSTOP)             # it holds the lock while we try
        try:
            second = subprocess.run(_cmd(out, seeds=10), cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=300)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"pid {first.pid} on {socket.gethostname()}" in lines[0]
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    table = pq.read_table(out, columns=["cell_id"], partitioning=None)
    assert table.num_rows == 20 and len(set(table["cell_id"].to_pylist())) == 20
    assert len(list((out / "_runs").iterdir())) == 1        # the refused launch wrote nothing


def test_sigint_stops_a_launch_and_leaves_nothing_running(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(_cmd(out), cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = tmp_path / "state" / f"{proc.pid}.json"
    _wait_for(lambda: len(list(out.rglob("part-*.parquet"))) >= 2 and _recorded(state),
              proc, "it recorded its Ray and wrote results")
    procs = _recorded(state)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("error: interrupted; the cells written so far")
    assert not [p for p, start in procs.items() if same_process(p, start)]
    assert not (out / LOCK_NAME).exists() and not state.exists()
    assert "interrupted (SIGINT)" in next((out / "_runs").glob("*/launch.log")).read_text()

"""Run a trace on the host kernel and count the slab objects attributable to it.

``measure(trace)`` compiles the trace and its control (see :mod:`.compile`),
runs each on the kernel ``repeats`` times with one executor process per trace
process, counts ``kmem_cache_alloc`` minus ``kmem_cache_free`` events of the
traced process tree between the first command and the last acknowledgement
(:mod:`.tracefs`), and returns trace minus control.

Protocol: for every trace pid the harness creates FIFOs ``cmd.<pid>`` and
``ack.<pid>`` in a temporary directory on a disk filesystem (which also holds
the trace's sparse files), sends one command line and waits for its ack.  Exits
are waited for with a pidfd.  Executors are only ever signalled through the
pidfds of processes this module started.
"""
from __future__ import annotations

import errno
import hashlib
import os
import platform
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..slab import CACHES
from ..trace import Op, load
from .compile import Command, Program, compile_trace
from .tracefs import TRACING, Counts, KernelError, Tracefs

SOURCE = Path(__file__).with_name("executor.c")
ALARM_SECONDS = 1800


# ---- environment -------------------------------------------------------------
def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return shutil.which(cc)
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def unavailable_reason() -> str | None:
    """Why :func:`measure` cannot run here (one line), or None if it can."""
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (tracefs kmem events)"
    if os.sysconf("SC_PAGE_SIZE") != 4096:
        return "needs 4 KiB pages"
    with open("/proc/filesystems") as fh:
        if "tracefs" not in fh.read():
            return "kernel has no tracefs"
    if (TRACING / "events").is_dir() and not (TRACING / "events/kmem/kmem_cache_alloc").exists():
        return "kernel has no kmem/kmem_cache_alloc trace event"
    if _compiler() is None:
        return "no C compiler (cc/gcc/clang) to build the executor"
    return None


def build_executor(cache_dir: Path | None = None) -> tuple[Path, bool]:
    """Compile executor.c (static if possible) into a cache -> (path, static)."""
    cc = _compiler()
    if cc is None:
        raise KernelError("no C compiler (cc/gcc/clang) found to build the executor")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + cc.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_dir or base / "anonsim"
    cache.mkdir(parents=True, exist_ok=True)
    for static in (True, False):
        out = cache / f"executor-{digest}{'-static' if static else ''}"
        if out.exists():
            return out, static
    error = ""
    for static in (True, False):
        out = cache / f"executor-{digest}{'-static' if static else ''}"
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        cmd = [cc, "-O2", "-Wall", *(["-static"] if static else []), "-o", str(tmp), str(SOURCE)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            os.replace(tmp, out)
            return out, static
        tmp.unlink(missing_ok=True)
        error = (res.stderr.strip().splitlines() or ["?"])[-1]
    raise KernelError(f"cannot compile the executor with {cc}: {error}")


def _disk_tmpdir() -> str:
    """A temporary directory on a disk filesystem (not tmpfs)."""
    with open("/proc/mounts") as fh:
        mounts = [(line.split()[1], line.split()[2]) for line in fh if len(line.split()) > 2]

    def fstype(path: str) -> str:
        real = os.path.realpath(path)
        best = max((m for m in mounts if real == m[0] or real.startswith(m[0].rstrip("/") + "/")),
                   key=lambda m: len(m[0]), default=("/", "?"))
        return best[1]

    candidates = [tempfile.gettempdir(), "/var/tmp", str(Path.home() / ".cache" / "anonsim")]
    for cand in candidates:
        if os.path.isdir(cand) and fstype(cand) not in ("tmpfs", "ramfs"):
            return cand
    raise KernelError("no temporary directory on a disk filesystem (all tmpfs)")


# ---- one run -----------------------------------------------------------------
@dataclass(slots=True)
class _Proc:
    """The harness's end of one executor: FIFO fds, real pid and pidfd."""
    tpid: int
    cmd: int
    ack: int
    real: int = 0
    pidfd: int = -1
    buf: bytes = b""


def _describe(cmd: Command) -> str:
    return f"line {cmd.line}: {cmd.op} (pid {cmd.pid})" if cmd.line else f"{cmd.op} (pid {cmd.pid})"


def _errno_text(code: int) -> str:
    return f"{errno.errorcode.get(code, 'errno ' + str(code))} ({os.strerror(code)})"


class _Runner:
    """Executes one :class:`Program` on the kernel inside a tracing window."""

    def __init__(self, exe: Path, tfs: Tracefs, timeout: float) -> None:
        self.exe, self.tfs, self.timeout = exe, tfs, timeout
        self.procs: dict[int, _Proc] = {}
        self.soft: list[str] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="anonsim-", dir=_disk_tmpdir()))

    def _fifos(self, tpid: int) -> _Proc:
        fds = []
        for kind in ("cmd", "ack"):
            path = self.workdir / f"{kind}.{tpid}"
            os.mkfifo(path, 0o600)
            fds.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        proc = _Proc(tpid, fds[0], fds[1])
        self.procs[tpid] = proc
        return proc

    def _send(self, proc: _Proc, text: str) -> None:
        os.write(proc.cmd, text.encode() + b"\n")

    def _ack(self, proc: _Proc, what: str) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in proc.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelError(f"{what}: no answer from the executor of pid {proc.tpid} "
                                  f"within {self.timeout:g} s")
            poller = select.poll()
            poller.register(proc.ack, select.POLLIN)
            if proc.pidfd >= 0:
                poller.register(proc.pidfd, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(left * 1000)}
            if proc.ack in ready:
                proc.buf += os.read(proc.ack, 4096)
            elif proc.pidfd in ready:
                raise KernelError(f"{what}: the executor of pid {proc.tpid} died "
                                  "(a fault such as SIGSEGV/SIGBUS, or killed)")
        line, _, proc.buf = proc.buf.partition(b"\n")
        return line.decode()

    def _expect_pid(self, proc: _Proc, what: str) -> int:
        reply = self._ack(proc, what)
        if not reply.startswith("ok "):
            raise KernelError(f"{what}: unexpected executor answer {reply!r}")
        return int(reply.split()[1])

    def _check(self, cmd: Command, reply: str) -> str:
        if reply.startswith("err "):
            parts = reply.split()
            text = f"{_describe(cmd)} failed on the kernel: {_errno_text(int(parts[1]))}"
            if not cmd.soft:
                raise KernelError(text)
            self.soft.append(text)
        elif not reply.startswith("ok"):
            raise KernelError(f"{_describe(cmd)}: unexpected executor answer {reply!r}")
        return reply

    def _wait_exit(self, proc: _Proc, what: str) -> None:
        ready, _, _ = select.select([proc.pidfd], [], [], self.timeout)
        if not ready:
            raise KernelError(f"{what}: the executor of pid {proc.tpid} did not exit "
                              f"within {self.timeout:g} s")
        self._forget(proc)

    def _forget(self, proc: _Proc) -> None:
        for fd in (proc.cmd, proc.ack, proc.pidfd):
            if fd >= 0:
                os.close(fd)
        proc.pidfd = -1
        self.procs.pop(proc.tpid, None)

    def step(self, cmd: Command) -> None:
        proc = self.procs[cmd.pid]
        what = _describe(cmd)
        verb = cmd.text.split(None, 1)[0]
        if verb == "fork":
            child = self._fifos(int(cmd.text.split()[1]))
            self._send(proc, cmd.text)
            reply = self._check(cmd, self._ack(proc, what))
            child.real = int(reply.split()[1])
            child.pidfd = os.pidfd_open(child.real)
            if self._expect_pid(child, what) != child.real:
                raise KernelError(f"{what}: the child reported another pid")
        elif verb == "exit":
            self._send(proc, cmd.text)
            self._wait_exit(proc, what)
        else:
            self._send(proc, cmd.text)
            self._check(cmd, self._ack(proc, what))

    def run(self, prog: Program) -> Counts:
        popen: subprocess.Popen | None = None
        tracing = False
        try:
            for rel, size in prog.files.items():
                with open(self.workdir / rel, "wb") as fh:
                    fh.truncate(size)
            root = self._fifos(0)
            popen = subprocess.Popen([str(self.exe), str(self.workdir), "0", str(ALARM_SECONDS)],
                                     cwd=self.workdir, env={}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            root.real = popen.pid
            root.pidfd = os.pidfd_open(popen.pid)
            self._expect_pid(root, "executor start")
            self.tfs.start(popen.pid)
            tracing = True
            for cmd in prog.commands:
                self.step(cmd)
            counts = self.tfs.stop()
            tracing = False
            for proc in reversed(list(self.procs.values())):   # children first: auto-reaped
                self._send(proc, "exit")
                self._wait_exit(proc, "teardown")
            return counts
        finally:
            if tracing:
                self.tfs.off()
            for proc in reversed(list(self.procs.values())):   # children first
                if proc.pidfd >= 0:
                    try:
                        signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
                        select.select([proc.pidfd], [], [], 5)
                    except ProcessLookupError:
                        pass
                self._forget(proc)
            if popen is not None:
                try:
                    popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            shutil.rmtree(self.workdir, ignore_errors=True)


def _ensure_fds(needed: int) -> None:
    """Raise the soft open-file limit if the harness needs more (3 fds per process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise KernelError(f"the trace needs {needed} open files, the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# ---- public API ----------------------------------------------------------------
def _ops(ops_or_path: Iterable[Op] | str | Path) -> list[Op]:
    if isinstance(ops_or_path, (str, Path)):
        return load(ops_or_path)
    return list(ops_or_path)


def measure(ops_or_path: Iterable[Op] | str | Path, repeats: int = 2, *,
            buffer_kb: int = 16384, timeout: float = 60.0) -> dict:
    """Objects attributable to a trace on this kernel (trace minus control).

    Returns ``{"vm_area_struct": int, "anon_vma": int, "anon_vma_chain": int}``
    plus extras: ``trace`` / ``control`` (net counts of the first repeat),
    ``runs`` (every repeat), ``fs_struct`` (fs_struct objects seen on the merged
    anon_vma_chain cache, excluded from the counts), ``irq_events`` (events in
    interrupt context, excluded), ``sites`` (trace minus control per call site),
    ``soft_errors`` (failed best-effort advice), ``kernel``, ``executor``,
    ``static``, ``seconds``.  Raises :class:`simcore.trace.TraceError` for an
    invalid trace and :class:`KernelError` for everything else.
    """
    started = time.monotonic()
    ops = _ops(ops_or_path)
    programs = {"trace": compile_trace(ops), "control": compile_trace(ops, control=True)}
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    reason = unavailable_reason()
    if reason is not None:
        raise KernelError(f"cannot measure on the kernel: {reason}")
    exe, static = build_executor()
    _ensure_fds(3 * sum(1 for c in programs["trace"].commands if c.text.startswith("fork")) + 64)
    runs: list[dict[str, Counts]] = []
    soft: list[str] = []
    with Tracefs(buffer_kb=buffer_kb) as tfs:
        for _ in range(repeats):
            run: dict[str, Counts] = {}
            for label, prog in programs.items():
                runner = _Runner(exe, tfs, timeout)
                run[label] = runner.run(prog)
                if label == "trace" and not soft:
                    soft = runner.soft
            runs.append(run)

    def diff(run: dict[str, Counts]) -> dict[str, int]:
        return {c: run["trace"].net[c] - run["control"].net[c] for c in CACHES}

    diffs = [diff(run) for run in runs]
    if any(d != diffs[0] for d in diffs):
        shown = "; ".join(f"run {i}: " + ", ".join(f"{c}={d[c]}" for c in CACHES)
                          for i, d in enumerate(diffs))
        raise KernelError(f"repeated kernel runs disagree: {shown}")
    first = runs[0]
    sites = first["trace"].sites.copy()
    sites.subtract(first["control"].sites)
    result: dict = dict(diffs[0])
    result.update(
        trace=dict(first["trace"].net), control=dict(first["control"].net),
        runs=[{label: {**counts.net, "fs_struct": counts.fs_struct, "irq": counts.irq}
               for label, counts in run.items()} for run in runs],
        raw_stable=all(r["trace"].net == first["trace"].net
                       and r["control"].net == first["control"].net for r in runs),
        fs_struct={label: counts.fs_struct for label, counts in first.items()},
        irq_events=sum(c.irq for run in runs for c in run.values()),
        sites={k: v for k, v in sorted(sites.items()) if v},
        soft_errors=soft, kernel=platform.release(), executor=str(exe), static=static,
        seconds=round(time.monotonic() - started, 3),
    )
    return result

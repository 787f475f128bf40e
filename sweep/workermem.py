"""A worker's memory around each cell: what the row reports and what is given back.

Each row carries the worker process's peak RSS during its cell (``worker_peak_rss_kb``:
VmHWM, reset just before the cell by writing 5 to /proc/self/clear_refs, see
fs/proc/task_mmu.c clear_refs_write, CLEAR_REFS_MM_HIWATER_RSS) and its RSS after the cell
once the cell's memory has been released (``worker_rss_kb``).  Between cells the runner
holds nothing of a cell (its rows go to Parquet, its Machine is a local); what the cell
freed is handed back to the kernel: a full cyclic collection (the model's objects point
at each other) and glibc's malloc_trim (freed heap and arena pages), after any cell that
grew the process by more than RELEASE_KB (a noop cell costs no collection)."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"
RELEASE_KB = 16 * 1024


_fds: dict[str, int] = {}


def _fd(path: str, flags: int) -> int:
    """A file of /proc/self kept open: a cell's two reads cost microseconds, not an open()."""
    fd = _fds.get(path)
    if fd is None:
        fd = _fds[path] = os.open(path, flags | os.O_CLOEXEC)
    return fd


def reset_peak() -> bool:
    """Set VmHWM to the current RSS (False where the kernel does not offer it)."""
    try:
        os.write(_fd(CLEAR_REFS, os.O_WRONLY), b"5")
        return True
    except OSError:
        return False


def rss_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KB (ru_maxrss for both without /proc)."""
    try:
        data = os.pread(_fd(STATUS, os.O_RDONLY), 16384, 0)
        return _field(data, b"VmRSS:"), _field(data, b"VmHWM:")
    except (OSError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


def _field(status: bytes, key: bytes) -> int:
    i = status.index(key) + len(key)
    return int(status[i:status.index(b"kB", i)])


_libc = None


def _malloc_trim() -> None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


class CellMemory:
    """with CellMemory() as mem: run a cell; -> mem.peak_kb, mem.after_kb.  Costs a write
    to clear_refs and one read of /proc/self/status per cell (the RSS before a cell is the
    one after the previous cell)."""
    last_kb = 0                      # RSS after the previous cell of this process

    def __enter__(self) -> "CellMemory":
        self.reset = reset_peak()
        self.before_kb = CellMemory.last_kb or rss_kb()[0]
        self.peak_kb = self.after_kb = 0
        return self

    def __exit__(self, *exc: object) -> None:
        rss, hwm = rss_kb()
        self.peak_kb = hwm if self.reset else max(rss, self.before_kb)
        if self.peak_kb - self.before_kb > RELEASE_KB:
            gc.collect()
            _malloc_trim()
            rss, _ = rss_kb()
        self.after_kb = CellMemory.last_kb = rss
